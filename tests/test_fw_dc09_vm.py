"""End to end: a panel under the real MicroPython VM (firmware.sim, the
sim board) reporting SIA DC-09, encrypted, to this project's receiver
(DC-09 listeners, real SQLite store) in the test's event loop.

- zone trips and restores arrive with the right code, partition and zone;
- the panel boots with its clock unset: its first encrypted message fails
  the receiver's timestamp test, the NAK's time sets the clock;
- the receiver's clock jumps an hour: NAK, the panel corrects and resends,
  the event is stored once;
- a receiver that closes the connection after each reply (a proxy in front
  of ours does that) still gets every event.

The panel's control socket calls block, so they run in a thread; every
wait is for a condition with a generous deadline, never a fixed sleep."""

import asyncio
import time

import pytest

from protocol.lean import gldc09
from receiver.config import Config
from receiver.store import Account
from receiver.testing import running_receiver
from testkit import vm
from testkit.configs import scenario_config
from testkit.panel import PanelProcess
from testkit.wait import wait_until

pytestmark = pytest.mark.micropython

if not vm.available():
    pytest.skip("no micropython binary", allow_module_level=True)

KEY = bytes(range(32))  # AES-256 (the unix port's cryptolib has no AES-192)
ACCOUNT = "12AB"


def panel_config(tcp_port, udp_port=None, key=KEY):
    cfg = scenario_config(tcp_port)
    del cfg["account"], cfg["key"]
    cfg["protocol"] = "dc09"
    cfg["dc09"] = {"account": ACCOUNT, "key": key.hex(), "line": "1", "receiver_no": "1"}
    cfg["receiver"] = {"primary": {"type": "tcp", "host": "127.0.0.1", "port": tcp_port},
                       "backup": None if udp_port is None else
                       {"type": "udp", "host": "127.0.0.1", "port": udp_port}}
    cfg["timings"].update({"ack_timeout_ms": 1000, "fail_after": 3})
    return cfg


def rx_config(tmp_path):
    return Config(db=str(tmp_path / "rx.db"), dc09_tcp=[("127.0.0.1", 0)],
                  dc09_udp=[("127.0.0.1", 0)])


def account(key=KEY):
    return Account(ACCOUNT, key, protocol="dc09", zones={"2": "lobby glass"},
                   supervised=False)


async def find(rx, code, qualifier=1, **fields):
    return [e for e in await rx.store.list_events(account=ACCOUNT)
            if e.code == code and e.qualifier == qualifier
            and all(getattr(e, k) == v for k, v in fields.items())]


async def ctl(panel, **req):
    return await asyncio.to_thread(panel.ctl, req)


class CloseAfterReply:
    """A TCP proxy in front of the receiver that closes both sides once it
    has passed one reply frame back: a receiver that hangs up after each ACK."""

    def __init__(self, target):
        self.target = target
        self.connections = 0
        self.server = None
        self.port = None

    async def start(self):
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self):
        self.server.close()
        await self.server.wait_closed()

    async def _handle(self, pr, pw):
        self.connections += 1
        try:
            rr, rw = await asyncio.open_connection(*self.target)
        except OSError:
            pw.close()
            return

        async def up():
            try:
                while data := await pr.read(4096):
                    rw.write(data)
            except (OSError, asyncio.CancelledError):
                pass

        task = asyncio.create_task(up())
        try:
            buf = b""
            while b"\r" not in buf:
                data = await rr.read(4096)
                if not data:
                    break
                buf += data
            pw.write(buf)
            await pw.drain()
        except OSError:
            pass
        finally:
            task.cancel()
            pw.close()
            rw.close()


async def test_panel_reports_dc09_to_our_receiver_and_follows_its_clock(tmp_path):
    assert gldc09.key_size_supported(32)
    async with running_receiver(rx_config(tmp_path), [account()]) as rx:
        tcp = rx.addresses["dc09_tcp"][0][1]
        udp = rx.addresses["dc09_udp"][0][1]
        panel = PanelProcess(panel_config(tcp, udp), str(tmp_path / "panel"))
        try:
            # boot: 305 system reset; the first try carried 1970 and was NAKed
            await wait_until(lambda: find(rx, 305), 60, what="305 stored")
            assert rx.metrics.naks.labels("dc09_time")._value.get() >= 1
            st = await asyncio.to_thread(panel.state)
            assert abs(st["clock"] - time.time()) < 60
            assert st["reporter"]["protocol"] == "dc09" and st["reporter"]["naks"] >= 1

            r = await ctl(panel, cmd="key", code="1234", action="arm_away", partition=1)
            assert r["result_name"] == "ok"
            await wait_until(lambda: find(rx, 401, 3, partition=1, zone=1), 30,
                             what="closing report")
            await ctl(panel, cmd="zone", zone=2, state="alarm")
            [ev] = await wait_until(lambda: find(rx, 130, 1, partition=1, zone=2), 30,
                                    what="burglary 130 zone 2")
            assert ev.protocol == "dc09" and ev.event_class == "burglary"
            assert ev.description == "Burglary, zone 2 (lobby glass), partition 1"
            assert ev.peer.startswith("dc09-tcp:")
            alarms = [a for a in await rx.store.list_alarms() if a.event_id == ev.id]
            assert [(a.account, a.event_class) for a in alarms] == [(ACCOUNT, "burglary")]

            # the receiver's clock jumps an hour: NAK, the panel follows, resends
            naks = rx.metrics.naks.labels("dc09_time")._value.get()
            rx.dc09.clock = lambda: time.time() + 3600
            await ctl(panel, cmd="zone", zone=2, state="normal")
            [restore] = await wait_until(lambda: find(rx, 130, 3, zone=2), 30,
                                         what="130 restore after the NAK")
            assert rx.metrics.naks.labels("dc09_time")._value.get() > naks
            assert abs(restore.event_time - (time.time() + 3600)) < 60
            st = await wait_until(lambda: _drained(panel), 30, what="queue drained")
            assert abs(st["clock"] - (time.time() + 3600)) < 60
            assert len(await find(rx, 130, 1, zone=2)) == 1  # nothing stored twice
        finally:
            await asyncio.to_thread(panel.close)


async def test_panel_survives_a_receiver_that_closes_after_each_reply(tmp_path):
    async with running_receiver(rx_config(tmp_path), [account()]) as rx:
        proxy = CloseAfterReply(tuple(rx.addresses["dc09_tcp"][0]))
        await proxy.start()
        panel = PanelProcess(panel_config(proxy.port), str(tmp_path / "panel"))
        try:
            await wait_until(lambda: find(rx, 305), 60, what="305 stored")
            for n, state in enumerate(("alarm", "normal", "alarm", "normal"), 1):
                await ctl(panel, cmd="zone", zone=5, state=state)  # panic button
                await wait_until(lambda: _count(rx, 120, n), 30, what="panic report %d" % n)
            got = [(e.code, e.qualifier, e.zone) for e in
                   await rx.store.list_events(account=ACCOUNT) if e.code == 120]
            assert got == [(120, 1, 5), (120, 3, 5)] * 2
            st = await wait_until(lambda: _drained(panel), 30, what="queue drained")
            assert st["reporter"]["paths"][0]["up"]
            assert proxy.connections >= 5  # one per message at least
            assert not await find(rx, 350)  # the path was never declared down
        finally:
            await asyncio.to_thread(panel.close)
            await proxy.stop()


async def _count(rx, code, n):
    return len([e for e in await rx.store.list_events(account=ACCOUNT)
                if e.code == code]) >= n


async def _drained(panel):
    st = await asyncio.to_thread(panel.state)
    return st if st["reporter"]["queue"] == 0 else None


async def test_dc09_panel_runs_from_the_mpy_bundle(tmp_path):
    from firmware import build as fwbuild
    out = str(tmp_path / "bundle")
    sizes = await asyncio.to_thread(fwbuild.build, out, "sim")
    assert "gldc09.mpy" in sizes and "dc09rep.mpy" in sizes
    async with running_receiver(rx_config(tmp_path), [account()]) as rx:
        tcp = rx.addresses["dc09_tcp"][0][1]
        panel = PanelProcess(panel_config(tcp), str(tmp_path / "panel"), bundle=out)
        try:
            await wait_until(lambda: find(rx, 305), 60, what="305 from the .mpy bundle")
        finally:
            await asyncio.to_thread(panel.close)

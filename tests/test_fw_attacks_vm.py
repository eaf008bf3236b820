"""Issue 14, the panel: each attack of the attack run, reproduced against
the firmware under the real MicroPython VM (firmware.sim, the sim board),
reporting to this project's receiver (DC-09) or to a key-holding test
receiver (native).  Each failed before the fix.

- a forged clear DC-09 NAK dated 9999-12-31 23:59:59, flooded at the
  panel's UDP port from another address (off the path): dropped by the
  link; the hold-up is delivered;
- the same NAK from the receiver's address (on the path): refused (not a
  sane time), the hold-up is delivered;
- a forged NAK dated "Tuesday 10:00" inside the vault's time-lock window:
  the clock stays on real time (trusted) and a master-code disarm of the
  vault is refused;
- a key-holding receiver's NAK(replay) with next_seq near 2**32: refused,
  354 over the backup, and the panel boots again after a power cycle;
- its NAK(time) near 2**32: refused, the event fails over;
- a report task that dies is restarted and reported (300), and the
  watchdog is starved while it cannot run.

Every wait is for a condition with a generous deadline."""

import asyncio
import os
import socket
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from protocol import dc09
from protocol.lean import glwire as w
from receiver.config import Config
from receiver.store import Account
from receiver.testing import running_receiver
from testkit import vm
from testkit.configs import scenario_config
from testkit.panel import PanelProcess
from testkit.tiny_receiver import TinyReceiver
from testkit.wait import wait_until

pytestmark = pytest.mark.micropython

if not vm.available():
    pytest.skip("no micropython binary", allow_module_level=True)

KEY = bytes(range(32))
ACCOUNT = "12AB"
Y9999 = datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc)


async def events(rx, code, qualifier=1, **fields):
    return [e for e in await rx.store.list_events(account=ACCOUNT)
            if e.code == code and e.qualifier == qualifier
            and all(getattr(e, k) == v for k, v in fields.items())]


async def ctl(panel, **req):
    return await asyncio.to_thread(panel.ctl, req)


async def state(panel):
    return await asyncio.to_thread(panel.state)


def dc09_config(port, **over):
    cfg = scenario_config(port, **over)
    del cfg["account"], cfg["key"]
    cfg["protocol"] = "dc09"
    cfg["dc09"] = {"account": ACCOUNT, "key": KEY.hex(), "line": "1", "receiver_no": "1"}
    cfg["receiver"] = {"primary": {"type": "udp", "host": "127.0.0.1", "port": port},
                       "backup": None}
    cfg["timings"].update({"ack_timeout_ms": 500, "fail_after": 3})
    return cfg


def rx_config(tmp_path):
    return Config(db=str(tmp_path / "rx.db"), dc09_udp=[("127.0.0.1", 0)])


def dc09_account():
    return Account(ACCOUNT, KEY, protocol="dc09", supervised=False)


async def _count(rx, code, n):
    return len([e for e in await rx.store.list_events(account=ACCOUNT)
                if e.code == code]) >= n


class UdpProxy(asyncio.DatagramProtocol):
    """On the path: the panel's configured receiver address.  Forwards to
    the real receiver and its replies back (from the address the panel
    sent to), or, with `forge` set, answers each datagram itself with a
    clear NAK dated `forge` (anybody on the path can)."""

    def __init__(self, target):
        self.target = target
        self.forge = None
        self.forged = 0
        self.panel_addr = None
        self.transport = None
        self.up = None

    async def start(self):
        loop = asyncio.get_running_loop()
        self.transport, _ = await loop.create_datagram_endpoint(
            lambda: self, local_addr=("127.0.0.1", 0))
        self.port = self.transport.get_extra_info("sockname")[1]
        proxy = self

        class Up(asyncio.DatagramProtocol):
            def datagram_received(self, data, addr):
                if proxy.panel_addr is not None:
                    proxy.transport.sendto(data, proxy.panel_addr)
        self.up, _ = await loop.create_datagram_endpoint(Up, remote_addr=self.target)

    def datagram_received(self, data, addr):
        self.panel_addr = addr
        if self.forge is not None:
            self.forged += 1
            self.transport.sendto(dc09.build_nak(self.forge), addr)
        else:
            self.up.sendto(data)

    def close(self):
        self.transport.close()
        self.up.close()


# -- forged clear NAKs (DC-09) ------------------------------------------------------------------


async def test_off_path_forged_nak_flood_at_the_udp_port_is_dropped(tmp_path):
    async with running_receiver(rx_config(tmp_path), [dc09_account()]) as rx:
        port = rx.addresses["dc09_udp"][0][1]
        panel = PanelProcess(dc09_config(port), str(tmp_path / "panel"))
        stop = threading.Event()
        try:
            [boot] = await wait_until(lambda: events(rx, 305), 60, what="boot report")
            panel_port = int(boot.peer.rsplit(":", 1)[1])
            forged = dc09.build_nak(Y9999)
            sent = [0]

            def flood():  # another address, anybody on the internet
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                while not stop.is_set():
                    s.sendto(forged, ("127.0.0.1", panel_port))
                    sent[0] += 1
                    time.sleep(0.002)
                s.close()
            t = threading.Thread(target=flood, daemon=True)
            t.start()
            await ctl(panel, cmd="zone", zone=4, state="alarm")  # hold-up
            await wait_until(lambda: events(rx, 122, zone=4), 60, what="hold-up stored")
            # alarms go on being reported under the flood (before the fix a
            # forged NAK that beat the receiver's answer set the clock to
            # 9999-12-31 23:59:59; a second later the report task died)
            for n, st_ in enumerate(("alarm", "normal", "alarm", "normal", "alarm"), 1):
                mark = sent[0]
                await wait_until(lambda: sent[0] > mark + 300, 30, what="more forged NAKs")
                await ctl(panel, cmd="zone", zone=5, state=st_)  # panic button
                await wait_until(lambda: _count(rx, 120, n), 30, what="panic report %d" % n)
            st = await state(panel)
            assert st["reporter"]["paths"][0]["foreign"] > 0
            assert abs(st["clock"] - time.time()) < 60
            assert all(t["alive"] for t in st["tasks"])
        finally:
            stop.set()
            await asyncio.to_thread(panel.close)


async def test_on_path_forged_nak_dated_9999_is_refused_and_reporting_goes_on(tmp_path):
    async with running_receiver(rx_config(tmp_path), [dc09_account()]) as rx:
        proxy = UdpProxy(tuple(rx.addresses["dc09_udp"][0]))
        await proxy.start()
        panel = PanelProcess(dc09_config(proxy.port), str(tmp_path / "panel"))
        try:
            await wait_until(lambda: events(rx, 305), 60, what="boot report")
            proxy.forge = Y9999
            await ctl(panel, cmd="zone", zone=4, state="alarm")  # hold-up
            await wait_until(lambda: proxy.forged >= 3, 30, what="forged NAKs answered")
            proxy.forge = None
            await wait_until(lambda: events(rx, 122, zone=4), 60, what="hold-up stored")
            st = await state(panel)
            assert st["reporter"]["refused"] >= 1
            assert abs(st["clock"] - time.time()) < 60 and st["clock_trusted"]
            assert all(t["alive"] for t in st["tasks"])
        finally:
            await asyncio.to_thread(panel.close)
            proxy.close()


async def test_forged_nak_inside_the_time_lock_window_does_not_open_the_vault(tmp_path):
    now = datetime.now(timezone.utc)
    forged = (now + timedelta(days=3)).replace(hour=10, minute=0, second=5, microsecond=0)
    window = {"open": "10:00", "close": "11:00", "days": [forged.isoweekday()]}
    async with running_receiver(rx_config(tmp_path), [dc09_account()]) as rx:
        proxy = UdpProxy(tuple(rx.addresses["dc09_udp"][0]))
        await proxy.start()
        cfg = dc09_config(proxy.port)
        cfg["partitions"][1]["time_lock"] = window  # the vault: partition 2
        panel = PanelProcess(cfg, str(tmp_path / "panel"))
        try:
            # the *ACK's time is trusted: outside its window the vault arms itself
            await wait_until(lambda: events(rx, 403, 3, partition=2), 60,
                             what="time-lock auto-arm (403)")
            proxy.forge = forged
            await ctl(panel, cmd="ac", on=False)  # traffic: the AC-loss report
            await wait_until(lambda: proxy.forged >= 3, 30, what="forged NAKs answered")
            r = await ctl(panel, cmd="key", code="1234", action="disarm", partition=2)
            assert r["result_name"] == "refused"
            st = await state(panel)
            assert st["partitions"][1]["state"] == "armed_away"
            assert abs(st["clock"] - time.time()) < 60 and st["clock_trusted"]
            proxy.forge = None
            await wait_until(lambda: events(rx, 421, partition=2, zone=1), 60,
                             what="421 access denied reported")
        finally:
            await asyncio.to_thread(panel.close)
            proxy.close()


# -- a key holder's values out of range (native) ------------------------------------------------


class NakEventsReceiver(TinyReceiver):
    """Holds the key.  On path 1 (TCP) it answers every EVENT with
    `nak` (a dict of NAK fields); heartbeats, and everything on path 2
    (UDP), as TinyReceiver (ACK)."""

    nak = None

    def _answer(self, frame, path):
        if path == 1 and self.nak is not None:
            try:
                msg = w.open_frame(self.keys, frame)
            except w.WireError:
                return None
            if msg["type"] == w.MSG_EVENT:
                with self.lock:
                    self.tx_seq += 1
                    self.frames.append((0, frame.seq, {"type": "NAKed"}, 0))
                    m = dict(self.nak, type=w.MSG_NAK, nak_seq=frame.seq)
                    return w.seal(self.keys, m, self.account, self.tx_seq, int(time.time()),
                                  w.FLAG_FROM_RECEIVER)
        return super()._answer(frame, path)


@pytest.mark.parametrize("nak, why", [
    ({"reason": w.NAK_REPLAY, "receiver_time": 0, "next_seq": 0xFFFFFE80},
     "seq jump to 4294966912 refused"),
    ({"reason": w.NAK_TIME, "receiver_time": 0xFFFFFFF0, "next_seq": 0}, "NAK time"),
], ids=["replay_next_seq_near_2_32", "time_near_2_32"])
def test_key_holder_values_near_2_32_are_refused_and_the_panel_survives_reboot(
        tmp_path, nak, why):
    rx = NakEventsReceiver(4242)
    cfg = scenario_config(rx.port, timings={"event_fail_s": 5})
    panel = PanelProcess(cfg, str(tmp_path / "panel"))
    try:
        panel.wait(lambda: rx.find(305), 60, "boot report")
        rx.nak = nak
        panel.ctl({"cmd": "zone", "zone": 4, "state": "alarm"})
        ev = panel.wait(lambda: rx.find(122, zone=4), 60, "hold-up over the backup")
        seq = [s for s, m in rx.events.items() if m is ev[0]][0]
        assert [p for p, s, m, f in rx.frames if s == seq and m.get("type") == w.MSG_EVENT] \
            == [2]
        [t] = panel.wait(lambda: rx.find(354, zone=1), 30, "354 for path 1")
        assert t["text"] == why
        st = panel.state()
        assert st["reporter"]["refused"] >= 1 and st["reporter"]["next_seq"] < 0x80000000
        assert abs(st["clock"] - time.time()) < 60
        # a power cycle: the panel boots and reports again (before: every boot crashed)
        assert panel.ctl({"cmd": "power_cycle"})["ok"]
        panel.wait(lambda: len(rx.find(305)) >= 2, 60, "second boot report")
        assert all(t["alive"] for t in panel.state()["tasks"])
    finally:
        panel.close()
        rx.close()


# -- supervision ----------------------------------------------------------------------------------

INJECT = '''
# The sim's main.py with a fault injected into the report task: the
# reporter's poll raises on calls FIRST..LAST (LAST 0: for ever).
import hal
import app
import reporter

_n = [0]
_poll = reporter.Reporter.poll


def poll(self, now_ms):
    _n[0] += 1
    if _n[0] >= %(first)d and (%(last)d == 0 or _n[0] <= %(last)d):
        raise ValueError("injected fault %%d" %% _n[0])
    return _poll(self, now_ms)


reporter.Reporter.poll = poll
board = hal.board()
code = app.run(board)
if code:
    board.exit(code)
'''


def _injected(tmp_path, rx, first, last):
    """The VM alone running INJECT in place of the device's main.py."""
    import json
    d = str(tmp_path / "panel")
    os.makedirs(d)
    path = os.path.join(d, "config.json")
    with open(path, "w") as f:
        json.dump(scenario_config(rx.port), f)
    script = os.path.join(d, "inject_main.py")
    with open(script, "w") as f:
        f.write(INJECT % {"first": first, "last": last})
    return PanelProcess(path, d, supervised=False, main=script)


def test_report_task_that_dies_is_restarted_and_reported(tmp_path):
    rx = TinyReceiver(4242)
    panel = _injected(tmp_path, rx, 100, 102)  # three deaths in a row, then fine
    try:
        panel.wait(lambda: rx.find(305), 60, "boot report")
        panel.wait(lambda: rx.find(300), 60, "300 system trouble")
        [new] = rx.find(300)
        assert new["text"].startswith("report task ValueError injected")
        # restored once it loops again after the last death, not between deaths
        [restore] = panel.wait(lambda: rx.find(300, w.Q_RESTORE), 30, "300 restore")
        assert restore["text"] == "report task runs again"
        assert [t["deaths"] for t in panel.state()["tasks"] if t["name"] == "report"] == [3]
        panel.ctl({"cmd": "zone", "zone": 4, "state": "alarm"})
        panel.wait(lambda: rx.find(122, zone=4), 30, "hold-up after the restart")
        st = panel.state()
        report = [t for t in st["tasks"] if t["name"] == "report"][0]
        assert report["deaths"] == 3 and report["alive"]
        assert st["watchdog_age_ms"] is not None and st["watchdog_age_ms"] < 4000
        assert "task report died (ValueError injected fault 100): restarting" in panel.console()
    finally:
        panel.close()
        rx.close()


def test_watchdog_is_starved_while_the_report_task_cannot_run(tmp_path):
    rx = TinyReceiver(4242)
    panel = _injected(tmp_path, rx, 200, 0)  # dies at every start from call 200 on
    try:
        panel.wait(lambda: rx.find(305), 60, "boot report")
        st = panel.wait(lambda: (lambda s: s if s["watchdog_age_ms"] is not None
                                 and s["watchdog_age_ms"] > 5000 else None)(panel.state()),
                        60, "the watchdog no longer fed")
        report = [t for t in st["tasks"] if t["name"] == "report"][0]
        assert not report["alive"] and report["deaths"] >= 2
        assert [t["alive"] for t in st["tasks"] if t["name"] == "scan"] == [True]
    finally:
        panel.close()
        rx.close()


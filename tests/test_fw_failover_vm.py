"""Issue 13, end to end: the firmware under the real MicroPython VM
(firmware.sim, the sim board) with two receivers, the primary answering
but not accepting events, the backup fine.  The alarm must reach the
backup within the bound (timings.event_fail_s), 354 must say why, and once
the primary is fixed the panel must fail back (its 602 probe ACKed, 354
restored, the next alarm on the primary).

- native: the primary is this project's receiver with its SQLite store
  turned read-only (``PRAGMA query_only``, as tests/test_chaos_store.py
  does): NAK busy for every event, heartbeats still ACKed;
- DC-09: the same receiver's DC-09 listener with its store read-only (NAK
  with its time for every event, NULLs ACKed);
- DC-09: a receiver holding the wrong key for the account, NAKing every
  frame it cannot decrypt, as the third-party receiver in the field did
  (54 NAKs in 100 s) -- this project's receiver stays silent then, which
  the last test covers (350, failover, fail back).

Every wait is for a condition with a generous deadline, never a fixed
sleep; no assertion on how long anything took."""

import asyncio

import pytest

from protocol import dc09
from receiver.config import Config
from receiver.store import Account
from receiver.testing import running_receiver
from testkit import vm
from testkit.configs import TEST_KEY, scenario_config
from testkit.net import free_port
from testkit.panel import PanelProcess
from testkit.tiny_receiver import TinyDc09Receiver
from testkit.wait import wait_until

pytestmark = pytest.mark.micropython

if not vm.available():
    pytest.skip("no micropython binary", allow_module_level=True)

DC09_KEY = bytes(range(32))
DC09_ACCOUNT = "12AB"
FAST = {"event_fail_s": 5, "ack_timeout_ms": 400, "max_backoff_ms": 2000, "fail_after": 2,
        "heartbeat_s": 20, "backup_heartbeat_s": 20}


async def events(rx, account, code, qualifier=1, **fields):
    return [e for e in await rx.store.list_events(account=account)
            if e.code == code and e.qualifier == qualifier
            and all(getattr(e, k) == v for k, v in fields.items())]


async def ctl(panel, **req):
    return await asyncio.to_thread(panel.ctl, req)


async def reporter(panel):
    return (await asyncio.to_thread(panel.state))["reporter"]


async def read_only(rx, on):
    await rx.store.run_maintenance(lambda c: c.execute("PRAGMA query_only=%d" % on))


def native_panel(tcp_port, udp_port):
    cfg = scenario_config(tcp_port, timings=FAST)
    cfg["receiver"]["backup"]["port"] = udp_port
    return cfg


def dc09_panel(primary, backup):
    cfg = scenario_config(0, timings=FAST)
    del cfg["account"], cfg["key"]
    cfg["protocol"] = "dc09"
    cfg["dc09"] = {"account": DC09_ACCOUNT, "key": DC09_KEY.hex(), "line": "1",
                   "receiver_no": "1"}
    cfg["receiver"] = {"primary": primary, "backup": backup}
    return cfg


async def test_native_primary_naking_busy_alarm_reaches_backup_then_fails_back(tmp_path):
    acct = Account("4242", TEST_KEY, supervised=False)
    async with running_receiver(Config(db=str(tmp_path / "rx1.db"), tcp=[("127.0.0.1", 0)]),
                                [acct]) as rx1, \
            running_receiver(Config(db=str(tmp_path / "rx2.db"), udp=[("127.0.0.1", 0)]),
                             [acct]) as rx2:
        panel = PanelProcess(native_panel(rx1.addresses["tcp"][0][1], rx2.addresses["udp"][0][1]),
                         str(tmp_path / "panel"))
        try:
            await wait_until(lambda: events(rx1, "4242", 305), 60, what="boot on the primary")
            await read_only(rx1, 1)  # its disk is full, as far as the panel can tell
            await ctl(panel, cmd="zone", zone=4, state="alarm")  # hold-up
            [ev] = await wait_until(lambda: events(rx2, "4242", 122, zone=4), 60,
                                    what="hold-up on the backup receiver")
            assert ev.path == 2
            [t] = await wait_until(lambda: events(rx2, "4242", 354, zone=1), 30,
                                   what="354 for path 1 on the backup")
            assert t.text == "NAK busy"
            assert rx1.metrics.naks.labels("busy")._value.get() >= 2
            rep = await reporter(panel)
            assert rep["active_path"] == 2 and rep["paths"][0]["up"]  # it answers: no 350
            assert not rep["paths"][0]["events_ok"]
            assert not await events(rx2, "4242", 350)
            # fixed: the 602 probe is ACKed, 354 restored, the panel fails back
            await read_only(rx1, 0)
            await wait_until(lambda: events(rx1, "4242", 602), 60, what="602 probe stored")
            await wait_until(lambda: events(rx1, "4242", 354, 3, zone=1), 30,
                             what="354 restore")
            await wait_until(lambda: _active(panel, 1), 30, what="fail back")
            await ctl(panel, cmd="zone", zone=5, state="alarm")  # panic
            [p] = await wait_until(lambda: events(rx1, "4242", 120, zone=5), 30,
                                   what="panic on the primary")
            assert p.path == 1
            assert not await events(rx1, "4242", 122)  # the hold-up was never stored there
            assert len(await events(rx2, "4242", 122)) == 1
        finally:
            await asyncio.to_thread(panel.close)


async def _active(panel, path):
    return (await reporter(panel))["active_path"] == path


def _dc09_account(key=DC09_KEY):
    return Account(DC09_ACCOUNT, key, protocol="dc09", supervised=False)


async def test_dc09_primary_naking_every_event_alarm_reaches_backup_then_fails_back(tmp_path):
    async with running_receiver(Config(db=str(tmp_path / "rx1.db"),
                                       dc09_tcp=[("127.0.0.1", 0)]),
                                [_dc09_account()]) as rx1, \
            running_receiver(Config(db=str(tmp_path / "rx2.db"), dc09_udp=[("127.0.0.1", 0)]),
                             [_dc09_account()]) as rx2:
        cfg = dc09_panel({"type": "tcp", "host": "127.0.0.1",
                          "port": rx1.addresses["dc09_tcp"][0][1]},
                         {"type": "udp", "host": "127.0.0.1",
                          "port": rx2.addresses["dc09_udp"][0][1]})
        panel = PanelProcess(cfg, str(tmp_path / "panel"))
        try:
            await wait_until(lambda: events(rx1, DC09_ACCOUNT, 305), 60, what="boot")
            await read_only(rx1, 1)
            await ctl(panel, cmd="zone", zone=4, state="alarm")
            await wait_until(lambda: events(rx2, DC09_ACCOUNT, 122, zone=4), 60,
                             what="hold-up on the backup receiver")
            await wait_until(lambda: events(rx2, DC09_ACCOUNT, 354, zone=1), 30,
                             what="354 for path 1")
            rep = await reporter(panel)
            assert rep["active_path"] == 2 and rep["paths"][0]["up"]
            assert not await events(rx2, DC09_ACCOUNT, 350)
            await read_only(rx1, 0)
            await wait_until(lambda: events(rx1, DC09_ACCOUNT, 602), 60, what="602 probe")
            await wait_until(lambda: _active(panel, 1), 30, what="fail back")
            await ctl(panel, cmd="zone", zone=5, state="alarm")
            await wait_until(lambda: events(rx1, DC09_ACCOUNT, 120, zone=5), 30,
                             what="panic on the primary")
            assert not await events(rx1, DC09_ACCOUNT, 122)
        finally:
            await asyncio.to_thread(panel.close)


class WrongKeyNakReceiver(TinyDc09Receiver):
    """A DC-09 receiver holding the wrong key for the account that, as the
    third-party one in the field, NAKs (with its time) every frame it
    cannot decrypt.  `dc09_key` set right: it ACKs as TinyDc09Receiver."""

    def _answer(self, frame, path):
        from datetime import datetime, timezone
        try:
            dc09.parse(frame, key_lookup=lambda a: self.dc09_key)
        except dc09.Dc09KeyError:
            with self.lock:
                self.frames.append((path, None, "NAK", 0))
            return dc09.build_nak(datetime.now(timezone.utc))
        except dc09.Dc09Error:
            pass
        return super()._answer(frame, path)


async def test_dc09_wrong_key_primary_naking_everything_then_key_fixed(tmp_path):
    primary = WrongKeyNakReceiver(DC09_ACCOUNT, key=bytes(32))
    try:
        async with running_receiver(Config(db=str(tmp_path / "rx2.db"),
                                           dc09_udp=[("127.0.0.1", 0)]),
                                    [_dc09_account()]) as rx2:
            cfg = dc09_panel({"type": "tcp", "host": "127.0.0.1", "port": primary.port},
                             {"type": "udp", "host": "127.0.0.1",
                              "port": rx2.addresses["dc09_udp"][0][1]})
            panel = PanelProcess(cfg, str(tmp_path / "panel"))
            try:
                await wait_until(lambda: events(rx2, DC09_ACCOUNT, 305), 60,
                                 what="boot report over the backup")
                await ctl(panel, cmd="zone", zone=4, state="alarm")
                await wait_until(lambda: events(rx2, DC09_ACCOUNT, 122, zone=4), 60,
                                 what="hold-up on the backup receiver")
                await wait_until(lambda: events(rx2, DC09_ACCOUNT, 354, zone=1), 30,
                                 what="354 for path 1")
                naks = len([f for f in primary.frames if f[2] == "NAK"])
                assert naks >= 2
                rep = await reporter(panel)
                assert rep["active_path"] == 2 and rep["paths"][0]["up"]
                primary.dc09_key = DC09_KEY  # the central station fixes the key
                await wait_until(lambda: primary.find(602), 60, what="602 probe ACKed")
                await wait_until(lambda: _active(panel, 1), 30, what="fail back")
                await ctl(panel, cmd="zone", zone=5, state="alarm")
                await asyncio.to_thread(panel.wait, lambda: primary.find(120, zone=5),
                                        30, "panic on the primary")
            finally:
                await asyncio.to_thread(panel.close)
    finally:
        primary.close()


async def test_dc09_silent_wrong_key_primary_fails_over_and_back(tmp_path):
    """This project's receiver with the wrong key is silent (a security
    event, docs/dc09.md): 350, failover, and back once the key is right."""
    port = free_port()
    rx1_cfg = Config(db=str(tmp_path / "rx1.db"), dc09_tcp=[("127.0.0.1", port)])
    async with running_receiver(Config(db=str(tmp_path / "rx2.db"),
                                       dc09_udp=[("127.0.0.1", 0)]),
                                [_dc09_account()]) as rx2:
        cfg = dc09_panel({"type": "tcp", "host": "127.0.0.1", "port": port},
                         {"type": "udp", "host": "127.0.0.1",
                          "port": rx2.addresses["dc09_udp"][0][1]})
        async with running_receiver(rx1_cfg, [_dc09_account(bytes(32))]):
            panel = PanelProcess(cfg, str(tmp_path / "panel"))
            try:
                await ctl(panel, cmd="zone", zone=4, state="alarm")
                await wait_until(lambda: events(rx2, DC09_ACCOUNT, 122, zone=4), 60,
                                 what="hold-up on the backup receiver")
                await wait_until(lambda: events(rx2, DC09_ACCOUNT, 350, zone=1), 30,
                                 what="350 for path 1")
            except BaseException:
                await asyncio.to_thread(panel.close)
                raise
        rx1_cfg.db = str(tmp_path / "rx1-fixed.db")
        try:
            async with running_receiver(rx1_cfg, [_dc09_account()]) as rx1:
                # its NULL probe answered: 350 restore, sent over the primary again
                await wait_until(lambda: events(rx1, DC09_ACCOUNT, 350, 3, zone=1), 60,
                                 what="350 restore")
                await wait_until(lambda: _active(panel, 1), 30, what="fail back")
                await ctl(panel, cmd="zone", zone=5, state="alarm")
                await wait_until(lambda: events(rx1, DC09_ACCOUNT, 120, zone=5), 30,
                                 what="panic on the primary")
        finally:
            await asyncio.to_thread(panel.close)

"""The vehicle unit end to end: the firmware under the real MicroPython VM
(firmware.sim, the sim board) driving examples/route_city.gpx (replayed by
firmware.gpsreplay onto the sim's GNSS socket, sped up), reporting to this
project's receiver (real listeners, real SQLite store) in the test's event
loop; checks on what the receiver stored: events with the van's position
(native position extension, DC-09 [X][Y]) and its track (POSITION).  The
order of positions against alarms is checked on
testkit.tiny_receiver.TinyReceiver (the real glwire codec, which ACKs
POSITION and records every frame in arrival order)."""

import asyncio
import datetime as dt
import json
import os
import re
import socket
import threading

import pytest

from firmware import REPO
from firmware import build as fwbuild
from protocol.lean import glwire as w
from receiver.config import Config
from receiver.store import Account
from receiver.testing import running_receiver
from testkit import vm
from testkit.configs import TEST_DC09_ACCOUNT, TEST_KEY, van_config
from testkit.panel import PanelProcess
from testkit.tiny_receiver import TinyReceiver
from testkit.wait import wait_until

pytestmark = pytest.mark.micropython

if not vm.available():
    pytest.skip("no micropython binary", allow_module_level=True)

ROUTE = os.path.join(REPO, "examples", "route_city.gpx")
ACCOUNT = 4242
DC09_ACCOUNT = TEST_DC09_ACCOUNT
NEW, RESTORE = 1, 3
SPEEDUP = 10  # route seconds per wall second
# zone ids in examples/van.json
COMPARTMENT, HOLDUP, ANTENNA = 1, 6, 8
# the drive leaves its corridor where it keeps east past the planned turn
# at 4.886 (examples/van.json): between these, on the street it took
OFF_LAT = (52.3679, 52.3731)
OFF_LON = (4.8870, 4.8906)


def van(port, protocol="native", **report):
    return van_config(port, protocol, {"scan_ms": 20, "ack_timeout_ms": 400,
                                       "max_backoff_ms": 2000, "fail_after": 2,
                                       "heartbeat_s": 20, "backup_heartbeat_s": 20}, **report)


def rx_account(cfg, protocol="native"):
    return Account(DC09_ACCOUNT if protocol == "dc09" else str(ACCOUNT), TEST_KEY,
                   protocol=protocol, panel_kind="vehicle",
                   zones={str(z["id"]): z["name"] for z in cfg["zones"]},
                   partitions={"1": "van"}, supervised=False)


async def stored(rx, account, code, qualifier=NEW, timeout=60, **fields):
    async def find():
        return [e for e in await rx.store.list_events(account=account)
                if e.code == code and e.qualifier == qualifier
                and all(getattr(e, k) == v for k, v in fields.items())]
    return await wait_until(find, timeout, what="%03d q%d stored" % (code, qualifier))


async def ctl(panel, **req):
    r = await asyncio.to_thread(panel.ctl, req)
    assert r["ok"], r
    return r


async def state(panel):
    return await asyncio.to_thread(panel.ctl, {"cmd": "state", "brief": True})


async def test_van_leaves_its_corridor_opens_its_compartment_and_is_jammed(tmp_path):
    """Native protocol: 170 when the drive leaves the planned corridor,
    133 (zone: the compartment) when the compartment opens out there,
    344 when the fix goes with the antenna input tripped, and its restore;
    each stored with the van's position, and the track points the unit
    sends (POSITION) stored as its track, oldest first, with neither a
    failover nor a dropped event."""
    cfg0 = van(0)
    conf = Config(db=str(tmp_path / "rx.db"), tcp=[("127.0.0.1", 0)], udp=[("127.0.0.1", 0)])
    async with running_receiver(conf, [rx_account(cfg0)]) as rx:
        cfg = van(rx.addresses["tcp"][0][1])
        cfg["receiver"]["backup"]["port"] = rx.addresses["udp"][0][1]
        panel = PanelProcess(cfg, str(tmp_path / "van"))
        try:
            await stored(rx, str(ACCOUNT), 305)
            panel.drive(ROUTE, SPEEDUP)
            [ev] = await stored(rx, str(ACCOUNT), 170)
            assert ev.event_class == "burglary" and ev.zone == 0
            assert ev.description.startswith("Vehicle left its route corridor")
            assert ev.position is not None and ev.position.valid
            assert OFF_LAT[0] <= ev.position.lat <= OFF_LAT[1] + 0.003
            st = (await state(panel))["vehicle"]
            assert st["rules"]["left route corridor"] == "raised"
            assert OFF_LAT[0] <= st["lat"] <= OFF_LAT[1] + 0.003  # it drives on
            await ctl(panel, cmd="zone", zone=COMPARTMENT, state="alarm")
            [ev] = await stored(rx, str(ACCOUNT), 133, zone=COMPARTMENT)
            assert ev.description == \
                "24-hour burglary (safe/vault), zone 1 (cash compartment door), van"
            assert ev.position is not None and abs(ev.position.lat - st["lat"]) < 0.003
            await ctl(panel, cmd="gps", jam=True, antenna=True)
            [ev] = await stored(rx, str(ACCOUNT), 344)
            assert ev.event_class == "trouble"
            await ctl(panel, cmd="gps", jam=False, antenna=False)
            await stored(rx, str(ACCOUNT), 344, RESTORE)

            async def delivered():
                t = (await state(panel))["reporter"]["track"]
                return t["delivered"] >= 3 and t
            track = await wait_until(delivered, 30, what="track points ACKed")
            assert track["refused"] == 0
            points = [p for p in await rx.store.track(str(ACCOUNT)) if p.source == "position"]
            assert len(points) >= 3
            fixes = [p.position.fix_time for p in points]
            assert fixes == sorted(fixes)
            rep = (await state(panel))["reporter"]
            assert rep["active_path"] == 1 and rep["dropped"] == 0
            assert [p["events_ok"] for p in rep["paths"]] == [True, True]
            assert not [e for e in await rx.store.list_events(account=str(ACCOUNT))
                        if e.code in (350, 354)]
        finally:
            await asyncio.to_thread(panel.close)


async def test_dc09_van_alarms_carry_their_position_to_the_receiver(tmp_path):
    """SIA DC-09: the 170 and a silent hold-up arrive with the van's
    position in [X][Y]; the receiver stores it as the event's location;
    main power lost and a low backup battery are troubles with it too."""
    cfg0 = van(0, "dc09")
    conf = Config(db=str(tmp_path / "rx.db"), dc09_tcp=[("127.0.0.1", 0)],
                  dc09_udp=[("127.0.0.1", 0)])
    async with running_receiver(conf, [rx_account(cfg0, "dc09")]) as rx:
        cfg = van(rx.addresses["dc09_tcp"][0][1], "dc09")
        cfg["receiver"]["backup"]["port"] = rx.addresses["dc09_udp"][0][1]
        panel = PanelProcess(cfg, str(tmp_path / "van"))
        try:
            await stored(rx, DC09_ACCOUNT, 305)
            panel.drive(ROUTE, SPEEDUP)
            [ev] = await stored(rx, DC09_ACCOUNT, 170)
            loc = ev.location
            assert loc is not None, ev.ext
            assert OFF_LAT[0] <= loc["lat"] <= OFF_LAT[1] and OFF_LON[0] <= loc["lon"] <= OFF_LON[1]
            await ctl(panel, cmd="zone", zone=HOLDUP, state="alarm")
            [ev] = await stored(rx, DC09_ACCOUNT, 122, zone=HOLDUP)
            assert ev.event_class == "holdup" and ev.location is not None
            st = (await state(panel))["vehicle"]
            assert abs(ev.location["lat"] - st["lat"]) < 0.002
            assert abs(ev.location["lon"] - st["lon"]) < 0.002
            assert not (await ctl(panel, cmd="outputs"))["siren"]  # a hold-up is silent
            assert (await state(panel))["reporter"].get("track") is None  # no track on DC-09
            # the van's main power (its 12 V) and the unit's backup battery,
            # supervised as a fixed panel's, the troubles with where it was
            await ctl(panel, cmd="ac", on=False)
            await ctl(panel, cmd="battery", mv=11000)
            for code in (301, 302):
                [ev] = await stored(rx, DC09_ACCOUNT, code)
                assert ev.event_class == "trouble" and ev.location is not None, ev
            await ctl(panel, cmd="ac", on=True)
            await ctl(panel, cmd="battery", mv=13200)
            await stored(rx, DC09_ACCOUNT, 301, RESTORE)
            await stored(rx, DC09_ACCOUNT, 302, RESTORE)
        finally:
            await asyncio.to_thread(panel.close)


def test_without_a_link_alarms_wait_ahead_of_a_coalesced_track(tmp_path):
    """The network is down while the van drives: the compartment opens
    (133), the track ring (8 points here) fills and coalesces, the hold-up
    button is pressed (122).  When the link is back, every event queued
    meanwhile arrives before the first track point, none is dropped, and
    the track points arrive oldest first, the first and the latest kept."""
    with TinyReceiver(ACCOUNT) as rx:
        cfg = van(rx.port, track_points=8, alarm_s=1, min_s=1, moving_s=5)
        panel = PanelProcess(cfg, str(tmp_path / "van"))
        try:
            panel.wait(lambda: rx.find(305), 30, "boot")
            panel.ctl({"cmd": "net", "up": False})
            frames0 = len(rx.frames)
            panel.drive(ROUTE, SPEEDUP)
            panel.wait(lambda: panel.state()["vehicle"]["fix"] == "valid", 20, "a fix")
            panel.ctl({"cmd": "zone", "zone": COMPARTMENT, "state": "alarm"})
            panel.wait(lambda: panel.state()["reporter"]["track"]["coalesced"] >= 4, 60,
                       "the track ring full and coalescing")
            panel.ctl({"cmd": "zone", "zone": HOLDUP, "state": "alarm"})
            st = panel.state()["reporter"]
            assert st["track"]["queued"] == 8
            queued_events = st["queue"]
            panel.ctl({"cmd": "net", "up": True})
            panel.wait(lambda: panel.state()["reporter"]["queue"] == 0 and
                       panel.state()["reporter"]["track"]["queued"] == 0, 60, "all delivered")
            after = rx.frames[frames0:]
            kinds = [m["type"] for _path, _seq, m, _fl in after]
            first_pos = kinds.index(w.MSG_POSITION)
            events_before = [m for _p, _s, m, _f in after[:first_pos] if m["type"] == w.MSG_EVENT]
            assert len({(m["code"], m["qualifier"], m["zone"]) for m in events_before}) >= \
                queued_events
            codes = [(m["code"], m["zone"]) for m in events_before]
            assert (133, COMPARTMENT) in codes and (122, HOLDUP) in codes
            positions = [m["position"] for _p, _s, m, _f in after if m["type"] == w.MSG_POSITION]
            times = [p["fix_time"] for p in positions]
            assert times == sorted(times) and len(times) >= 8
            assert times[0] - 1_767_600_000 < 30  # the first point of the drive was kept
            assert panel.state()["reporter"]["dropped"] == 0
            # events with their position: the 133 where it was opened, out of every zone
            ev = rx.find(133, zone=COMPARTMENT)[0]
            assert ev["position"]["flags"] & w.POS_VALID
        finally:
            panel.close()


def test_gps_command_mistakes_are_refused_in_words(tmp_path):
    """What a person types wrong at the sim's control socket is refused
    with a reason, and changes nothing."""
    with TinyReceiver(ACCOUNT) as rx:
        panel = PanelProcess(van(rx.port), str(tmp_path / "van"))
        try:
            panel.wait(lambda: rx.find(305), 30, "boot")
            r = panel.ctl({"cmd": "gps", "jam": "no"})
            assert r == {"ok": False, "error": "jam must be true or false, got 'no'"}
            r = panel.ctl({"cmd": "gps", "speedup": 20})
            assert r["ok"] is False and "no GPS replay connected" in r["error"]
            assert panel.ctl({"cmd": "gps", "speedup": 0})["error"] == \
                "speedup must be above 0 and at most 1000"
            r = panel.ctl({"cmd": "gps"})
            assert r == {"ok": True, "jam": False, "silent": False, "replay": False}
        finally:
            panel.close()
    cfg = van(0)
    cfg["kind"] = "bank"
    del cfg["vehicle"]
    cfg["zones"] = [z for z in cfg["zones"] if z["type"] in ("holdup", "tamper")]
    with TinyReceiver(ACCOUNT) as rx:
        cfg["receiver"]["primary"]["port"] = cfg["receiver"]["backup"]["port"] = rx.port
        panel = PanelProcess(cfg, str(tmp_path / "bank"))
        try:
            panel.wait(lambda: rx.find(305), 30, "boot")
            r = panel.ctl({"cmd": "gps", "jam": True})
            assert r == {"ok": False, "error": 'gps: not a vehicle unit (kind '
                                               '"vehicle" or "patrol")'}
        finally:
            panel.close()


# docs/mobile.md, "Footprint": the heap this test runs the van in (one
# step above the benchmark's smallest, bench/bench_firmware_heap.py --panel van)
VAN_HEAP_KIB = int(re.search(r"runs it from its bundle in \*\*(\d+) KiB\*\*",
                             open(os.path.join(REPO, "docs", "mobile.md"),
                                  encoding="utf-8").read()).group(1))


def _flood(address: str, stop: threading.Event, sent: list) -> None:
    """A GNSS receiver gone mad on the unit's UART: valid epochs (the van
    parked in its depot) and line noise, as fast as the socket takes them."""
    from firmware import gpsreplay as G  # noqa: PLC0415 - gpxpy only for a route

    t0 = dt.datetime(2026, 1, 5, 8, 0, tzinfo=dt.timezone.utc)
    block = b"".join(
        ("\r\n".join(G.sentences(t0 + dt.timedelta(milliseconds=100 * k), 52.368, 4.882, 0.0,
                                 0.0, True)) + "\r\n").encode() +
        b"$GPGGA,garbage*00\r\n\x00\xff" + b"x" * 100 + b"\r\n"
        for k in range(200))
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as s:
        try:
            while not stop.is_set():
                s.sendall(block)
                sent[0] += len(block)
        except OSError:
            if not stop.is_set():  # the panel went away: the test fails on that
                raise


def test_a_gps_flood_never_starves_the_scan_nor_delays_the_holdup(tmp_path):
    """The GNSS UART floods the unit (a receiver stuck at its highest rate,
    line noise among its sentences) faster than it can parse: the gps task
    takes a bounded share each round, so the scan still reads the hold-up
    button, the alarm is queued and reported with the van's position, and
    every task stays alive (the supervisor's staleness check) while the
    flood goes on.  From the .mpy bundle in the heap docs/mobile.md gives
    for this test (VAN_HEAP_KIB): no MemoryError."""
    with TinyReceiver(ACCOUNT) as rx:
        cfg = van(rx.port)
        bundle = str(tmp_path / "bundle")
        with open(tmp_path / "van.json", "w", encoding="utf-8") as f:
            json.dump(cfg, f)
        fwbuild.bundle(bundle, "sim", str(tmp_path / "van.json"))
        panel = PanelProcess(cfg, str(tmp_path / "van"), bundle=bundle,
                             heapsize="%dk" % VAN_HEAP_KIB)
        stop = threading.Event()
        sent = [0]
        flood = threading.Thread(target=_flood, args=(panel.gps, stop, sent), daemon=True)
        try:
            panel.wait(lambda: rx.find(305), 30, "boot")
            flood.start()

            def flooded():
                v = panel.state()["vehicle"]
                return v["fix"] == "valid" and v["bad_sentences"] > 50 and v
            before = panel.wait(flooded, 30, "the flood parsed")
            panel.wait(lambda: sent[0] > 2_000_000, 60, "two megabytes of NMEA sent")
            panel.ctl({"cmd": "zone", "zone": HOLDUP, "state": "alarm"})
            [ev] = panel.wait(lambda: rx.find(122, zone=HOLDUP), 30, "the hold-up reported")
            assert ev["position"]["flags"] & w.POS_VALID
            assert abs(ev["position"]["lat"] - 52_368_000) < 100
            st = panel.state()
            assert flood.is_alive(), "the flood ended before the hold-up went out"
            assert st["vehicle"]["sentences"] > before["sentences"]
            assert [(t["name"], t["alive"], t["deaths"]) for t in st["tasks"]
                    if t["name"] in ("scan", "report", "gps")] == \
                [("scan", True, 0), ("report", True, 0), ("gps", True, 0)]
            assert st["reporter"]["dropped"] == 0
            assert "MemoryError" not in panel.console()
        finally:
            stop.set()
            panel.close()
            flood.join(30)


def test_a_van_whose_shapes_mean_nothing_reports_its_config_trouble(tmp_path):
    """On the panel itself (vehicle_config.py under the VM): a corridor
    whose points are all one place and a geofence whose points enclose no
    area keep the van in safe mode, reporting 307 with the field at fault,
    rather than driving with a route or a zone that is not there."""
    cfg = van(0)
    cfg["vehicle"]["corridor"]["line"] = [[4.882, 52.368], [4.882, 52.368]]
    cfg["vehicle"]["allowed_zones"][1]["polygon"] = [[4.8975, 52.3745], [4.898, 52.375],
                                                    [4.8985, 52.3755]]
    with TinyReceiver(ACCOUNT) as rx:
        cfg["receiver"]["primary"]["port"] = cfg["receiver"]["backup"]["port"] = rx.port
        panel = PanelProcess(cfg, str(tmp_path / "van"))
        try:
            [ev] = panel.wait(lambda: rx.find(307), 30, "307 config trouble")
            said = panel.console()
            assert "vehicle.allowed_zones[1].polygon: its points enclose no area" in said
            assert "vehicle.corridor.line: all its points are the same place" in said
            assert ev["text"].startswith("vehicle.")
            st = panel.state()
            assert st["troubles"] & w.T_CONFIG and "vehicle" not in st and st["zones"] == []
        finally:
            panel.close()

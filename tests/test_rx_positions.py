"""Vehicle units' positions through a real receiver (issue 19, "Receiver"):
native POSITION messages over TCP and UDP are stored, then ACKed, once
however often the unit offers them; an EVENT's position is kept with the
event, in the track and in what goes to dispatch; a DC-09 event's [X][Y]
becomes the same position shape; track points are NAKed busy when they
would take the room events need, while an alarm still gets in."""

import asyncio
import os
import time

from protocol import dc09
from protocol.lean import glwire as w
from receiver.config import Config
from receiver.records import Account
from testkit.session_panel import SessionPanel, event_msg
from receiver.testing import running_receiver
from testkit.dispatch import JsonLinesSink
from testkit.wait import wait_until
from receiver.web.testing import demo_router

VAN = 3001


def position_msg(lat=52370200, lon=4895200, fix_time=None, reason=2, flags=0x07,
                 speed=420):
    return {"type": w.MSG_POSITION, "reason": reason, "position": {
        "lat": lat, "lon": lon, "speed": speed, "course": 900, "quality": 1, "sats": 9,
        "hdop": 8, "fix_time": int(time.time()) if fix_time is None else fix_time,
        "flags": flags}}


def van_account(**kw):
    return Account(str(VAN), os.urandom(32), panel_kind="vehicle", region="central",
                   site_name="Cash van 7", zones={"3": "hold-up button"}, **kw)


def config(tmp_path, **kw):
    c = Config(db=str(tmp_path / "rx.db"), tcp=[("127.0.0.1", 0)], udp=[("127.0.0.1", 0)],
               dc09_tcp=[("127.0.0.1", 0)])
    for k, v in kw.items():
        setattr(c, k, v)
    return c


async def test_position_messages_are_stored_then_acked_once(tmp_path):
    async with running_receiver(config(tmp_path), [van_account()]) as rx:
        q = rx.subscribe()
        host, port = rx.addresses["tcp"][0]
        p = SessionPanel(VAN, rx.account(str(VAN)).key, host, port)
        await p.connect()
        t = int(time.time())
        m1, m2 = position_msg(fix_time=t - 10), position_msg(lat=52371000, fix_time=t - 5)
        await p.deliver(1, m1)
        await p.deliver(2, m2)
        pts = await rx.store.track(str(VAN))
        assert [(x.position.lat, x.at, x.reason) for x in pts] == [
            (52.3702, t - 10, 2), (52.371, t - 5, 2)]
        assert pts[0].position.speed_kmh == 42.0 and pts[0].position.ignition
        assert pts[0].peer.startswith("tcp:127.0.0.1:")
        # the unit offers point 2 again with a new sequence (it gave way to an
        # event, or restarted): ACKed, stored once
        await p.deliver(3, m2)
        uhost, uport = rx.addresses["udp"][0]
        u = SessionPanel(VAN, rx.account(str(VAN)).key, uhost, uport, transport="udp")
        await u.connect()
        await u.deliver(4, m2)
        await u.deliver(5, position_msg(lat=52372000, fix_time=t))
        assert p.acked == [1, 2, 3] and u.acked == [4, 5]
        assert [x.position.lat for x in await rx.store.track(str(VAN))] == [
            52.3702, 52.371, 52.372]
        assert rx.metrics.track_points.labels("position")._value.get() == 3
        # the console hears each new point once
        kinds = []
        while not q.empty():
            kinds.append(q.get_nowait().to_json())
        assert [m["point"]["position"]["lat"] for m in kinds if m["type"] == "position"] == [
            52.3702, 52.371, 52.372]
        # supervision heard the unit
        assert rx.supervisor.status(str(VAN))[1]["heard_at"] is not None
        await p.close()
        await u.close()


async def test_an_events_position_goes_with_it_to_the_store_the_track_and_dispatch(tmp_path):
    sink = JsonLinesSink()
    await sink.start()
    try:
        async with running_receiver(config(tmp_path, router=demo_router(sink.port)),
                                    [van_account()]) as rx:
            host, port = rx.addresses["tcp"][0]
            p = SessionPanel(VAN, rx.account(str(VAN)).key, host, port)
            await p.connect()
            m = event_msg(code=122, zone=3)
            m["position"] = position_msg(lat=52374100, lon=4899800, flags=0x0D)["position"]
            await p.deliver(1, m)
            [ev] = await rx.store.list_events(account=str(VAN))
            assert (ev.position.lat, ev.position.lon, ev.position.alarm) == (52.3741, 4.8998,
                                                                            True)
            [tp] = await rx.store.track(str(VAN))
            assert (tp.source, tp.event_id) == ("event", ev.id)
            await wait_until(lambda: sink.received, what="the hold-up forwarded")
            sent = sink.received[0]
            assert sent["location"] == {"lat": 52.3741, "lon": 4.8998}
            assert sent["position"]["ignition"] is True and sent["position"]["moving"] is False
            await p.close()
    finally:
        await sink.stop()


async def test_dc09_location_is_the_same_position_shape(tmp_path):
    acct = Account("7A5", b"", protocol="dc09", supervised=False)
    async with running_receiver(config(tmp_path), [acct]) as rx:
        host, port = rx.addresses["dc09_tcp"][0]
        reader, writer = await asyncio.open_connection(host, port)
        m = dc09.Dc09Message(dc09.ADM_CID, False, 1, "2", "1", "7A5",
                             dc09.event_to_adm_cid("7A5", {"qualifier": 1, "code": 122,
                                                           "partition": 1, "zone": 3}),
                             [("X", "4.895200"), ("Y", "52.370200")], None)
        writer.write(dc09.build(m, None))
        rd = dc09.Dc09Reader()
        while True:
            f = rd.next_frame()
            if f is not dc09.NEED_DATA:
                break
            rd.receive_data(await asyncio.wait_for(reader.read(4096), 20))
        assert dc09.parse(f, key_lookup=lambda _a: None).msg_id == dc09.ACK
        writer.close()
        [ev] = await rx.store.list_events(account="7A5")
        j = ev.to_json()
        assert j["location"] == {"lat": 52.3702, "lon": 4.8952}
        assert j["position"]["protocol"] == "dc09" and j["position"]["speed_kmh"] is None
        [tp] = await rx.store.track("7A5")
        assert (tp.position.lat, tp.source, tp.event_id) == (52.3702, "event", ev.id)


async def test_track_points_give_way_to_events_when_the_store_is_behind(tmp_path):
    async with running_receiver(config(tmp_path), [van_account()]) as rx:
        host, port = rx.addresses["tcp"][0]
        # track points may fill half the queue bound: with a bound of 1 that
        # is none, while an event still gets in
        rx.config.max_pending_writes = 1
        p = SessionPanel(VAN, rx.account(str(VAN)).key, host, port, ack_timeout_ms=300)
        await p.connect()
        task = asyncio.create_task(p.deliver(1, position_msg()))
        await wait_until(lambda: any(n.reason == w.NAK_BUSY for n in p.naks),
                         what="NAK busy for the track point")
        assert await rx.store.track(str(VAN)) == []
        alarm = SessionPanel(VAN, rx.account(str(VAN)).key, host, port)
        await alarm.connect()
        await alarm.deliver(2, event_msg(code=122, zone=3))
        assert [e.code for e in await rx.store.list_events(account=str(VAN))] == [122]
        assert not task.done()
        rx.config.max_pending_writes = 5000
        await asyncio.wait_for(task, 30)  # the unit's retry is stored and ACKed
        assert len(await rx.store.track(str(VAN))) == 1
        await p.close()
        await alarm.close()


async def test_a_failing_store_naks_track_points_busy_until_it_recovers(tmp_path):
    async with running_receiver(config(tmp_path), [van_account()]) as rx:
        host, port = rx.addresses["tcp"][0]
        await rx.store.run_maintenance(lambda c: c.execute("PRAGMA query_only=1"))
        p = SessionPanel(VAN, rx.account(str(VAN)).key, host, port, ack_timeout_ms=300)
        await p.connect()
        task = asyncio.create_task(p.deliver(1, position_msg()))
        await wait_until(lambda: any(n.reason == w.NAK_BUSY for n in p.naks),
                         what="NAK busy while the store is read-only")
        assert not task.done()
        await rx.store.run_maintenance(lambda c: c.execute("PRAGMA query_only=0"))
        await asyncio.wait_for(task, 30)
        assert p.acked == [1] and len(await rx.store.track(str(VAN))) == 1
        await p.close()


async def test_track_points_in_hand_are_bounded_so_alarms_do_not_wait_behind_them(
        tmp_path, monkeypatch):
    """Beyond TRACK_IN_HAND track points taken and not yet committed, a
    POSITION is NAKed busy (the unit offers it again), however much room
    the store queue has: each point in hand is event-loop work an alarm
    would wait behind."""
    import threading  # noqa: PLC0415

    from receiver import app  # noqa: PLC0415
    monkeypatch.setattr(app, "TRACK_IN_HAND", 1)
    async with running_receiver(config(tmp_path), [van_account()]) as rx:
        host, port = rx.addresses["tcp"][0]
        gate = threading.Event()
        held = rx.store.run_maintenance(lambda c: gate.wait(30))  # the writer waits
        first = SessionPanel(VAN, rx.account(str(VAN)).key, host, port, ack_timeout_ms=300)
        await first.connect()
        t1 = asyncio.create_task(first.deliver(1, position_msg(fix_time=int(time.time()) - 5)))
        await wait_until(lambda: rx.store.pending_writes >= 2, what="the first point in hand")
        second = SessionPanel(VAN, rx.account(str(VAN)).key, host, port, ack_timeout_ms=300)
        await second.connect()
        t2 = asyncio.create_task(second.deliver(2, position_msg()))
        await wait_until(lambda: any(n.reason == w.NAK_BUSY for n in second.naks),
                         what="NAK busy for the second point")
        assert not t1.done() and not t2.done()
        gate.set()
        await held
        await asyncio.wait_for(asyncio.gather(t1, t2), 30)  # the retry is stored
        assert len(await rx.store.track(str(VAN))) == 2
        await first.close()
        await second.close()

"""Routing and store-and-forward: alarms routed by region and class to
three levels of dispatch centre, delivered in order through a real
JSON-lines TCP sink that is down and then up, and a webhook; the
protocol-agnostic ingest API."""

import asyncio
import os
import time

import pytest
from aiohttp import web

from receiver import routing
from receiver.app import Busy
from receiver.config import Config
from receiver.forwarder import JsonLinesOutput
from receiver.outputs import MAX_SINK_LINE, DeliveryError
from receiver.testing import make_accounts, running_receiver
from testkit.dispatch import JsonLinesSink
from testkit.net import free_port
from testkit.wait import wait_until

ROUTING = {
    "outputs": {
        "ps-cad": {"type": "jsonl", "address": "127.0.0.1:%d", "timeout_s": 2,
                   "retry_max_s": 0.5},
    },
    "centers": {
        "ps-north": {"level": "police_station", "name": "North PS", "outputs": ["ps-cad"]},
        "dc-1": {"level": "district_command", "name": "District 1", "outputs": ["ps-cad"]},
        "city": {"level": "municipal_center", "name": "City", "outputs": []},
    },
    "routes": [
        {"regions": ["north"], "classes": ["burglary", "holdup"],
         "police_station": "ps-north", "district_command": "dc-1", "municipal_center": "city"},
        {"regions": ["*"], "classes": ["fire"], "municipal_center": "city"},
    ],
}


def router_for(port, extra_outputs=None):
    doc = {k: dict(v) if isinstance(v, dict) else list(v) for k, v in ROUTING.items()}
    doc["outputs"] = {"ps-cad": dict(ROUTING["outputs"]["ps-cad"],
                                     address="127.0.0.1:%d" % port)}
    doc["outputs"].update(extra_outputs or {})
    return routing.parse(doc, known_classes=("burglary", "holdup", "fire", "trouble"))


def ev(account, seq, code=130, **kw):
    d = {"account": str(account), "protocol": "dc09", "dedupe_key": "dc09:%d" % seq,
         "qualifier": 1, "code": code, "partition": 1, "zone": 2, "peer": "test"}
    d.update(kw)
    return d


def test_routing_first_match_and_levels():
    r = router_for(9)
    d = r.route("north", "burglary")
    assert d.routed_to == {"police_station": "ps-north", "district_command": "dc-1",
                           "municipal_center": "city"}
    assert [(o, lv) for o, lv, _ in d.deliveries] == [("ps-cad", "police_station"),
                                                      ("ps-cad", "district_command")]
    assert r.route("south", "fire").routed_to == {"municipal_center": "city"}
    assert r.route("south", "burglary").routed_to == {}


@pytest.mark.parametrize("mutate, msg", [
    (lambda d: d["routes"][0].update(police_station="nope"), "unknown centre"),
    (lambda d: d["routes"][0].update(police_station="dc-1"), "is a district_command"),
    (lambda d: d["routes"][0].update(classes=["burglarly"]), "unknown event class"),
    (lambda d: d["centers"]["city"].update(outputs=["missing"]), "unknown output"),
    (lambda d: d["centers"]["city"].update(level="county"), "level must be"),
    (lambda d: d["outputs"]["ps-cad"].update(type="smtp"), "type must be"),
    (lambda d: d["outputs"]["ps-cad"].update(address="nohost"), "host:port"),
    (lambda d: d.update(extra={}), "unknown routing section"),
])
def test_bad_routing_is_refused(mutate, msg):
    import copy
    doc = copy.deepcopy(ROUTING)
    doc["outputs"]["ps-cad"]["address"] = "127.0.0.1:9"
    mutate(doc)
    with pytest.raises(routing.RoutingError, match=msg):
        routing.parse(doc, known_classes=("burglary", "holdup", "fire"))


async def test_alarms_wait_in_the_outbox_while_the_sink_is_down_then_go_in_order(tmp_path):
    port = free_port()
    accts = make_accounts(3, region="north", site_name="Bank")
    cfg = Config(db=str(tmp_path / "rx.db"), router=router_for(port))
    async with running_receiver(cfg, accts) as rx:
        for i in range(1, 7):
            out = await rx.ingest(ev(1 + i % 3, i))
            assert out.alarm_id is not None
        await rx.ingest(ev(1, 100, code=602))  # a test report: no alarm, no delivery
        fwd = rx.forwarders["ps-cad"]
        await wait_until(lambda: fwd.backoff.failures >= 2, what="delivery retried")
        assert await rx.store.outbox_depth() == {"ps-cad": 12}  # 6 alarms x 2 levels
        [a] = [x for x in await rx.store.list_alarms() if x.id == 1]
        assert a.routed_to["police_station"] == "ps-north"

        sink = JsonLinesSink(port=port)
        await sink.start()
        try:
            await wait_until(lambda: len(sink.received) >= 12, 30, what="all delivered")
            ids = sink.ids()
            assert ids == sorted(ids) and len(set(ids)) == 12
            first = sink.received[0]
            assert (first["type"], first["level"], first["center"]) == (
                "alarm", "police_station", "ps-north")
            assert first["site_name"] == "Bank" and first["event_class"] == "burglary"
            await wait_until(lambda: _depth_zero(rx))
            rows = await rx.store.list_outbox("ps-cad")
            assert all(r.delivered_at for r in rows)
            assert max(r.attempts for r in rows) >= 2  # the head was retried
        finally:
            await sink.stop()


async def _depth_zero(rx):
    return (await rx.store.outbox_depth()) == {}


async def test_sink_that_drops_without_ack_gets_the_message_again(tmp_path):
    port = free_port()
    accts = make_accounts(1, region="north")
    cfg = Config(db=str(tmp_path / "rx.db"), router=router_for(port))
    dropper = JsonLinesSink(port=port, ack=False)
    await dropper.start()
    async with running_receiver(cfg, accts) as rx:
        await rx.ingest(ev(1, 1))
        await wait_until(lambda: dropper.connections >= 2, what="resent after a drop")
        await dropper.stop()
        sink = JsonLinesSink(port=port)
        await sink.start()
        try:
            await wait_until(lambda: len(sink.received) == 2, 30)
            assert sink.ids() == [1, 2]
        finally:
            await sink.stop()


async def test_a_sink_answering_an_overlong_line_is_a_broken_peer():
    """A JSON-lines answer longer than MAX_SINK_LINE fails the delivery in
    words (the connection's read limit) and closes the connection; the
    ACK behind it is never read as one."""
    async def sink(reader, writer):
        await reader.readline()
        writer.write(b"x" * (MAX_SINK_LINE + 10) + b"\nACK 7\n")
        await writer.drain()

    server = await asyncio.start_server(sink, "127.0.0.1", 0)
    out = JsonLinesOutput(router_for(server.sockets[0].getsockname()[1]).outputs["ps-cad"])
    try:
        with pytest.raises(DeliveryError, match="sent an answer that could not be read"):
            await out.deliver(7, {"type": "alarm"})
        assert out.kept() is None  # the next delivery opens a fresh connection
    finally:
        await out.close()
        server.close()
        await server.wait_closed()


async def test_outbox_survives_a_restart(tmp_path):
    port = free_port()
    accts = make_accounts(1, region="north")
    cfg = Config(db=str(tmp_path / "rx.db"), router=router_for(port))
    async with running_receiver(cfg, accts) as rx:
        await rx.ingest(ev(1, 1, code=121))  # duress: holdup class
        assert await rx.store.outbox_depth() == {"ps-cad": 2}
    sink = JsonLinesSink(port=port)
    await sink.start()
    try:
        async with running_receiver(cfg) as rx2:
            await wait_until(lambda: len(sink.received) == 2, 30)
            assert {m["event_class"] for m in sink.received} == {"holdup"}
            await wait_until(lambda: _depth_zero(rx2))
    finally:
        await sink.stop()


async def test_webhook_retries_until_2xx(tmp_path):
    seen = []

    async def hook(request):
        seen.append((request.headers.get("Idempotency-Key"), await request.json()))
        return web.Response(status=503 if len(seen) <= 2 else 204)

    app = web.Application()
    app.router.add_post("/alarms", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    hport = site._server.sockets[0].getsockname()[1]
    r = routing.parse({
        "outputs": {"city-hook": {"type": "webhook", "url": "http://127.0.0.1:%d/alarms" % hport,
                                  "retry_max_s": 0.5}},
        "centers": {"city": {"level": "municipal_center", "outputs": ["city-hook"]}},
        "routes": [{"classes": ["fire"], "municipal_center": "city"}]})
    accts = make_accounts(1)
    try:
        async with running_receiver(Config(db=str(tmp_path / "rx.db"), router=r), accts) as rx:
            await rx.ingest(ev(1, 1, code=111))  # smoke: fire
            await wait_until(lambda: len(seen) >= 3, 30)
            await wait_until(lambda: _depth_zero(rx))
            key, body = seen[-1]
            assert key == str(body["id"]) and body["center"] == "city"
            assert body["description"].startswith("Smoke")
    finally:
        await runner.cleanup()


async def test_protocol_agnostic_ingest(tmp_path):
    accts = make_accounts(1)
    async with running_receiver(Config(db=str(tmp_path / "rx.db")), accts) as rx:
        q = rx.subscribe()
        t = time.time()
        out = await rx.ingest(ev(1, 7, code=602, qualifier=1, event_time=t, text="weekly test"))
        again = await rx.ingest(ev(1, 7, code=602))
        assert again.duplicate and again.event_id == out.event_id and out.alarm_id is None
        [e] = await rx.store.list_events()
        assert (e.protocol, e.dedupe_key, e.event_class, e.text) == (
            "dc09", "dc09:7", "test", "weekly test")
        msg = q.get_nowait().to_json()
        assert msg["type"] == "event" and msg["event"]["id"] == out.event_id
        assert q.empty()  # the duplicate is not published again
        for bad in [{**ev(1, 8), "qualifier": 2}, {**ev(1, 8), "code": 1000},
                    {**ev(1, 8), "colour": "red"}, {**ev(1, 8), "account": 12},
                    {**ev(1, 8), "protocol": "sia"}]:
            with pytest.raises(ValueError):
                await rx.ingest(bad)
        rx.config.max_pending_writes = 0
        with pytest.raises(Busy):
            await rx.ingest(ev(1, 9))
        rx.config.max_pending_writes = 100
        # operator actions publish too
        out = await rx.ingest(ev(1, 10, code=130))
        await rx.workflow.acknowledge(out.alarm_id, "op-1")
        await rx.workflow.resolve(out.alarm_id, "op-1", "false", "checked",
                                  "no plan step applies", may_override=True)
        msgs = _drain(q)
        states = [m.get("state") for m in msgs if m["type"] == "alarm"]
        assert states == ["pending", "acknowledged", "resolved"]
        assert [m["change"] for m in msgs if m["type"] == "workflow"] == ["claim", "resolve"]
        rx.unsubscribe(q)


def _drain(q):
    out = []
    while not q.empty():
        out.append(q.get_nowait().to_json())  # the live messages' JSON
    return out


async def test_a_forwarded_alarm_says_where_it_is_a_van_without_a_fix_its_last_known(tmp_path):
    """The dispatch centre learns where each alarm is, by the rule the map
    and the patrol proposal use: the event's position, else a vehicle
    unit's last known position (said as such, with its time: a
    cash-in-transit van's hold-up sent without a fix), else the site; null
    when none is known."""
    from receiver.records import Account, Position, TrackRecord
    port = free_port()
    accts = [Account("1", os.urandom(32), region="north", site_name="Bank",
                     site_lat=52.23, site_lon=21.01),
             Account("2", os.urandom(32), region="north", panel_kind="vehicle",
                     site_name="Van 2"),
             Account("3", os.urandom(32), region="north", panel_kind="vehicle"),
             Account("4", os.urandom(32), region="north")]
    cfg = Config(db=str(tmp_path / "rx.db"), router=router_for(port))
    sink = JsonLinesSink(port=port)
    await sink.start()
    try:
        async with running_receiver(cfg, accts) as rx:
            fix = time.time() - 30
            await rx.ingest_track(TrackRecord("2", "p1", fix, Position(52.10, 20.90,
                                                                        fix_time=fix)))
            await rx.ingest(ev(1, 1))  # the bank: its site
            await rx.ingest(ev(2, 2, code=122))  # the van's hold-up, no fix: last known
            await rx.ingest(ev(3, 3, code=122, position=Position(52.30, 21.10)))  # its own
            await rx.ingest(ev(4, 4))  # nothing known
            await wait_until(lambda: len(sink.received) >= 8, 30, what="all delivered")
            where = {m["account"]: m["where"] for m in sink.received}
            assert where["1"] == {"lat": 52.23, "lon": 21.01, "radius_m": 150.0,
                                  "source": "site"}
            assert where["2"] == {"lat": 52.10, "lon": 20.90, "radius_m": 150.0,
                                  "source": "vehicle's last known position", "at": fix}
            assert where["3"]["source"] == "alarm position"
            assert (where["3"]["lat"], where["3"]["lon"]) == (52.30, 21.10)
            assert where["4"] is None  # looked up: nowhere known
            # the outbox keeps the message as it was routed; where is looked up per delivery
            rows = await rx.store.list_outbox("ps-cad")
            assert all("where" not in r.payload for r in rows)
    finally:
        await sink.stop()


async def test_an_alarm_goes_without_where_rather_than_wait_for_a_failing_lookup(
        tmp_path, monkeypatch, caplog):
    from receiver.vehicles.service import VehicleService

    async def failing(self, message):
        raise OSError("database is locked")
    monkeypatch.setattr(VehicleService, "where_forwarded", failing)
    port = free_port()
    cfg = Config(db=str(tmp_path / "rx.db"), router=router_for(port))
    sink = JsonLinesSink(port=port)
    await sink.start()
    try:
        async with running_receiver(cfg, make_accounts(1, region="north")) as rx:
            await rx.ingest(ev(1, 1))
            await wait_until(lambda: len(sink.received) >= 2, 30, what="delivered")
            assert all("where" not in m for m in sink.received)  # not looked up: absent
        assert "alarm forwarded without where" in caplog.text
        assert "database is locked" in caplog.text
    finally:
        await sink.stop()

"""The DC-09 (ADM-CID) forwarding output against a small DC-09 receiving
sink on loopback: alarms from DC-09 panels and native ones delivered as
ADM-CID, encrypted, in order, only marked delivered on the sink's ACK;
store-and-forward while the sink is down; a sink that closes after each
reply; a NAK with the sink's time; DUH holds the queue; configuration."""

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from protocol import dc09
from receiver import dc09_output, routing
from receiver.config import Config
from receiver.store import Account
from receiver.testing import running_receiver
from testkit.net import free_port
from testkit.wait import wait_until

KEY = bytes(range(32))  # the automation software's AES-256 key
CLASSES = ("burglary", "holdup", "fire", "trouble")


class Dc09Sink:
    """Automation software's DC-09 input: parses each message with KEY,
    stores it and answers (*)ACK, or per ``mode``: "close" (close after
    each reply), "nak" (NAK with ``skew`` added to its clock until a
    message's timestamp is within 20 s of that clock), "duh", "silent"."""

    def __init__(self, port=0, mode="ack", key=KEY, skew=0.0):
        self.port, self.mode, self.key, self.skew = port, mode, key, skew
        self.received: list[dc09.Dc09Message] = []
        self.naks = 0
        self.connections = 0
        self._server = None

    async def start(self):
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port,
                                                  reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self):
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def now(self):
        return datetime.now(timezone.utc) + timedelta(seconds=self.skew)

    async def _handle(self, reader, writer):
        self.connections += 1
        rd = dc09.Dc09Reader()
        try:
            while True:
                data = await reader.read(4096)
                if not data:
                    break
                rd.receive_data(data)
                while (f := rd.next_frame()) is not dc09.NEED_DATA:
                    if self.mode == "nak":
                        try:
                            m = dc09.parse(f, key_lookup=lambda a: self.key, now=self.now())
                        except dc09.Dc09TimestampError:
                            self.naks += 1
                            writer.write(dc09.build_nak(self.now()))
                            continue
                    else:
                        m = dc09.parse(f, key_lookup=lambda a: self.key)
                    if self.mode == "silent":
                        continue
                    if self.mode == "duh":
                        writer.write(dc09.build_duh(m))
                        continue
                    self.received.append(m)
                    writer.write(dc09.build_ack(m, self.key, now=self.now()))
                    if self.mode == "close":
                        await writer.drain()
                        writer.close()
                        return
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    def events(self):
        return [(m.seq, m.account, dc09.adm_cid_to_event(m)) for m in self.received]


def router(port, **opts):
    out = {"type": "dc09", "address": "127.0.0.1:%d" % port, "key": KEY.hex(),
           "timeout_s": 2, "retry_max_s": 0.5}
    out.update(opts)
    return routing.parse({
        "outputs": {"automation": out},
        "centers": {"cs": {"level": "police_station", "name": "CS",
                           "outputs": ["automation"]}},
        "routes": [{"regions": ["*"], "classes": ["*"], "police_station": "cs"}]},
        known_classes=CLASSES)


ACCOUNTS = [Account("12AB", b"", protocol="dc09", supervised=False),
            Account("42", bytes(32), supervised=False)]


def ev(account, n, code=130, q=1, zone=3, partition=1):
    return {"account": account, "protocol": "native" if account == "42" else "dc09",
            "dedupe_key": "t:%d" % n, "seq": n,
            "qualifier": q, "code": code, "partition": partition, "zone": zone}


async def delivered(rx):
    return (await rx.store.outbox_depth()) == {}


async def test_alarms_go_out_as_encrypted_adm_cid_in_order(tmp_path):
    sink = Dc09Sink()
    await sink.start()
    cfg = Config(db=str(tmp_path / "rx.db"), router=router(sink.port, line="7",
                                                           receiver="2"))
    try:
        async with running_receiver(cfg, ACCOUNTS) as rx:
            await rx.ingest(ev("12AB", 1, code=130, zone=3))
            await rx.ingest(ev("42", 2, code=122, zone=12, partition=2))  # native account
            await rx.ingest(ev("12AB", 3, code=602, q=1))  # a test report: no alarm
            await rx.ingest(ev("12AB", 4, code=110, zone=1234))  # zone beyond Contact ID
            await wait_until(lambda: delivered(rx), what="outbox drained")
            assert all(m.encrypted and m.line == "7" and m.receiver == "2"
                       for m in sink.received)
            assert sink.events() == [
                (1, "12AB", {"qualifier": 1, "code": 130, "partition": 1, "zone": 3}),
                (2, "0042", {"qualifier": 1, "code": 122, "partition": 2, "zone": 12}),
                (3, "12AB", {"qualifier": 1, "code": 110, "partition": 1, "zone": 999})]
            assert rx.metrics.forwarded.labels("automation", "delivered")._value.get() == 3
    finally:
        await sink.stop()


async def test_sink_down_then_up_gets_everything_in_order(tmp_path):
    port = free_port()
    cfg = Config(db=str(tmp_path / "rx.db"), router=router(port, account="C0FFEE"))
    async with running_receiver(cfg, ACCOUNTS) as rx:
        for i in range(1, 6):
            await rx.ingest(ev("12AB", i, zone=i))
        fwd = rx.forwarders["automation"]
        await wait_until(lambda: fwd.backoff.failures >= 2, what="delivery retried")
        assert await rx.store.outbox_depth() == {"automation": 5}
        sink = Dc09Sink(port=port)
        await sink.start()
        try:
            await wait_until(lambda: delivered(rx), 30, what="all delivered")
            assert [(s, a, e["zone"]) for s, a, e in sink.events()] == [
                (i, "C0FFEE", i) for i in range(1, 6)]
            rows = await rx.store.list_outbox("automation")
            assert all(r.delivered_at for r in rows) and max(r.attempts for r in rows) >= 2
        finally:
            await sink.stop()


async def test_sink_that_closes_after_each_reply(tmp_path):
    sink = Dc09Sink(mode="close")
    await sink.start()
    cfg = Config(db=str(tmp_path / "rx.db"), router=router(sink.port))
    try:
        async with running_receiver(cfg, ACCOUNTS) as rx:
            for i in range(1, 5):
                await rx.ingest(ev("12AB", i, zone=i))
            await wait_until(lambda: delivered(rx), what="all delivered")
            assert [e["zone"] for _, _, e in sink.events()] == [1, 2, 3, 4]
            assert sink.connections >= 4
    finally:
        await sink.stop()


async def test_nak_with_the_far_end_time_corrects_the_next_attempt(tmp_path):
    sink = Dc09Sink(mode="nak", skew=-3600.0)  # the sink's clock is an hour behind
    await sink.start()
    cfg = Config(db=str(tmp_path / "rx.db"), router=router(sink.port))
    try:
        async with running_receiver(cfg, ACCOUNTS) as rx:
            await rx.ingest(ev("12AB", 1))
            await wait_until(lambda: delivered(rx), what="delivered after the NAK")
            assert sink.naks >= 1 and len(sink.received) == 1
            out = rx.forwarders["automation"].output
            assert out.naks >= 1
            assert abs(out.skew.total_seconds() + 3600) < 60
    finally:
        await sink.stop()


async def test_duh_keeps_the_row_at_the_head(tmp_path):
    sink = Dc09Sink(mode="duh")
    await sink.start()
    cfg = Config(db=str(tmp_path / "rx.db"), router=router(sink.port))
    try:
        async with running_receiver(cfg, ACCOUNTS) as rx:
            await rx.ingest(ev("12AB", 1))
            out = rx.forwarders["automation"].output
            await wait_until(lambda: out.duhs >= 2, what="retried after DUH")
            assert await rx.store.outbox_depth() == {"automation": 1}
            sink.mode = "ack"
            await wait_until(lambda: delivered(rx), what="delivered once accepted")
            assert len(sink.received) == 1
    finally:
        await sink.stop()


async def test_clear_ack_to_an_encrypted_message_is_not_delivery(tmp_path, monkeypatch):
    sink = Dc09Sink()
    await sink.start()
    out = dc09_output.Dc09Output(router(sink.port, timeout_s=0.5).outputs["automation"])
    real_ack = dc09.build_ack

    def clear_ack(m, key=None, now=None, pad=None):  # what a forger on the path sends
        return real_ack(dc09.Dc09Message(m.msg_id, False, m.seq, m.receiver, m.line,
                                         m.account))
    try:
        monkeypatch.setattr(dc09, "build_ack", clear_ack)
        with pytest.raises(dc09_output.DeliveryError):
            await out.deliver(1, ev("12AB", 1))
        monkeypatch.setattr(dc09, "build_ack", real_ack)
        await out.deliver(2, ev("12AB", 2))
        assert [m.seq for m in sink.received] == [1, 2]
    finally:
        await out.close()
        await sink.stop()


def test_sequence_numbers_wrap_with_the_outbox_id():
    assert [dc09_output.seq_for(i) for i in (1, 9999, 10000, 10001, 19998)] == [
        1, 9999, 1, 2, 9999]
    opts = routing.dc09_options({"line": "1"})
    m = dc09_output.message_for(10000, {"account": "1", "qualifier": 9, "code": "x"}, opts,
                                datetime.now(timezone.utc))
    assert (m.seq, m.account, m.data, m.encrypted) == (1, "0001", "#0001|1000 00 000", False)


def test_where_the_alarm_is_goes_as_extended_data_x_and_y():
    """The forwarder's ``where`` (a van's last known position, a site) as
    DC-09 extended data: the receiver's own parser reads the same place
    back; a bad or missing ``where`` adds nothing (an alarm must still go)."""
    opts = routing.dc09_options({})
    now = datetime.now(timezone.utc)
    where = {"lat": -33.868820, "lon": 151.209296, "radius_m": 150.0,
             "source": "vehicle's last known position", "at": 1.0}
    m = dc09_output.message_for(7, {"account": "12AB", "qualifier": 1, "code": 122,
                                    "where": where}, opts, now)
    assert m.extended == [("X", "E151.209296"), ("Y", "S33.868820")]
    back = dc09.parse(dc09.build(m, None), key_lookup=lambda _a: None)
    assert dc09.location(dict(back.extended)) == {"lat": -33.86882, "lon": 151.209296}
    for bad in (None, {}, {"lat": "x", "lon": 1}, {"lat": 91.0, "lon": 0.0}):
        m = dc09_output.message_for(7, {"account": "12AB", "code": 122, "where": bad},
                                    opts, now)
        assert m.extended == []


@pytest.mark.parametrize("opts, why", [
    ({"account": "XYZ"}, "3-16 hex"),
    ({"key": "00ff"}, "16, 24 or 32 bytes"),
    ({"key": "0123456789abcdef", "key_format": "base64"}, "key format"),
    ({"line": "1234567"}, "line must be 1-6 hex"),
    ({"receiver": ""}, "receiver must be 1-6 hex"),
    ({"colour": "red"}, "unknown key"),
])
def test_bad_dc09_output_config_is_refused(opts, why):
    with pytest.raises(routing.RoutingError, match=why):
        router(9, **opts)


def test_ascii_key_and_defaults():
    spec = router(9, key="0123456789ABCDEF", key_format="ascii").outputs["automation"]
    assert spec.type == "dc09" and (spec.host, spec.port) == ("127.0.0.1", 9)
    assert spec.dc09 == {"account": None, "key": b"0123456789ABCDEF", "line": "0",
                         "receiver": None}


async def test_from_a_dc09_panel_through_routing_to_the_dc09_output(tmp_path):
    sink = Dc09Sink()
    await sink.start()
    cfg = Config(db=str(tmp_path / "rx.db"), router=router(sink.port),
                 dc09_tcp=[("127.0.0.1", 0)])
    key = bytes(range(50, 66))
    try:
        async with running_receiver(cfg, [Account("77AA", key, protocol="dc09",
                                                  supervised=False)]) as rx:
            reader, writer = await asyncio.open_connection(*rx.addresses["dc09_tcp"][0])
            m = dc09.Dc09Message("ADM-CID", True, 31, None, "3", "77AA", "#77AA|1122 02 015",
                                 [], datetime.now(timezone.utc).replace(microsecond=0))
            writer.write(dc09.build(m, key))
            rd = dc09.Dc09Reader()
            while (f := rd.next_frame()) is dc09.NEED_DATA:
                rd.receive_data(await reader.read(4096))
            assert dc09.parse(f, key_lookup=lambda a: key).msg_id == "ACK"
            writer.close()
            await wait_until(lambda: delivered(rx), what="forwarded")
            [(seq, account, event)] = sink.events()
            assert (account, event) == ("77AA", {"qualifier": 1, "code": 122, "partition": 2,
                                                 "zone": 15})
            [a] = await rx.store.list_alarms()
            assert a.routed_to == {"police_station": "cs"}
    finally:
        await sink.stop()

"""The firmware's DC-09 reporting (firmware/device/dc09rep.py) under
CPython, against the host DC-09 codec (protocol/dc09.py) acting as a
standard receiver through fake links, with time driven by the test; and
the "protocol": "dc09" part of the config validator."""

import sys
from datetime import datetime, timedelta, timezone

import pytest

from firmware import DEVICE_DIR
from firmware.device import config as C
from protocol import dc09
from protocol.lean import glwire as w
from testkit.configs import scenario_config

if DEVICE_DIR not in sys.path:
    sys.path.append(DEVICE_DIR)

import cid  # noqa: E402
import clock  # noqa: E402
import dc09rep  # noqa: E402
import panel as P  # noqa: E402
import pqueue  # noqa: E402
import seqstore  # noqa: E402

T0 = 1_800_000_000
K128 = bytes(range(16))
K192 = bytes(range(24))
K256 = bytes(range(32))


class Dc09Rx:
    """A standard DC-09 receiver: the host codec, the timestamp test against
    its own clock (T0 + skew + test time), ACK/*ACK, NAK, or DUH/silence."""

    def __init__(self, key):
        self.key = key
        self.skew = 0
        self.now_ms = 0
        self.mode = ["ack", "ack"]  # per path: ack | duh | silent
        self.events = {}  # (seq, data) -> message, what was ACKed
        self.acked_on = {}  # (seq, data) -> path
        self.frames = []  # (path, message or reply kind)
        self.naks = 0

    def now(self):
        return datetime.fromtimestamp(T0 + self.skew + self.now_ms // 1000, timezone.utc)

    def handle(self, frame, path):
        try:
            m = dc09.parse(frame, key_lookup=lambda a: self.key if a == "12AB" else None,
                           now=self.now())
        except dc09.Dc09TimestampError:
            self.naks += 1
            self.frames.append((path, "NAK"))
            return dc09.build_nak(self.now())
        self.frames.append((path, m))
        mode = self.mode[path - 1]
        if mode == "silent":
            return None
        if mode == "duh":
            return dc09.build_duh(m)
        if m.msg_id == "ADM-CID":
            self.events[(m.seq, m.data)] = m
            self.acked_on[(m.seq, m.data)] = path
        return dc09.build_ack(m, self.key, now=self.now())

    def adm(self):
        """ACKed events as (dc09 seq, qualifier, code, partition, zone)."""
        out = []
        for (seq, _), m in sorted(self.events.items()):
            e = dc09.adm_cid_to_event(m)
            out.append((seq, e["qualifier"], e["code"], e["partition"], e["zone"]))
        return out


class FakeLink:
    """stream: bytes may arrive split; ``close_after_reply`` drops the
    connection after each reply (reconnecting takes one poll)."""

    def __init__(self, rx, path, stream, close_after_reply=False, split=False):
        self.rx, self.path, self.stream = rx, path, stream
        self.close_after_reply = close_after_reply
        self.split = split
        self.lost = False
        self.connected = True
        self.inbox = []
        self.connects = 1

    def poll(self, now_ms):
        if not self.connected:
            self.connected = True
            self.connects += 1

    def send(self, data):
        if not self.connected:
            return False
        reply = self.rx.handle(bytes(data), self.path)
        if reply:
            if self.split:
                self.inbox.extend(reply[i:i + 1] for i in range(len(reply)))
            else:
                self.inbox.append(b"noise" + reply if self.stream else reply)
        return True

    def recv(self):
        if self.inbox:
            d = self.inbox.pop(0)
            if self.close_after_reply and not self.inbox:
                self.connected = False
                self.lost = True
            return d
        return None


def dc09_config(aes_key=K128, **kw):
    cfg = scenario_config(7700, timings={"ack_timeout_ms": 1000, "max_backoff_ms": 4000,
                                         "fail_after": 2, "heartbeat_s": 60,
                                         "backup_heartbeat_s": 300})
    del cfg["account"], cfg["key"]
    cfg["protocol"] = "dc09"
    cfg["dc09"] = {"account": "12ab", "line": "1", "receiver_no": "2"}
    if aes_key:
        cfg["dc09"]["key"] = aes_key.hex()
    cfg["dc09"].update(kw)
    return cfg


class Rig:
    def __init__(self, tmp_path, key=K128, first_seq=1, links=None, **kw):
        cfg, errors = C.validate(dc09_config(key, **kw))
        assert not errors, errors
        self.cfg = cfg
        self.rx = Dc09Rx(key)
        self.now = 0
        self.tmp = tmp_path
        self.queue = pqueue.PersistentQueue(str(tmp_path / "q"), 32)
        self.seqs = seqstore.SeqStore(str(tmp_path / "s"),
                                      max(first_seq, self.queue.max_seq() + 1))
        self.clock = clock.Clock()
        self.panel = P.Panel(cfg, 0)
        self.links = links or [FakeLink(self.rx, 1, True), FakeLink(self.rx, 2, False)]
        self.logs = []
        self.rep = dc09rep.Dc09Reporter(cfg, self.queue, self.seqs, self.clock, self.panel,
                                        self.links, 0, self.logs.append)

    def drain(self):
        for q, code, part, zone, text in self.panel.out:
            self.queue.append(self.seqs.take(), q, code, part, zone,
                              self.clock.now(self.now), text)
        self.panel.out.clear()

    def run(self, ms, step=50):
        end = self.now + ms
        while self.now < end:
            self.now += step
            self.rx.now_ms = self.now
            self.rep.poll(self.now)
            self.drain()

    def emit(self, q, code, part=1, zone=1):
        self.panel.emit(q, code, part, zone)
        self.drain()

    def unix(self):
        return T0 + self.rx.skew + self.now // 1000


# -- config --------------------------------------------------------------------------------


def test_config_dc09_defaults_and_errors():
    cfg, errors = C.validate(dc09_config(None))
    assert errors == []
    assert cfg["protocol"] == "dc09"
    assert cfg["dc09"] == {"account": "12AB", "key": None, "key_format": "hex", "line": "1",
                           "receiver_no": "2"}
    cfg, errors = C.validate(dc09_config(None, key="0123456789abcdef0123456789abcdef",
                                         key_format="hex"))
    assert errors == [] and cfg["dc09"]["key"] == "0123456789abcdef0123456789abcdef"
    cfg, errors = C.validate(dc09_config(None, key="0123456789abcdef", key_format="ascii"))
    assert errors == []
    bad = dc09_config(None, account="12", key="00ff", line="1234567", receiver_no="x",
                      colour="red")
    _, errors = C.validate(bad)
    assert errors == [
        "dc09.account: must be 3..16 hex digits, got 2",
        "dc09.line: must be 1..6 hex digits, got 7",
        "dc09.receiver_no: 'x' is not hex digits",
        'dc09.key: must be an AES-128/192/256 key: 32/48/64 hex digits, or 16/24/32 '
        'characters with "key_format": "ascii"',
        "dc09.colour: unknown field (known: account, key, key_format, line, receiver_no)"]
    no_block = dc09_config(None)
    del no_block["dc09"]
    assert C.validate(no_block)[1] == [
        'dc09: missing ("protocol": "dc09" needs the DC-09 account)']
    native = scenario_config(7700)
    native["dc09"] = {"account": "123"}
    assert 'dc09: only used with "protocol": "dc09"' in C.validate(native)[1]
    # safe mode needs only the reporting part
    broken = dc09_config(None)
    broken["zones"][0]["type"] = "instnat"
    assert C.validate(broken)[1] and C.comms_ok(broken)["dc09"]["account"] == "12AB"


def test_time_conversions_agree_with_the_host():
    for u in (0, 951782400, T0, 4102444799, 2**33):
        t = dc09rep.tuple_of(u)
        dt = datetime.fromtimestamp(u, timezone.utc)
        assert t == (dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second)
        assert dc09rep.unix_of(t) == u


# -- delivery --------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [None, K128, K192, K256])
def test_events_delivered_in_order_and_leave_the_queue_only_on_ack(tmp_path, key):
    r = Rig(tmp_path, key)
    for z in range(1, 6):
        r.emit(w.Q_NEW, 130, 1, z)
    r.run(3000)
    assert len(r.queue) == 0
    got = r.rx.adm()
    assert [g[1:] for g in got] == [(1, 130, 1, z) for z in range(1, 6)]
    assert [g[0] for g in got] == sorted(g[0] for g in got)
    sent = [m for p, m in r.rx.frames if m != "NAK"]
    assert all(m.encrypted == (key is not None) and m.account == "12AB" and m.line == "1"
               and m.receiver == "2" for m in sent)
    if key is not None:
        # the first message went with the clock unset; the NAK set it
        assert r.rx.naks == 1 and r.rep.naks == 1
        assert abs(r.clock.now(r.now) - r.unix()) <= 1
        assert not r.panel.troubles & w.T_CLOCK_UNSET
    else:
        assert r.rx.naks == 0  # a clear message's timestamp is not tested


def test_receiver_clock_skew_nak_corrects_the_clock_and_resends(tmp_path):
    r = Rig(tmp_path, K256)
    r.emit(w.Q_NEW, 130, 1, 2)
    r.run(1000)
    assert r.rx.adm() and r.rx.naks == 1
    r.rx.skew = 3600  # the receiver's clock jumps an hour ahead
    r.emit(w.Q_NEW, 122, 2, 4)
    r.run(1000)
    assert r.rx.naks == 2
    assert [e[2:] for e in r.rx.adm()] == [(130, 1, 2), (122, 2, 4)]
    assert abs(r.clock.now(r.now) - r.unix()) <= 1
    assert len(r.queue) == 0


def test_repeated_naks_back_off(tmp_path):
    r = Rig(tmp_path, K128)
    r.run(500)

    def always_nak(frame, path):  # a receiver whose NAK time does not help
        r.rx.naks += 1
        return dc09.build_nak(r.rx.now() + timedelta(seconds=1000))
    real = r.rx.handle
    r.rx.handle = always_nak
    r.emit(w.Q_NEW, 130, 1, 1)
    r.run(10000)
    # per path: the first resend at once (the NAK had a time), then 1, 2 s apart
    # (backoff) until fail_after (2) NAKs failed the event there; then the
    # other path, round robin: a bounded rate, never a tight loop
    assert 6 <= r.rx.naks <= 16
    assert r.rep.up == [True, True]  # NAK is an answer, not a silent path (no 350)
    queued = [r.queue.read(r.queue.find(s)) for s in r.queue.seqs()]
    assert [(m["code"], m["zone"]) for m in queued] == [(130, 1), (354, 1), (354, 2)]
    assert r.rep.rule.ok == [False, False]
    r.rx.handle = real  # a sane receiver: everything goes, both paths restored
    r.run(90000)
    assert len(r.queue) == 0
    got = {(e[2], e[1], e[4]) for e in r.rx.adm()}
    assert {(130, 1, 1), (354, 1, 1), (354, 1, 2), (354, 3, 1), (354, 3, 2)} <= got
    assert r.rep.active == 0 and r.rep.rule.ok == [True, True]


def test_duh_keeps_the_event_and_fails_over_to_the_backup(tmp_path):
    r = Rig(tmp_path, K128)
    r.run(500)
    r.rx.mode[0] = "duh"
    r.emit(w.Q_NEW, 110, 1, 6)
    r.run(8000)
    assert r.rep.duhs >= 2 and r.rep.active == 1
    assert r.panel.troubles & w.T_PATH1_FAIL
    got = {(e[2], e[1], e[4]) for e in r.rx.adm()}
    assert (110, 1, 6) in got and (cid.COMM_TROUBLE, 1, 1) in got
    assert [p for k, p in r.rx.acked_on.items() if k[1].endswith("1110 01 006")] == [2]
    assert any(p == 1 and m != "NAK" and m.data.endswith("1110 01 006") for p, m in r.rx.frames)
    assert len(r.queue) == 0
    # the primary answers again: its NULL probe is ACKed, fail back, 350 restored
    r.rx.mode[0] = "ack"
    r.run(10000)
    assert r.rep.active == 0 and not r.panel.troubles & w.T_PATH1_FAIL
    assert (cid.COMM_TROUBLE, 3, 1) in {(e[2], e[1], e[4]) for e in r.rx.adm()}


def test_silent_receiver_keeps_events(tmp_path):
    r = Rig(tmp_path, None)
    r.rx.mode = ["silent", "silent"]
    r.emit(w.Q_NEW, 122, 2, 4)
    r.run(20000)
    assert len(r.queue) >= 1 and r.rep.up == [False, False]
    r.rx.mode = ["ack", "ack"]
    r.run(20000)
    assert len(r.queue) == 0
    assert (122, 1, 4) in {(e[2], e[1], e[4]) for e in r.rx.adm()}


def test_receiver_closing_after_each_reply(tmp_path):
    rx = Dc09Rx(K128)
    links = [FakeLink(rx, 1, True, close_after_reply=True)]
    r = Rig(tmp_path, K128, links=links)
    r.rx = rx
    for z in range(1, 7):
        r.emit(w.Q_NEW, 130, 1, z)
    r.run(5000)
    assert len(r.queue) == 0
    assert [e[4] for e in rx.adm()] == [1, 2, 3, 4, 5, 6]
    assert links[0].connects >= 6


def test_replies_split_byte_by_byte_and_after_noise(tmp_path):
    rx = Dc09Rx(K256)
    links = [FakeLink(rx, 1, True, split=True)]
    r = Rig(tmp_path, K256, links=links)
    r.rx = rx
    r.emit(w.Q_NEW, 130, 1, 3)
    r.run(20000, step=20)
    assert len(r.queue) == 0 and rx.adm()[0][2:] == (130, 1, 3)


def test_sequence_wraps_9999_to_0001_and_survives_a_reboot(tmp_path):
    r = Rig(tmp_path, K128, first_seq=9997)
    r.rx.mode = ["silent", "silent"]
    for z in range(1, 5):
        r.emit(w.Q_NEW, 130, 1, z)
    r.run(3000)
    seqs_before = [m.seq for p, m in r.rx.frames if m != "NAK" and m.msg_id == "ADM-CID"]
    assert seqs_before and seqs_before[0] == 9997
    # power cycle: a new reporter on the same queue and sequence files
    r.queue.close()
    r2 = Rig(tmp_path, K128)
    assert len(r2.queue) >= 4
    r2.run(6000)
    assert len(r2.queue) == 0
    by_zone = {e[4]: e[0] for e in r2.rx.adm() if e[2] == 130}
    assert by_zone == {1: 9997, 2: 9998, 3: 9999, 4: 1}
    assert dc09rep.dc09_seq(9999) == 9999 and dc09rep.dc09_seq(10000) == 1


def test_null_link_test_when_idle(tmp_path):
    r = Rig(tmp_path, K128)
    r.run(1000)  # boot traffic (none queued here) and the clock
    r.emit(w.Q_NEW, 130, 1, 1)
    r.run(1000)
    before = len(r.rx.frames)
    r.run(61000)
    nulls = [m for p, m in r.rx.frames[before:] if m != "NAK" and m.msg_id == "NULL"]
    assert nulls and all(m.encrypted for m in nulls)
    assert len(r.rx.events) == 1  # NULLs are not events


def test_clear_ack_to_an_encrypted_message_is_refused(tmp_path):
    r = Rig(tmp_path, K128)
    r.run(500)
    real = r.rx.handle

    def clear_ack(frame, path):
        out = real(frame, path)
        m = dc09.parse(out, key_lookup=lambda a: K128)
        if m.msg_id == "ACK":
            return dc09.build(dc09.Dc09Message("ACK", False, m.seq, m.receiver, m.line,
                                               m.account))
        return out
    r.rx.handle = clear_ack
    r.emit(w.Q_NEW, 130, 1, 1)
    r.run(3000)
    assert len(r.queue) == 1  # not removed by a forgeable ACK
    assert any("reply refused" in line for line in r.logs)
    r.rx.handle = real
    r.run(10000)
    assert len(r.queue) == 0


def test_key_size_the_port_lacks_stops_reporting_with_config_trouble(tmp_path, monkeypatch):
    monkeypatch.setattr(dc09rep.dc, "key_size_supported", lambda n: n != 24)
    r = Rig(tmp_path, K192)
    r.emit(w.Q_NEW, 130, 1, 1)
    r.run(2000)
    assert r.rep.broken == "AES-192 is not in this port's cryptolib"
    assert r.panel.troubles & w.T_CONFIG and r.rx.frames == [] and len(r.queue) == 1


# -- property: whatever the receiver does, nothing leaves the queue unACKed ------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

BEHAVIOUR = st.sampled_from(["ack", "duh", "silent", "skew", "close"])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(plan=st.lists(st.tuples(BEHAVIOUR, BEHAVIOUR, st.integers(0, 3)), min_size=1,
                     max_size=12),
       key=st.sampled_from([None, K128, K256]))
def test_events_leave_the_queue_only_when_acked_whatever_the_receiver_does(
        tmp_path_factory, plan, key):
    tmp = tmp_path_factory.mktemp("prop")
    rx = Dc09Rx(key)
    links = [FakeLink(rx, 1, True), FakeLink(rx, 2, False)]
    r = Rig(tmp, key, links=links)
    r.rx = rx
    acked_when_removed = []
    real_ack = r.queue.ack

    def checked_ack(seq):
        m = r.queue.read(r.queue.find(seq))
        data = "#12AB|%d%03d %02d %03d" % (m["qualifier"], m["code"], m["partition"],
                                           m["zone"])
        acked_when_removed.append((dc09rep.dc09_seq(seq), data) in rx.events)
        return real_ack(seq)
    r.queue.ack = checked_ack
    emitted = []
    zone = 0
    for primary, backup, n_events in plan:
        for i, mode in enumerate((primary, backup)):
            links[i].close_after_reply = mode == "close"
            rx.mode[i] = "ack" if mode in ("close", "skew") else mode
        rx.skew = 3600 if "skew" in (primary, backup) else rx.skew
        for _ in range(n_events):
            zone += 1
            r.emit(w.Q_NEW, 130, 1, zone)
            emitted.append(zone)
        r.run(3000, step=100)
    assert all(acked_when_removed)  # nothing left the queue without its ACK
    rx.mode = ["ack", "ack"]
    for link in links:
        link.close_after_reply = False
    r.run(120000, step=250)
    assert len(r.queue) == 0
    delivered = {e[4] for e in rx.adm() if e[2] == 130}
    assert set(emitted) <= delivered
    assert all(acked_when_removed)

"""One host must not shut out the panels (issue 14): per-source limits on
connections not yet authenticated, one connection cap across the stream
listeners, the heaviest source's oldest connection closed to make room, a
reserve for sources that authenticated before.

The admission core (``receiver.admission``) is fed addresses directly, with
a hypothesis state machine over IPv4 and IPv6 sources; then the attacks
are replayed with real sockets against a real receiver on loopback, the
attacker and the panels bound to different 127.x.y.z source addresses.
The numbers are scaled down through the configurable limits (the attack
run held 2,000 connections; these hold a few dozen)."""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp
from hypothesis import settings, strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule

from protocol import dc09
from receiver.admission import Admission, connection_budget, source_of
from receiver.config import Config, ConfigError, load
from receiver.store import Account
from receiver.testing import make_accounts, running_receiver
from testkit.wait import wait_until
from tests.test_dc09_rx import Client
from tests.test_rx_server import Raw, event_frame, opened

# -- the core ---------------------------------------------------------------------------


def test_sources_and_prefixes():
    assert source_of("10.1.2.3", 24, 48) == ("10.1.2.3", "10.1.2.0/24")
    assert source_of("::ffff:10.1.2.3", 24, 48) == ("10.1.2.3", "10.1.2.0/24")
    assert source_of("2001:db8:aa:bb::7", 24, 48) == ("2001:db8:aa:bb::7", "2001:db8:aa::/48")
    assert source_of("fe80::1%eth0", 24, 64) == ("fe80::1", "fe80::/64")
    assert source_of("10.1.2.3", 16, 48)[1] == "10.1.0.0/16"
    assert source_of("not-an-ip", 24, 48) == ("not-an-ip", "not-an-ip")


def test_limits_per_address_and_prefix_and_ipv6():
    adm = Admission(100, 50, per_address=2, per_prefix=3, reserve=0)
    assert adm.admit("a1", "10.0.0.1") == (None, None)
    assert adm.admit("a2", "10.0.0.1") == (None, None)
    assert adm.admit("a3", "10.0.0.1") == ("per_address", None)
    assert adm.admit("b1", "10.0.0.2") == (None, None)
    assert adm.admit("b2", "10.0.0.2") == ("per_prefix", None)
    assert adm.admit("c1", "10.0.1.2") == (None, None)  # another /24
    # IPv6: one /48 is one source network whatever the host part
    for i in range(3):
        assert adm.admit("v%d" % i, "2001:db8:1:%x::1" % i) == (None, None)
    assert adm.admit("v9", "2001:db8:1:ff::1") == ("per_prefix", None)
    assert adm.admit("w1", "2001:db8:2::1") == (None, None)
    # authenticating frees the slot, closing forgets the connection
    adm.authenticated("a1")
    assert adm.admit("a4", "10.0.0.1") == (None, None)  # a2, b1, a4 in the /24
    assert adm.admit("d1", "10.0.0.3") == ("per_prefix", None)
    adm.released("b1")
    adm.released("b1")  # idempotent
    assert adm.admit("d1", "10.0.0.3") == (None, None)
    assert adm.unauthenticated == 8 and adm.connections == 9


def test_full_cap_closes_the_heaviest_prefixes_oldest_unauthenticated():
    adm = Admission(100, 5, per_address=10, per_prefix=10, reserve=0)
    for i in range(3):
        adm.admit("x%d" % i, "192.0.2.%d" % (i + 1))
    adm.admit("y0", "198.51.100.1")
    adm.admit("p0", "203.0.113.9")
    adm.authenticated("p0")  # a panel: never closed to make room
    adm.admit("y1", "198.51.100.2")
    assert adm.unauthenticated == 5
    # a newcomer from a light network: the heavy one's oldest goes
    assert adm.admit("n0", "203.0.113.50") == (None, "x0")
    # a newcomer from the heaviest network itself is refused
    assert adm.admit("x9", "192.0.2.200") == ("max_unauthenticated", None)
    # equal weight: the newcomer's own is as heavy, refused (no churn)
    assert adm.admit("y9", "198.51.100.9") == ("max_unauthenticated", None)


def test_known_sources_may_use_the_reserve():
    adm = Admission(5, 100, per_address=10, per_prefix=10, reserve=0.4)
    adm.admit("panel", "203.0.113.9")
    adm.authenticated("panel")
    adm.released("panel")
    for i in range(3):  # three panels elsewhere, authenticated
        adm.admit("p%d" % i, "198.51.100.%d" % i)
        adm.authenticated("p%d" % i)
    assert adm.admit("stranger", "192.0.2.1") == ("max_connections", None)
    assert adm.admit("back", "203.0.113.9") == (None, None)  # known: the reserve
    assert adm.known("203.0.113.9") and not adm.known("192.0.2.1")


def test_connection_budget_from_the_descriptor_limit():
    assert connection_budget(20_000, 256, limit=1024, in_use=40) == 728
    assert connection_budget(500, 256, limit=65_536, in_use=40) == 500
    assert connection_budget(500, 256, limit=200, in_use=40) == 1


ADDRS = ["10.0.0.1", "10.0.0.2", "10.0.1.1", "10.0.2.1", "::ffff:10.0.0.3",
         "2001:db8::1", "2001:db8:0:1::1", "2001:db8:1::1"]


class AdmissionMachine(RuleBasedStateMachine):
    """Connections come from a handful of IPv4/IPv6 sources, authenticate or
    not, and close, in any order; the books must match a plain model and no
    limit may be passed."""

    conns = Bundle("conns")

    def __init__(self):
        super().__init__()
        self.adm = Admission(12, 8, per_address=3, per_prefix=5, prefix_v6=48, reserve=0.25)
        self.open: dict = {}  # conn -> [address, prefix, authenticated]
        self.n = 0

    @rule(target=conns, host=st.sampled_from(ADDRS))
    def connect(self, host):
        self.n += 1
        conn = "c%d" % self.n
        before_unauth = {c for c, v in self.open.items() if not v[2]}
        why, victim = self.adm.admit(conn, host)
        addr, prefix = source_of(host, 24, 48)
        if victim is not None:
            assert victim in before_unauth  # only strangers are closed
            counts = {}
            for c in before_unauth:
                counts[self.open[c][1]] = counts.get(self.open[c][1], 0) + 1
            vp = self.open[victim][1]
            assert counts[vp] == max(counts.values()) and vp != prefix
            # the oldest of its prefix
            assert victim == min((c for c in before_unauth if self.open[c][1] == vp),
                                 key=lambda c: int(c[1:]))
            del self.open[victim]
        if why is None:
            self.open[conn] = [addr, prefix, False]
        return conn

    @rule(conn=conns)
    def authenticates(self, conn):
        self.adm.authenticated(conn)
        if conn in self.open:
            self.open[conn][2] = True

    @rule(conn=conns)
    def closes(self, conn):
        self.adm.released(conn)
        self.open.pop(conn, None)

    @invariant()
    def books_match_and_limits_hold(self):
        unauth = [v for v in self.open.values() if not v[2]]
        assert self.adm.connections == len(self.open) <= 12
        assert self.adm.unauthenticated == len(unauth) <= 8
        for a in {v[0] for v in unauth}:
            assert sum(1 for v in unauth if v[0] == a) <= 3
        for p in {v[1] for v in unauth}:
            assert sum(1 for v in unauth if v[1] == p) <= 5


AdmissionMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=60,
                                              deadline=None)
test_admission_books = AdmissionMachine.TestCase


def test_config_limits_section(tmp_path):
    p = tmp_path / "r.toml"
    p.write_text('[limits]\nmax_unauthenticated_per_address = 8\n'
                 'max_unauthenticated_per_prefix = 32\nprefix_v4 = 22\nprefix_v6 = 56\n'
                 'known_source_reserve = 0.2\nreserved_descriptors = 128\n'
                 'keyless_idle_timeout_s = 15\n')
    c = load(str(p))
    assert (c.max_unauthenticated_per_address, c.max_unauthenticated_per_prefix,
            c.prefix_v4, c.prefix_v6, c.known_source_reserve, c.reserved_descriptors,
            c.keyless_idle_timeout_s) == (8, 32, 22, 56, 0.2, 128, 15.0)
    for bad, says in (("prefix_v4 = 33", "prefix length 0..32"),
                      ("prefix_v6 = 129", "prefix length 0..128"),
                      ("known_source_reserve = 1", "fraction"),
                      ("max_unauthenticated_per_address = 0", ">= 1")):
        p.write_text("[limits]\n" + bad + "\n")
        try:
            load(str(p))
        except ConfigError as e:
            assert says in str(e)
        else:
            raise AssertionError("accepted " + bad)


# -- the attacks, with real sockets -------------------------------------------------------


async def connect_from(rx, kind, source):
    host, port = rx.addresses[kind][0]
    r, w_ = await asyncio.open_connection(host, port, local_addr=(source, 0))
    return (Raw if kind == "tcp" else Client)(r, w_)


async def _closed(c, timeout=30.0):
    try:
        return await asyncio.wait_for(c.reader.read(65536), timeout) == b""
    except (ConnectionError, OSError):
        return True


@contextlib.asynccontextmanager
async def flood(rx, sources, slots_each, kinds=("tcp",), greeting=None, reopen=True):
    """Silent connections from ``sources`` (``rx.addresses`` names the
    listeners), each slot reopened as soon as the receiver closes it (as the
    attack run did), until the block ends.  ``greeting[kind]``: bytes each
    connection sends first."""
    stop = asyncio.Event()
    opened_n = [0]

    async def slot(kind, source):
        while not stop.is_set():
            try:
                c = await connect_from(rx, kind, source)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            opened_n[0] += 1
            if greeting and kind in greeting:
                c.send(greeting[kind])
            read = asyncio.ensure_future(_closed(c, 3600))
            await asyncio.wait([read, asyncio.ensure_future(stop.wait())],
                               return_when=asyncio.FIRST_COMPLETED)
            read.cancel()
            if not reopen:
                await stop.wait()
            c.writer.close()

    tasks = [asyncio.create_task(slot(k, s)) for k in kinds for s in sources
             for _ in range(slots_each)]
    try:
        yield opened_n
    finally:
        stop.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def native_panel_acked(rx, acct, seq, source) -> bool:
    try:
        c = await connect_from(rx, "tcp", source)
        c.send(event_frame(acct.key, int(acct.number), seq))
        f = await c.next_frame(timeout=20)
    except (ConnectionError, OSError, asyncio.TimeoutError):
        return False
    c.close()
    return f is not None and opened(acct.key, f)["ack_seq"] == seq


async def dc09_panel_acked(rx, number, seq, source) -> bool:
    m = dc09.Dc09Message(dc09.ADM_CID, False, seq, "0", "0", number,
                         "#%s|1130 01 003" % number, [], None)
    try:
        c = await connect_from(rx, "dc09_tcp", source)
        c.send(dc09.build(m))
        f = await c.reply(timeout=20)
    except (ConnectionError, OSError, asyncio.TimeoutError):
        return False
    c.close()
    return f is not None and dc09.parse(f).msg_id == dc09.ACK


def flood_config(tmp_path, **kw):
    c = Config(db=str(tmp_path / "rx.db"), tcp=[("127.0.0.1", 0)],
               dc09_tcp=[("127.0.0.1", 0)], max_unauthenticated=40, auth_timeout_s=2.0)
    kw = dict(dict(max_unauthenticated_per_address=8, max_unauthenticated_per_prefix=16), **kw)
    for k, v in kw.items():
        setattr(c, k, v)
    return c


def dc09_accounts(n):
    return [Account("D%03d" % i, b"", protocol="dc09", supervised=False) for i in range(n)]


async def test_flood_from_one_address_while_new_panels_connect(tmp_path):
    """Seen: one address holding 2,000 silent connections (reopened as they
    were closed) reset 38 of 39 new native panel connections and all 30
    DC-09 ones.  Scaled: the cap is 40, the attacker keeps 40 slots per
    listener open; every new panel must still be ACKed."""
    accounts = make_accounts(10, first=301)
    async with running_receiver(flood_config(tmp_path),
                                list(accounts.values()) + dc09_accounts(10)) as rx:
        async with flood(rx, ["127.0.0.2"], 40, kinds=("tcp", "dc09_tcp")) as opened_n:
            await wait_until(lambda: opened_n[0] >= 100, what="the flood is on")
            native = [await native_panel_acked(rx, a, 1, "127.0.1.%d" % (i + 1))
                      for i, a in enumerate(accounts.values())]
            dc = [await dc09_panel_acked(rx, "D%03d" % i, i + 1, "127.0.1.%d" % (i + 1))
                  for i in range(10)]
            assert native == [True] * 10 and dc == [True] * 10
            assert rx.admission.unauthenticated <= 8
            assert rx.metrics.connections_refused.labels("per_address")._value.get() >= 10


async def test_many_addresses_of_one_network_are_held_to_its_prefix_limit(tmp_path):
    accounts = make_accounts(5, first=401)
    async with running_receiver(flood_config(tmp_path), accounts) as rx:
        sources = ["127.0.0.%d" % i for i in range(2, 12)]  # 10 hosts of one /24
        async with flood(rx, sources, 4) as opened_n:
            await wait_until(lambda: opened_n[0] >= 60, what="the flood is on")
            for i, a in enumerate(accounts.values()):
                assert await native_panel_acked(rx, a, 1, "127.0.5.%d" % (i + 1))
            assert rx.admission.unauthenticated <= 16
            assert rx.metrics.connections_refused.labels("per_prefix")._value.get() >= 5


async def test_a_full_receiver_closes_the_heaviest_networks_oldest_stranger(tmp_path):
    accounts = make_accounts(1, first=501)
    cfg = flood_config(tmp_path, max_unauthenticated=12, max_unauthenticated_per_address=4,
                       max_unauthenticated_per_prefix=10, known_source_reserve=0.0,
                       auth_timeout_s=60.0)
    async with running_receiver(cfg, accounts) as rx:
        heavy = [await connect_from(rx, "tcp", "127.0.2.%d" % (1 + i // 4)) for i in range(8)]
        light = [await connect_from(rx, "tcp", "127.0.3.1") for _ in range(4)]
        await wait_until(lambda: rx.admission.unauthenticated == 12)
        # the heaviest network's own newcomer is refused ...
        extra = await connect_from(rx, "tcp", "127.0.2.9")
        assert await _closed(extra)
        assert rx.metrics.connections_refused.labels("max_unauthenticated")._value.get() == 1
        # ... a panel from elsewhere gets in, and the heavy network's oldest goes
        assert await native_panel_acked(rx, accounts[501], 1, "127.0.1.1")
        assert await _closed(heavy[0])
        assert rx.metrics.connections_closed.labels("evicted")._value.get() == 1
        for c in heavy[1:] + light:  # the rest are still open: each answers a frame
            c.send(event_frame(accounts[501].key, 501, 2))
        assert opened(accounts[501].key, await light[0].next_frame())["ack_seq"] == 2
        for c in heavy[1:] + light:
            c.close()


async def test_sources_that_authenticated_before_keep_a_reserve(tmp_path):
    accounts = make_accounts(6, first=601)
    cfg = flood_config(tmp_path, max_connections=6, known_source_reserve=0.34)
    async with running_receiver(cfg, accounts) as rx:
        a = list(accounts.values())
        assert await native_panel_acked(rx, a[0], 1, "127.0.1.1")  # known from now on
        held = []
        for i in range(4):  # four other panels stay connected
            c = await connect_from(rx, "tcp", "127.0.2.%d" % (i + 1))
            c.send(event_frame(a[i + 1].key, 602 + i, 1))
            assert (await c.next_frame()) is not None
            held.append(c)
        stranger = await connect_from(rx, "tcp", "127.0.3.1")
        assert await _closed(stranger)  # only the reserve is left
        assert rx.metrics.connections_refused.labels("max_connections")._value.get() == 1
        assert await native_panel_acked(rx, a[0], 2, "127.0.1.1")
        for c in held:
            c.close()


async def test_metrics_carry_each_listeners_kind(tmp_path):
    """Seen: the UDP listeners' ``transport`` label was the asyncio transport
    object, so there was no ``udp`` series."""
    cfg = Config(db=str(tmp_path / "rx.db"), tcp=[("127.0.0.1", 0)], udp=[("127.0.0.1", 0)],
                 dc09_tcp=[("127.0.0.1", 0)], dc09_udp=[("127.0.0.1", 0)],
                 metrics=("127.0.0.1", 0))
    async with running_receiver(cfg) as rx:
        rx.refresh_gauges()
        mh, mp = rx.addresses["metrics"]
        async with aiohttp.ClientSession() as s:
            async with s.get("http://%s:%d/metrics" % (mh, mp)) as r:
                text = await r.text()
    series = {line.split("}")[0] for line in text.splitlines()
              if line.startswith("guardline_receiver_connections{")}
    assert series == {'guardline_receiver_connections{transport="%s"' % k
                      for k in ("tcp", "udp", "dc09-tcp", "dc09-udp")}


async def test_console_names_a_panels_connection_by_its_listeners_kind(tmp_path):
    from receiver.web.api import connected_accounts  # noqa: PLC0415

    accounts = make_accounts(1, first=701)
    cfg = Config(db=str(tmp_path / "rx.db"), tcp=[("127.0.0.1", 0)], udp=[("127.0.0.1", 0)])
    async with running_receiver(cfg, accounts) as rx:
        c = await connect_from(rx, "tcp", "127.0.1.1")
        c.send(event_frame(accounts[701].key, 701, 1))
        assert (await c.next_frame()) is not None
        [conn] = connected_accounts(rx)["701"]
        assert conn["transport"] == "tcp" and conn["peer"].startswith("tcp:127.0.1.1:")
        c.close()

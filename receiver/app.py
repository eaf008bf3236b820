"""The receiver application: one object that owns the store, the session
core, the supervisor, the alarm queue, the router and the forwarders, and
the protocol-agnostic ingest path every listener feeds.

    rx = Receiver(config)
    await rx.start()            # store, keyring, supervision, listeners
    ...
    await rx.stop()             # stop accepting, finish commits and ACKs

Event path (native protocol; listeners.py holds the thin socket/serial
adapters):

    bytes -> ReceiverConnection / handle_datagram (protocol.session)
          -> Accepted EVENT -> Receiver.ingest_record -> Store.ingest
             (event + alarm + outbox + replay state, one group commit)
          -> core.ack(...) -> bytes back to the panel

Invariants:

- An ACK leaves only after ``Store.ingest`` returned: the event is on disk.
  When the store is behind (more than ``max_pending_writes`` queued) or
  failing (disk full, read-only), the panel gets NAK busy and retries; the
  store's unique (account, dedupe_key) keeps a retried event single.
- Nothing a peer sends raises out of a listener: every frame's handling is
  wrapped, and a bug shows up as a logged exception and a closed link.
- Other protocols (SIA DC-09) call :meth:`Receiver.ingest` with a
  normalized event dict and ACK/NAK according to its outcome (``Busy``).
- Subscribers (:meth:`subscribe`, the web console) get every new event and
  alarm change on a bounded queue; a subscriber that does not keep up loses
  messages (counted in ``queue.dropped``), never slows the event path.
"""

from __future__ import annotations

import asyncio
import logging
import time

from protocol.lean import glwire as w
from protocol import contactid, dc09
from protocol.session import Accepted, ReceiverCore, Rejected
from receiver import alarms as _alarms
from receiver import retention
from receiver.admission import Admission, connection_budget, descriptor_limit
from receiver.config import Config
from receiver.connections import ConnectionRegistry
from receiver.forwarder import Forwarder, make_output
from receiver.link_policy import LOG_RATE_PER_S, Busy, LinkPolicy, SecurityEvent
from receiver.logfmt import q
from receiver.metrics import Metrics
from receiver.ratelimit import RateLimit
from receiver.records import Account, Alarm, EventRecord, IngestOutcome
from receiver.store import Store, StoreBusy, StoreUnavailable
from receiver.store_factory import make_store
from receiver.supervision import CODE_COMM_TROUBLE, Change, Profile, Supervisor, account_profile

_LOGGER = logging.getLogger(__name__)

# Housekeeping period: connection sweeps (idle / unauthenticated timeouts)
# and gauges.  Timeouts are tens of seconds, so 1 s granularity is ample.
HOUSEKEEPING_S = 1.0
# How often the accounts table is checked for changes made by another
# process (the CLI adding an account while the server runs).
ACCOUNT_RELOAD_S = 5.0
# How often replay state (highest sequence, our tx sequence) advanced by
# heartbeats is written back.  Events carry theirs in their own commit; a
# crash loses at most this much heartbeat progress, which only widens the
# replay window by a few heartbeats (still inside the +-60 s time window).
REPLAY_FLUSH_S = 10.0
# Longest the supervision timer sleeps even with nothing due (a new account
# may bring an earlier deadline).
SUPERVISION_TICK_S = 1.0
# Supervision changes turned into events per tick: a whole-city outage
# (50,000 paths failing at once) is written in bounded chunks.
SUPERVISION_BATCH = 2_000
# Messages a subscriber queue holds before new ones are dropped for it.
SUBSCRIBER_QUEUE = 1_000
# Seconds stop() waits for in-flight commits to finish and be ACKed.
STOP_GRACE_S = 10.0
# At most one line per this many seconds about accept() failing for want of
# descriptors (asyncio retries every second per listener); the rest are
# counted (connections_refused_total{why="accept_error"}).
ACCEPT_ERROR_LOG_S = 10.0
# Keyless DC-09 accounts named one per line at start; more are summed up.
KEYLESS_WARN_LINES = 100
# Seconds send_command waits for the panel's REPLY.  A panel polls its link
# every scan (tens of ms) and sends a pending event before the REPLY, each
# lockstep round trip well under a second; 15 s covers a slow cellular link
# and a retry or two without leaving an operator waiting indefinitely.
COMMAND_TIMEOUT_S = 15.0

# Receiver COMMAND names (CLI and console) -> glwire codes.
COMMANDS = {"status": w.CMD_STATUS, "arm-away": w.CMD_ARM_AWAY, "arm-stay": w.CMD_ARM_STAY,
            "disarm": w.CMD_DISARM, "bypass": w.CMD_BYPASS, "unbypass": w.CMD_UNBYPASS}
RESULT_NAMES = {w.R_OK: "ok", w.R_REFUSED: "refused", w.R_UNSUPPORTED: "unsupported",
                w.R_BAD_ARGUMENT: "bad_argument"}
PARTITION_STATE_NAMES = {w.P_DISARMED: "disarmed", w.P_EXIT_DELAY: "exit_delay",
                         w.P_ARMED_AWAY: "armed_away", w.P_ARMED_STAY: "armed_stay",
                         w.P_ENTRY_DELAY: "entry_delay", w.P_ALARM: "alarm"}


def keyless_warning(number: str) -> str:
    """What an administrator must know about a DC-09 account without a key
    (the CLI prints it at ``accounts add``, the receiver logs it at start)."""
    return ("DC-09 account %s has no key: its messages travel unauthenticated, so anyone "
            "who can reach the receiver can send link tests and events in its name and "
            "they are ACKed and stored; give it an AES key unless the panel cannot "
            "encrypt (docs/dc09.md, \"Keyless accounts\")" % number)


class CommandError(Exception):
    """A remote command could not be sent or was not answered; ``status``
    is the HTTP status the console answers with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


_EVENT_FIELDS = {"account", "protocol", "dedupe_key", "seq", "qualifier", "code",
                 "partition", "zone", "text", "value", "event_time", "received_at",
                 "path", "peer", "source", "user", "ext"}


class Receiver:
    def __init__(self, config: Config | None = None, store: Store | None = None):
        self.config = config or Config()
        self.metrics = Metrics()
        self.store = store or make_store(self.config.db, max_batch=self.config.max_batch,
                                         metrics=self.metrics,
                                         create=self.config.create_store)
        # Several receivers on a shared store (PostgreSQL): supervision
        # ownership, shared hearings, live updates (receiver.ownership).
        self.cluster = None
        self.core = ReceiverCore(self._keyring)
        self.supervisor = Supervisor()
        self.router = self.config.router
        self.alarm_policy = self.config.alarm_policy()
        self.forwarders: dict[str, Forwarder] = {}
        self.listeners: list = []
        # authenticated streams by account (remote commands, the console)
        self.connections = ConnectionRegistry()
        # busy, rejections and security events: one policy for every listener
        self.link_policy = LinkPolicy(self.metrics, self.busy_reason, self._store_behind,
                                      self._store_security_event)
        self.dc09 = None  # the DC-09 service (receiver.dc09_listener), when configured
        # who may hold a stream connection (every stream listener's books)
        self.admission = Admission.from_config(self.config)
        self.addresses: dict = {"tcp": [], "udp": [], "serial": []}
        # web console hook: callables (aiohttp app, receiver) run when the
        # HTTP side is built (receiver.http)
        self.web_setup: list = []
        self._accounts: dict[str, Account] = {}
        self._accounts_rev = None
        self._subscribers: set[asyncio.Queue] = set()
        self._inflight: set[asyncio.Task] = set()
        self._bg: set[asyncio.Task] = set()
        self._tasks: list[asyncio.Task] = []
        self._dirty: set[int] = set()
        self._sup_retry: list[Change] = []
        self._http = None
        self._started = False
        self._stopping = False
        # lines about strangers' connections closing (timeouts, eviction)
        self.close_log = RateLimit(LOG_RATE_PER_S)
        self._accept_log = RateLimit(1.0 / ACCEPT_ERROR_LOG_S, 1.0)
        self._accept_suppressed = 0
        self._loop_handler = None
        # (account, our command sequence) -> future for the panel's REPLY
        self._replies: dict[tuple[int, int], asyncio.Future] = {}
        # one command in flight per panel: the firmware holds one pending REPLY
        self._command_locks: dict[int, asyncio.Lock] = {}

    # -- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        from receiver import dc09_listener, http, listeners  # noqa: PLC0415

        http.check_addresses(self.config.metrics, self.config.web)  # before opening anything
        await self.store.open()
        loop = asyncio.get_running_loop()
        self._loop_handler = (loop.get_exception_handler(),)
        loop.set_exception_handler(self._loop_exception)
        try:
            if self.store.shared:
                from receiver.ownership import Cluster  # noqa: PLC0415

                self.cluster = Cluster(self, self.config.cluster_instance)
            await self.reload_accounts()
            self._warn_keyless()
            now = time.time()
            failed = await self.store.supervision_failed()
            by_acct: dict[str, set] = {}
            for acct, path in failed:
                by_acct.setdefault(acct, set()).add(path)
            for a in self._accounts.values():
                self.supervisor.set_profile(a.number, self._profile(a), now,
                                            failed_paths=by_acct.get(a.number, ()))
            if self.cluster is not None:
                await self.cluster.start()
            for name, spec in self.router.outputs.items():
                f = Forwarder(self.store, make_output(spec), self.metrics,
                              on_change=self._output_health,
                              gate=self.cluster.delivers if self.cluster else None)
                f.start()
                self.forwarders[name] = f
            self._tasks.append(asyncio.create_task(self._supervision_loop(),
                                                   name="supervision"))
            self._tasks.append(asyncio.create_task(self._housekeeping_loop(),
                                                   name="housekeeping"))
            cfg = self.config
            for host, port in cfg.tcp:
                lst = listeners.TcpListener(self, host, port)
                await lst.start()
                self.listeners.append(lst)
                self.addresses["tcp"].append(lst.address)
            for host, port in cfg.udp:
                lst = listeners.UdpListener(self, host, port)
                await lst.start()
                self.listeners.append(lst)
                self.addresses["udp"].append(lst.address)
            for spec in cfg.serial:
                lst = listeners.SerialListener(self, spec)
                await lst.start()
                self.listeners.append(lst)
                self.addresses["serial"].append(spec.url)
            if cfg.dc09_tcp or cfg.dc09_udp:
                self.dc09 = dc09_listener.Dc09Service(self)
                self.addresses.update(dc09_tcp=[], dc09_udp=[])
            for kind, cls, addrs in (("dc09_tcp", dc09_listener.Dc09TcpListener, cfg.dc09_tcp),
                                     ("dc09_udp", dc09_listener.Dc09UdpListener, cfg.dc09_udp)):
                for host, port in addrs:
                    lst = cls(self.dc09, host, port)
                    await lst.start()
                    self.listeners.append(lst)
                    self.addresses[kind].append(lst.address)
            if cfg.metrics or cfg.web:
                self._http = await http.start(self, cfg.metrics, cfg.web)
            self._budget_connections()
            self._started = True
        except BaseException:
            await self.stop()
            raise
        _LOGGER.info("receiver started db=%s accounts=%d tcp=%s udp=%s serial=%s",
                     getattr(self.store, "path", "?"), len(self._accounts),
                     ",".join("%s:%d" % a for a in self.addresses["tcp"]) or "-",
                     ",".join("%s:%d" % a for a in self.addresses["udp"]) or "-",
                     ",".join(self.addresses["serial"]) or "-")

    async def stop(self) -> None:
        """Stop accepting, let in-flight commits finish and their ACKs go out,
        write back replay state, close everything."""
        if self._stopping:
            return
        self._stopping = True
        for lst in self.listeners:
            await lst.stop_accepting()
        if self._inflight:
            done, pending = await asyncio.wait(set(self._inflight), timeout=STOP_GRACE_S)
            if pending:
                _LOGGER.warning("stop: %d commits still pending after %.0f s", len(pending),
                                STOP_GRACE_S)
        for lst in self.listeners:
            await lst.close()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        for t in list(self._bg):
            t.cancel()
        if self._bg:
            await asyncio.wait(set(self._bg), timeout=2)
        for f in self.forwarders.values():
            await f.stop()
        if self._http is not None:
            await self._http.cleanup()
        if self.cluster is not None:
            await self.cluster.stop()
        try:
            await self._flush_replay_state()
        except Exception as e:  # noqa: BLE001 - the store may be what failed
            _LOGGER.warning("stop: replay state not saved error=%s", e)
        await self.store.close()
        loop = asyncio.get_running_loop()
        if self._loop_handler is not None and loop.get_exception_handler() == \
                self._loop_exception:
            loop.set_exception_handler(self._loop_handler[0])
        _LOGGER.info("receiver stopped")

    def _budget_connections(self) -> None:
        """Descriptors are one budget for the whole process: panel
        connections get what the limit leaves beside what is open now and
        ``reserved_descriptors`` (console, metrics, store, outputs)."""
        cfg = self.config
        cap = connection_budget(cfg.max_connections, cfg.reserved_descriptors)
        self.admission.max_connections = cap
        if cap < cfg.max_connections:
            level = logging.WARNING if cap < cfg.max_connections // 2 else logging.INFO
            _LOGGER.log(level, "panel connections capped by the descriptor limit "
                        "connections=%d nofile=%s max_connections=%d reserved_descriptors=%d "
                        "(the console, store and outputs keep those; raise nofile to serve "
                        "more)", cap, descriptor_limit(), cfg.max_connections,
                        cfg.reserved_descriptors)

    def _loop_exception(self, loop, context) -> None:
        """asyncio reports accept() failing for want of descriptors once a
        second per listener, with a traceback: one line per interval here."""
        if "out of system resource" in str(context.get("message", "")):
            self.metrics.connections_refused.labels("accept_error").inc()
            if self._accept_log.allow():
                _LOGGER.error("cannot accept connections: %s (descriptor limit %s, panel "
                              "connections %d; %d more such errors since the last line)",
                              context.get("exception"), descriptor_limit(),
                              self.admission.connections,
                              self._accept_log.suppressed - self._accept_suppressed)
                self._accept_suppressed = self._accept_log.suppressed
            return
        prev = self._loop_handler[0] if self._loop_handler else None
        if prev is not None:
            prev(loop, context)
        else:
            loop.default_exception_handler(context)

    def _warn_keyless(self) -> None:
        keyless = sorted(n for n, a in self._accounts.items()
                         if a.protocol == "dc09" and not a.key)
        for n in keyless[:KEYLESS_WARN_LINES]:
            _LOGGER.warning(keyless_warning(n))
        if len(keyless) > KEYLESS_WARN_LINES:
            _LOGGER.warning("%d more DC-09 accounts have no key (accounts list shows them)",
                            len(keyless) - KEYLESS_WARN_LINES)

    # -- accounts and keyring -------------------------------------------------------

    def _keyring(self, account: int):
        a = self._accounts.get(str(account))
        if a is None or a.protocol != "native":
            return None
        return a.key, a.highest_seq, a.tx_seq

    def account(self, number: str) -> Account | None:
        return self._accounts.get(number)

    def _profile(self, a: Account) -> Profile | None:
        return account_profile(a, self.config.supervision)

    async def reload_accounts(self) -> int:
        """Re-read accounts if they changed; returns how many there are."""
        rev = await self.store.accounts_revision()
        if rev == self._accounts_rev:
            return len(self._accounts)
        await self._flush_replay_state()
        fresh = {a.number: a for a in await self.store.list_accounts()}
        now = time.time()
        for number, old in self._accounts.items():
            new = fresh.get(number)
            if new is None or new.key != old.key or new.protocol != old.protocol:
                if old.protocol == "native":
                    self.core.forget(int(number))
                if new is None:
                    self.supervisor.remove(number)
                    _LOGGER.info("account removed account=%s", number)
                else:
                    _LOGGER.info("account key or protocol changed account=%s", number)
        for number, a in fresh.items():
            if self._accounts_rev is not None:
                self.supervisor.set_profile(number, self._profile(a), now)
                if number not in self._accounts:
                    _LOGGER.info("account added account=%s protocol=%s", number, a.protocol)
        self._accounts = fresh
        self._accounts_rev = rev
        return len(fresh)

    async def add_account(self, account: Account) -> None:
        """Create an account (the CLI and the console use the store directly
        or this; either way the running keyring picks it up)."""
        await self.store.add_account(account)
        await self.reload_accounts()

    async def _flush_replay_state(self) -> None:
        if not self._dirty:
            return
        dirty, self._dirty = self._dirty, set()
        rows = []
        for n in dirty:
            a = self._accounts.get(str(n))
            if a is None:
                continue
            st = self.core.state(n)
            if st is None:
                continue
            a.highest_seq = max(a.highest_seq, st.highest_seq)
            a.tx_seq = max(a.tx_seq, st.tx_seq)
            rows.append((a.number, st.highest_seq, st.tx_seq))
        try:
            await self.store.save_replay_state(rows)
        except Exception:
            self._dirty |= dirty
            raise

    def _output_health(self, f: Forwarder) -> None:
        """An output started or stopped failing, or fails for another
        reason now: tell the consoles."""
        self.publish({"type": "output", "output": f.output.name,
                      "failing": f.failing_since is not None}, broadcast=False)

    # -- pub/sub for the console --------------------------------------------------------

    def subscribe(self) -> asyncio.Queue:
        """A queue of {"type": "event"|"alarm"|"supervision", ...} dicts."""
        q: asyncio.Queue = asyncio.Queue(SUBSCRIBER_QUEUE)
        q.dropped = 0
        self._subscribers.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue) -> None:
        self._subscribers.discard(q)

    def publish(self, message: dict, broadcast: bool = True) -> None:
        """Give ``message`` to every subscriber here and, with several
        receivers, to theirs (``broadcast=False``: it came from them)."""
        if broadcast and self.cluster is not None:
            self.cluster.broadcast(message)
        for q in self._subscribers:
            try:
                q.put_nowait(message)
            except asyncio.QueueFull:
                q.dropped += 1

    # -- ingest (protocol-agnostic) ---------------------------------------------------

    def busy_reason(self) -> str | None:
        pending = self.store.pending_writes
        if pending >= self.config.max_pending_writes:
            return "store queue %d >= %d" % (pending, self.config.max_pending_writes)
        if self._stopping:
            return "receiver stopping"
        return None

    def make_record(self, event: dict) -> EventRecord:
        """Validate a normalized event dict, classify and route it.

        Required: account (str), protocol ('native'|'dc09'), dedupe_key (str,
        unique per account: the native sequence, a DC-09 seq + timestamp, ...),
        qualifier (1|3|6), code (0..999).  Optional: seq, partition, zone,
        text, value, event_time, received_at (default now), path (1|2), peer,
        source ('panel' default, 'supervision'), user (the user the event
        names; by default ZZZ of a Contact ID user report from a panel),
        ext (dict: DC-09 extended data and SIA modifiers, raw)."""
        bad = set(event) - _EVENT_FIELDS
        if bad:
            raise ValueError("unknown event fields: %s" % ", ".join(sorted(bad)))
        for k in ("account", "protocol", "dedupe_key", "qualifier", "code"):
            if event.get(k) is None:
                raise ValueError("event lacks %s" % k)
        account = event["account"]
        if not isinstance(account, str) or not account:
            raise ValueError("account must be a non-empty string")
        if event["protocol"] not in ("native", "dc09"):
            raise ValueError("protocol must be native or dc09")
        q, code = event["qualifier"], event["code"]
        if q not in (1, 3, 6) or not isinstance(code, int) or not 0 <= code <= 999:
            raise ValueError("qualifier must be 1, 3 or 6 and code 0..999")
        partition = int(event.get("partition") or 0)
        zone = int(event.get("zone") or 0)
        a = self._accounts.get(account)
        source = event.get("source") or "panel"
        kind = contactid.number_kind(code)
        # ZZZ is looked up as a zone name only when the code says it is a
        # zone (protocol.contactid.number_kind): never a user or a path.
        zname = a.zones.get(str(zone)) if a and kind == contactid.ZONE else None
        user = event.get("user")
        if user is None and kind == contactid.USER and source != "supervision":
            user = zone
        pname = a.partitions.get(str(partition)) if a else None
        # The receiver's own events (supervision) carry its sentence in
        # text ("backup path (2) silent for 90 s"): that is their description.
        own = source == "supervision"
        cls, prio, desc = _alarms.classify(code, q, zone=None if own else zone,
                                           partition=partition, zone_name=zname,
                                           partition_name=pname,
                                           detail=event.get("text") if own else None)
        now = time.time()
        rec = EventRecord(
            account=account, protocol=event["protocol"], dedupe_key=str(event["dedupe_key"]),
            qualifier=q, code=code, partition=partition, zone=zone,
            received_at=float(event.get("received_at") or now), seq=event.get("seq"),
            text=event.get("text"), value=event.get("value"),
            event_time=event.get("event_time") or None, path=int(event.get("path") or 1),
            peer=str(event.get("peer") or ""), source=source,
            event_class=cls, priority=prio, description=desc,
            user=None if user is None else int(user), ext=event.get("ext") or None)
        if self.alarm_policy.opens_alarm(q, code, cls):
            rec.open_alarm = True
            region = a.region if a else ""
            decision = self.router.route(region, cls)
            rec.routed_to = decision.routed_to
            for output, level, center in decision.deliveries:
                rec.outbox.append((output, {
                    "type": "alarm", "level": level, "center": center.id,
                    "center_name": center.name, "account": account,
                    "site_name": a.site_name if a else "",
                    "site_address": a.site_address if a else "", "region": region,
                    "event_class": cls, "priority": prio, "code": code, "qualifier": q,
                    "description": desc, "partition": partition, "zone": zone,
                    "text": rec.text, "value": rec.value, "event_time": rec.event_time,
                    "received_at": rec.received_at, "protocol": rec.protocol,
                    "user": rec.user,
                    "location": dc09.location(rec.ext) if rec.ext else None,
                    "contacts": a.contacts if a else []}))
            if self.router.routes and not decision.routed_to:
                _LOGGER.warning("alarm unrouted account=%s region=%s class=%s code=%03d",
                                account, region, cls, code)
        return rec

    async def ingest(self, event: dict) -> IngestOutcome:
        """Store one normalized event (see :meth:`make_record`).  Returns once
        it is durable; raises :class:`Busy` when the sender must retry, and
        ValueError for a malformed dict."""
        return await self.ingest_record(self.make_record(event))

    async def ingest_many(self, events: list[dict]) -> list[IngestOutcome]:
        """Store several normalized events that came in one message, in one
        transaction: all are durable when this returns, or none is (Busy).
        A copy of the whole message stores nothing again."""
        return await self.ingest_records([self.make_record(e) for e in events])

    async def ingest_records(self, recs: list[EventRecord]) -> list[IngestOutcome]:
        if len(recs) == 1:
            return [await self.ingest_record(recs[0])]
        outs = await self._write(lambda: self.store.ingest_many(recs))
        for rec, out in zip(recs, outs):
            self._stored(rec, out)
        return outs

    async def ingest_record(self, rec: EventRecord) -> IngestOutcome:
        return self._stored(rec, await self._write(lambda: self.store.ingest(rec)))

    async def _write(self, write):
        """Run a store write unless we are busy; the store's busy and
        unavailable errors become Busy (the sender retries)."""
        reason = self.busy_reason()
        if reason is not None:
            raise Busy(reason)
        try:
            return await write()
        except StoreBusy as e:
            raise Busy("store busy: %s" % e) from None
        except StoreUnavailable as e:
            raise Busy("store unavailable: %s" % e) from None

    def _stored(self, rec: EventRecord, out: IngestOutcome) -> IngestOutcome:
        """Metrics, live updates, forwarder wake-ups and the log line for an
        event the store took."""
        if out.duplicate:
            self.metrics.duplicates.inc()
            return out
        self.metrics.events.labels(rec.protocol, rec.event_class).inc()
        self.publish({"type": "event", "event": rec.stored(out.event_id).to_json()})
        if out.alarm_id is not None:
            self.publish({"type": "alarm", "alarm_id": out.alarm_id, "state": "pending",
                          "event_id": out.event_id, "account": rec.account,
                          "event_class": rec.event_class, "priority": rec.priority,
                          "description": rec.description, "routed_to": rec.routed_to})
            for output, _ in rec.outbox:
                f = self.forwarders.get(output)
                if f is not None:
                    f.wake()
            _LOGGER.warning("alarm account=%s alarm_id=%d class=%s code=%03d zone=%d "
                            "partition=%d routed_to=%s", rec.account, out.alarm_id,
                            rec.event_class, rec.code, rec.zone, rec.partition,
                            ",".join("%s:%s" % kv for kv in sorted((rec.routed_to or {})
                                                                   .items())) or "-")
        else:
            _LOGGER.info("event account=%s seq=%s q=%d code=%03d zone=%d partition=%d "
                         "class=%s path=%d", rec.account, rec.seq, rec.qualifier, rec.code,
                         rec.zone, rec.partition, rec.event_class, rec.path)
        return out

    # -- operator actions ---------------------------------------------------------------

    async def acknowledge_alarm(self, alarm_id: int, by: str) -> Alarm:
        a = await self.store.alarm_transition(alarm_id, _alarms.ACKNOWLEDGE, by, None,
                                              time.time())
        self.publish({"type": "alarm", "alarm_id": alarm_id, "state": a.state, "by": by})
        _LOGGER.info("alarm acknowledged account=%s alarm_id=%d by=%s", a.account,
                     alarm_id, by)
        return a

    async def resolve_alarm(self, alarm_id: int, by: str, note: str | None = None) -> Alarm:
        a = await self.store.alarm_transition(alarm_id, _alarms.RESOLVE, by, note,
                                              time.time())
        self.publish({"type": "alarm", "alarm_id": alarm_id, "state": a.state, "by": by,
                      "note": note})
        _LOGGER.info("alarm resolved account=%s alarm_id=%d by=%s", a.account, alarm_id,
                     by)
        return a

    # -- the native event path -----------------------------------------------------------

    def spawn(self, coro, inflight: bool = False) -> asyncio.Task:
        """Run ``coro`` as a task the receiver keeps: an ``inflight`` one (a
        commit whose ACK is owed) is waited for at stop, others cancelled."""
        t = asyncio.get_running_loop().create_task(coro)
        group = self._inflight if inflight else self._bg
        group.add(t)
        t.add_done_callback(group.discard)
        return t

    @property
    def inflight(self) -> int:
        """Commits whose ACK is still owed."""
        return len(self._inflight)

    def heard(self, account: str, path: int, now: float) -> None:
        """A panel was heard on ``path``: its supervision timer restarts; a
        path that comes back is stored as a restore event."""
        change = self.supervisor.heard(account, path, now)
        if change is not None:
            self.spawn(self._supervision_event(change))

    def on_native(self, result, link) -> None:
        """A judged native frame from a listener's link.  Never raises for
        anything a peer can send (listeners also guard the call)."""
        if isinstance(result, Rejected):
            self._rejected(result, link)
            return
        acc: Accepted = result
        now = time.time()
        self.link_policy.accepted(link)
        if acc.restarted_from is not None:
            self.link_policy.security_event(
                acc.account, acc.seq, "sequence_restart",
                "sequence space spent up to %d (past %d, where only a key holder's jumps "
                "take an account); restarted at the panel's %d: re-key the account"
                % (acc.restarted_from, w.MAX_NEXT_SEQ, acc.seq), link, count=False)
        number = str(acc.account)
        self.heard(number, acc.path, now)
        self._dirty.add(acc.account)
        mtype = acc.msg["type"]
        if mtype == w.MSG_EVENT:
            if acc.duplicate:
                self.metrics.duplicates.inc()
                link.send(self.core.ack(acc, now))
                return
            reason = self.link_policy.refusal(link)
            if reason is not None:
                self._nak_busy(acc, link, reason)
                return
            rec = self._native_record(acc, link, now)
            link.inflight += 1
            self.spawn(self._commit_and_ack(acc, rec, link, time.perf_counter()),
                        inflight=True)
        elif mtype in (w.MSG_HEARTBEAT, w.MSG_HELLO, w.MSG_REPLY):
            if mtype == w.MSG_REPLY:
                self._reply_received(acc)
            if mtype == w.MSG_HELLO:
                m = acc.msg
                _LOGGER.info("panel hello account=%s fw=%d.%d.%d kind=%d zones=%d "
                             "heartbeat_s=%d peer=%s", number, m["fw_major"], m["fw_minor"],
                             m["fw_patch"], m["panel_kind"], m["zones"], m["heartbeat_s"],
                             link.peer)
            if self.cluster is not None:
                # Several receivers: ACK once the hearing is committed, so a
                # receiver that dies takes no ACKed hearing with it.
                self.spawn(self._ack_when_heard(acc, link, now), inflight=True)
                return
            link.send(self.core.ack(acc, now))
        else:
            # ACK, NAK, TIME, COMMAND are the receiver's messages.
            self.metrics.naks.labels("unsupported").inc()
            link.send(self.core.nak(acc.account, acc.seq, w.NAK_UNSUPPORTED, now))

    # -- remote commands ------------------------------------------------------------------

    def _reply_received(self, acc: Accepted) -> None:
        m = acc.msg
        fut = self._replies.get((acc.account, m["command_seq"]))
        if fut is None:
            # a retransmission after we gave up, or a REPLY to another receiver
            _LOGGER.info("panel reply with no waiting command account=%d command_seq=%d "
                         "result=%s", acc.account, m["command_seq"],
                         RESULT_NAMES.get(m["result"], m["result"]))
            return
        if not fut.done():
            fut.set_result(m)

    def command_link(self, account: int):
        """The panel's open, authenticated stream that carries commands (its
        TCP connection; the one heard last if it has several), or None.  A
        UDP panel is not listening between frames."""
        return self.connections.stream_for(str(account))

    async def send_command(self, account: str, command: str, partition: int = 1,
                           arg: int = 0, by: str = "?",
                           timeout: float = COMMAND_TIMEOUT_S) -> dict:
        """Send a COMMAND to a panel over its open TCP connection and wait
        for its REPLY.  Our sequence is persisted before the frame leaves
        (the panel refuses any command sequence it has seen, so a reused one
        after a restart would be refused).  Raises CommandError."""
        a = self._accounts.get(str(account))
        if a is None:
            raise CommandError(404, "no account %s" % account)
        if a.protocol != "native":
            raise CommandError(409, "account %s is not a native-protocol panel" % account)
        if command not in COMMANDS:
            raise CommandError(400, "command must be one of %s" % ", ".join(COMMANDS))
        if not 0 <= partition <= 255 or not 0 <= arg <= 0xFFFF:
            raise CommandError(400, "partition must be 0..255 and arg 0..65535")
        n = int(a.number)
        lock = self._command_locks.setdefault(n, asyncio.Lock())
        async with lock:
            link = self.command_link(n)
            if link is None:
                raise CommandError(409, "panel %s has no open TCP connection to this "
                                        "receiver; commands need one" % a.number)
            st = self.core.state(n)
            if st is None:  # the account lost its key or protocol meanwhile
                raise CommandError(409, "account %s has no native key" % a.number)
            seq, frame = self.core.command(n, COMMANDS[command], partition, time.time(), arg)
            try:
                await self.store.save_replay_state([(a.number, st.highest_seq, st.tx_seq)])
            except Exception as e:  # noqa: BLE001 - not persisted: do not send
                self._dirty.add(n)
                raise CommandError(503, "command not sent: sequence not stored (%s)" % e)
            a.tx_seq = max(a.tx_seq, st.tx_seq)
            _LOGGER.warning("remote command account=%s command=%s partition=%d arg=%d by=%s "
                            "seq=%d peer=%s", a.number, command, partition, arg, q(by), seq,
                            link.peer)
            fut = asyncio.get_running_loop().create_future()
            self._replies[(n, seq)] = fut
            try:
                link.send(frame)
                try:
                    m = await asyncio.wait_for(fut, timeout)
                except asyncio.TimeoutError:
                    _LOGGER.warning("remote command unanswered account=%s command=%s seq=%d "
                                    "by=%s", a.number, command, seq, q(by))
                    raise CommandError(504, "panel %s did not answer within %.0f s"
                                       % (a.number, timeout)) from None
            finally:
                self._replies.pop((n, seq), None)
        result = {"account": a.number, "command": command, "partition": partition,
                  "seq": seq, "result": m["result"],
                  "result_name": RESULT_NAMES.get(m["result"], str(m["result"])),
                  "partitions": [{"position": i + 1, "state": s,
                                  "state_name": PARTITION_STATE_NAMES.get(s, str(s))}
                                 for i, s in enumerate(m["partitions"])],
                  "troubles": m["troubles"]}
        _LOGGER.info("remote command reply account=%s command=%s seq=%d result=%s by=%s",
                     a.number, command, seq, result["result_name"], q(by))
        return result

    def _native_record(self, acc: Accepted, link, now: float) -> EventRecord:
        m = acc.msg
        rec = self.make_record({
            "account": str(acc.account), "protocol": "native",
            # sequence + content: a retransmission dedupes, a new event that
            # reuses a sequence after a panel's counter reset does not
            "dedupe_key": "native:%d:%s" % (acc.seq, acc.digest), "seq": acc.seq,
            "qualifier": m["qualifier"], "code": m["code"], "partition": m["partition"],
            "zone": m["zone"], "text": m.get("text"), "value": m.get("value"),
            "event_time": m["event_time"] or None, "received_at": now, "path": acc.path,
            "peer": link.peer})
        st = self.core.state(acc.account)
        rec.tx_seq = st.tx_seq + 1  # the ACK about to be sealed
        return rec

    async def _commit_and_ack(self, acc: Accepted, rec: EventRecord, link, t0: float):
        try:
            await self.ingest_record(rec)
        except Busy as e:
            self._nak_busy(acc, link, e.reason)
            return
        except Exception:  # noqa: BLE001 - a bug: no ACK, the panel retries
            _LOGGER.exception("ingest failed account=%d seq=%d", acc.account, acc.seq)
            return
        finally:
            link.inflight -= 1
        link.send(self.core.ack(acc, time.time()))
        self.metrics.ack_seconds.observe(time.perf_counter() - t0)

    async def _ack_when_heard(self, acc: Accepted, link, now: float) -> None:
        try:
            await self.cluster.heard_durable(str(acc.account), acc.path, now)
        except Exception as e:  # noqa: BLE001 - the store failing: the panel retries
            self._nak_busy(acc, link, "hearing not stored: %s" % e)
            return
        link.send(self.core.ack(acc, time.time()))

    def _nak_busy(self, acc: Accepted, link, reason: str) -> None:
        self.link_policy.nak_busy(acc.account, str(acc.seq), link, reason)
        link.send(self.core.nak(acc.account, acc.seq, w.NAK_BUSY, time.time()))

    def _rejected(self, rej: Rejected, link) -> None:
        if rej.reply is not None:
            if rej.account is not None:
                self._dirty.add(rej.account)
            link.send(rej.reply)
        self.link_policy.rejected(link, rej.reason_name, rej.account, rej.seq, rej.detail,
                                  security=rej.security, nak=rej.reply is not None)

    def _store_behind(self) -> bool:
        """Too far behind with events to be given security events too."""
        return self.store.pending_writes >= self.config.max_pending_writes // 2

    def _store_security_event(self, ev: SecurityEvent) -> None:
        self.spawn(self._record_security(ev))

    async def _record_security(self, ev: SecurityEvent) -> None:
        try:
            await self.store.record_security_event(ev.at, ev.account, ev.seq, ev.reason,
                                                   ev.detail, ev.peer, ev.transport)
        except Exception as e:  # noqa: BLE001
            self.metrics.security_dropped.inc()
            _LOGGER.warning("security event not stored account=%s peer=%s error=%s",
                            ev.account, ev.peer, e)
            return
        self.publish({"type": "security", "account": ev.account, "reason": ev.reason,
                      "detail": ev.detail, "peer": ev.peer})

    # -- supervision -------------------------------------------------------------------

    def supervision_record(self, ch: Change) -> EventRecord:
        a = self._accounts.get(ch.account)
        return self.make_record({
            "account": ch.account, "protocol": a.protocol if a else "native",
            # a failure is keyed by the hearing it follows: two receivers
            # that both raise it (a takeover race) store it once
            "dedupe_key": "supervision:%d:%d:%d" % (
                ch.path, ch.qualifier, int((ch.last_heard if ch.failed else ch.at) * 1000)),
            "qualifier": ch.qualifier, "code": CODE_COMM_TROUBLE, "partition": 0,
            "zone": ch.path, "text": ch.describe()[:64], "event_time": ch.at,
            "received_at": ch.at, "path": ch.path, "peer": "receiver",
            "source": "supervision"})

    async def _supervision_event(self, ch: Change) -> bool:
        kind = "failure" if ch.failed else "restore"
        try:
            await self.ingest_record(self.supervision_record(ch))
        except Busy as e:
            _LOGGER.warning("supervision event not stored yet (retrying) change=%s "
                            "account=%s path=%d reason=%s", kind, ch.account, ch.path,
                            q(e.reason))
            self._sup_retry.append(ch)
            return False
        self.metrics.supervision.labels(str(ch.path), kind).inc()
        (_LOGGER.warning if ch.failed else _LOGGER.info)(
            "supervision %s account=%s path=%d silent_s=%d timeout_s=%d", kind, ch.account,
            ch.path, int(ch.at - ch.last_heard), ch.timeout_s)
        self.publish({"type": "supervision", "account": ch.account, "path": ch.path,
                      "failed": ch.failed, "at": ch.at})
        return True

    async def supervision_tick(self, now: float) -> list[Change]:
        """Poll the supervisor at ``now`` and store what it reports (the
        timer task calls this; tests may too)."""
        retry, self._sup_retry = self._sup_retry, []
        polled = self.supervisor.poll(now, limit=SUPERVISION_BATCH)
        if self.cluster is not None:
            # candidates: checked against what the other receivers heard
            polled = await self.cluster.confirm(polled, now)
        changes = retry + polled
        if changes:
            await asyncio.gather(*(self._supervision_event(c) for c in changes))
        return changes

    async def _supervision_loop(self) -> None:
        while True:
            now = time.time()
            try:
                await self.supervision_tick(now)
            except Exception:  # noqa: BLE001 - keep supervising whatever happens
                _LOGGER.exception("supervision tick failed")
            nd = self.supervisor.next_deadline()
            delay = SUPERVISION_TICK_S if nd is None else min(SUPERVISION_TICK_S,
                                                             max(0.01, nd - time.time()))
            if self._sup_retry:
                delay = SUPERVISION_TICK_S
            await asyncio.sleep(delay)

    # -- housekeeping ----------------------------------------------------------------------

    async def _housekeeping_loop(self) -> None:
        last_reload = last_flush = last_prune = time.monotonic()
        while True:
            await asyncio.sleep(HOUSEKEEPING_S)
            try:
                now = time.time()
                for lst in self.listeners:
                    lst.sweep(now)
                mono = time.monotonic()
                if mono - last_reload >= ACCOUNT_RELOAD_S:
                    last_reload = mono
                    await self.reload_accounts()
                if mono - last_flush >= REPLAY_FLUSH_S:
                    last_flush = mono
                    await self._flush_replay_state()
                if mono - last_prune >= retention.PRUNE_EVERY_S:
                    last_prune = mono
                    await self.prune_security_events(now)
                self.refresh_gauges()
            except Exception as e:  # noqa: BLE001 - e.g. the store failing; keep going
                _LOGGER.warning("housekeeping error=%s", e)

    async def prune_security_events(self, now: float) -> int:
        """Keep security events within receiver.retention's bounds."""
        return await retention.prune(retention.SECURITY_EVENTS,
                                     self.store.prune_security_events, now)

    def refresh_gauges(self) -> None:
        m = self.metrics
        m.store_queue.set(self.store.pending_writes)
        m.store_healthy.set(1 if self.store.healthy else 0)
        m.supervision_failed.set(len(self.supervisor.failed()))
        for lst in self.listeners:
            m.connections.labels(lst.kind).set(lst.connection_count())

    async def refresh_store_gauges(self) -> None:
        """Gauges that need a query (outbox depth, open alarms): on scrape."""
        for name in self.forwarders:
            self.metrics.outbox_depth.labels(name).set(0)
        for name, n in (await self.store.outbox_depth()).items():
            self.metrics.outbox_depth.labels(name).set(n)
        counts = await self.store.count_alarms((_alarms.PENDING, _alarms.ACKNOWLEDGED))
        for state, n in counts.items():
            self.metrics.alarms_open.labels(state).set(n)

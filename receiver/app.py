"""The receiver application: one object that wires the store, the
listeners, the session cores, supervision, the alarm queue, the router and
the forwarders together, and runs the protocol-agnostic ingest path every
listener feeds.

    rx = Receiver(config)
    await rx.start()            # store, accounts, supervision, listeners, HTTP
    ...
    await rx.stop()             # stop accepting, finish commits and ACKs

Where each part lives (this module only wires them and ingests):

    receiver/accounts.py          the accounts, the native keyring and replay state
    receiver/listeners.py         native TCP / UDP / serial listeners
    receiver/native.py            what happens to a judged native frame
    receiver/dc09_listener.py     SIA DC-09 listeners and their service
    receiver/link_policy.py       busy, rejections, security events (every listener)
    receiver/connections.py       which stream carries which account
    receiver/commands.py          remote commands to panels
    receiver/supervision_loop.py  heartbeats heard, 350 events stored
    receiver/rules_loop.py        opening schedules, test placements, periodic tests
    receiver/housekeeping.py      sweeps, reloads, flushes, gauges
    receiver/pubsub.py            live updates for the console
    receiver/vehicles/            vehicle units: route re-checks, patrols, the map
    receiver/workflow_service.py  the operator's workflow (plans, claims, calls, notes)
    receiver/workflow_loop.py     escalation timers (acknowledge, resolve, wait steps)

Event path (native protocol):

    bytes -> ReceiverConnection / handle_datagram (protocol.session)
          -> NativeService.handle -> Receiver.queue_records -> Store.queue_ingests
             (the events of one turn of the loop, each its own request:
             event + alarm + outbox + replay state, one group commit)
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
  alarm change, as typed messages (receiver.messages), on a bounded queue; a
  subscriber that does not keep up loses messages (counted in
  ``queue.dropped``), never slows the event path.
"""

from __future__ import annotations

import asyncio
import logging
import time

from protocol import contactid, dc09
from receiver import alarms as _alarms
from receiver import ingest
from receiver.accounts import Accounts
from receiver.admission import Admission, connection_budget, descriptor_limit
from receiver.commands import COMMAND_TIMEOUT_S, RemoteCommands
from receiver.config import Config
from receiver.connections import ConnectionRegistry
from receiver.forwarder import Forwarder, make_output
from receiver.housekeeping import Housekeeping, refresh_gauges, refresh_store_gauges
from receiver.link_policy import LOG_RATE_PER_S, Busy, LinkPolicy, SecurityReport
from receiver.listener_base import AcceptErrors, Listener
from receiver.messages import (AlarmUpdate, ConsoleMessage, EventStored, OutputHealth,
                               PositionStored, RulesUpdate, SecurityRejected, WorkflowChange)
from receiver.metrics import Metrics
from receiver.native import NativeService
from receiver.pubsub import Hub, Subscription
from receiver.ratelimit import RateLimit
from receiver.records import (Account, Alarm, EventRecord, IngestOutcome, Position,
                              TrackOutcome, TrackRecord, ZoneHold)
from receiver.rules import hygiene, testmode
from receiver.rules.schedules import Schedule, TemporaryChange
from receiver.rules_loop import RulesLoop
from receiver.store import Store, StoreBusy, StoreUnavailable
from receiver.store_factory import make_store
from receiver.supervision import Change, Supervisor
from receiver.supervision_loop import SupervisionLoop
from receiver.tasks import cancel_all
from receiver.vehicles.loop import VehicleLoop
from receiver.vehicles.service import VehicleService
from receiver.workflow.handling import DuressAlarm
from receiver.workflow_loop import EscalationLoop
from receiver.workflow_service import Workflow

__all__ = ["Busy", "Receiver"]

_LOGGER = logging.getLogger(__name__)

# Seconds stop() waits for in-flight commits to finish and be ACKed.
STOP_GRACE_S = 10.0
# The receiver's own events whose number is neither a zone nor a user:
# supervision's 350 (a path), an operator's duress report (a duress
# passcode given on a call, receiver.workflow_service: none).
NUMBERLESS_SOURCES = ("supervision", "operator")

_EVENT_FIELDS = {"account", "protocol", "dedupe_key", "seq", "qualifier", "code",
                 "partition", "zone", "text", "value", "event_time", "received_at",
                 "path", "peer", "source", "user", "ext", "position"}

# Track points the receiver takes at once (received, not yet committed):
# beyond it a POSITION is NAKed busy while events still get in (the unit
# keeps the point and offers it again: docs/mobile.md, "Receiver").  Each
# point in hand costs the event loop work an alarm that arrives would
# wait behind, and the store writes them after every other write
# (receiver.store.PRIO_TRACK); one group commit's worth keeps that wait to
# about one commit.  Also never more than half of [limits]
# max_pending_writes, so track points never take the room an alarm needs.
TRACK_IN_HAND = 256
TRACK_SHARE = 0.5


def _position_of(event: dict) -> Position | None:
    """The event's position: given (a native EVENT's position record), or a
    DC-09 event's location (extended data X/Y), or None."""
    p = event.get("position")
    if p is not None:
        if not isinstance(p, Position):
            raise ValueError("position must be a records.Position")
        return p
    ext = event.get("ext")
    loc = dc09.location(ext) if ext else None
    return Position.from_location(loc) if loc else None


def _check_event(event: dict) -> None:
    """ValueError for a normalized event dict that is not one (see
    Receiver.make_record)."""
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


class Receiver:
    def __init__(self, config: Config | None = None, store: Store | None = None):
        self.config = config or Config()
        self.metrics = Metrics()
        self.store = store or make_store(self.config.db, max_batch=self.config.max_batch,
                                         metrics=self.metrics,
                                         create=self.config.create_store)
        # the ingest plan's signal hygiene ([hygiene]: receiver.ingest)
        self.store.hygiene = self.config.hygiene
        # Several receivers on a shared store (PostgreSQL): supervision
        # ownership, shared hearings, live updates (receiver.ownership).
        self.cluster = None
        self.accounts = Accounts(self.store)
        self.core = self.accounts.core  # the native session core (keys, replay state)
        self.supervisor = Supervisor()
        self.supervision = SupervisionLoop(self)
        # opening schedules, test placements, periodic tests (issue 18)
        self.rules = RulesLoop(self)
        self.router = self.config.router
        self.alarm_policy = self.config.alarm_policy()
        self.forwarders: dict[str, Forwarder] = {}
        self.hub = Hub()
        self.listeners: list[Listener] = []
        # authenticated streams by account (remote commands, the console)
        self.connections = ConnectionRegistry()
        self.commands = RemoteCommands(self.accounts, self.store, self.connections)
        # vehicle units: the route re-checks, arrivals and retention (a
        # task), and what the console's map asks (receiver.vehicles)
        self.vehicle_loop = VehicleLoop(self)
        self.vehicles = VehicleService(self)
        # the operator's workflow: plans, claims, calls, notes (receiver.workflow_service)
        self.workflow = Workflow(self.store, publish=self.publish,
                                 raise_duress=self.raise_duress,
                                 close_cancelled=self.config.close_cancelled)
        self.escalations = EscalationLoop(self)
        # busy, rejections and security events: one policy for every listener
        self.link_policy = LinkPolicy(self.metrics, self.busy_reason, self._store_behind,
                                      self._store_security_event)
        self.native = NativeService(self)
        self.dc09 = None  # the DC-09 service (receiver.dc09_listener), when configured
        # who may hold a stream connection (every stream listener's books)
        self.admission = Admission.from_config(self.config)
        self.addresses: dict = {"tcp": [], "udp": [], "serial": []}
        # web console hook: callables (aiohttp app, receiver) run when the
        # HTTP side is built (receiver.http)
        self.web_setup: list = []
        # lines about strangers' connections closing (timeouts, eviction)
        self.close_log = RateLimit(LOG_RATE_PER_S)
        self._accept_errors = AcceptErrors(self.metrics, self.admission)
        self._inflight: set[asyncio.Task] = set()
        self._tracks_in_hand = 0  # track points taken, not yet committed
        self._bg: set[asyncio.Task] = set()
        self._tasks: list[asyncio.Task] = []
        self._http = None
        self._started = False
        self._stopping = False

    # -- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        from receiver import http  # noqa: PLC0415 - aiohttp, only when serving

        http.check_addresses(self.config.metrics, self.config.web)  # before opening anything
        await self.store.open()
        self._accept_errors.install(asyncio.get_running_loop())
        try:
            if self.store.shared:
                from receiver.ownership import Cluster  # noqa: PLC0415 - PostgreSQL only

                self.cluster = Cluster(self, self.config.cluster_instance)
                self.hub.broadcast = self.cluster.broadcast
            await self.reload_accounts()
            self.accounts.warn_keyless()
            await self.workflow.install(self.config.workflow_plans,
                                        self.config.workflow_dispositions)
            self.supervision.load(self.accounts, await self.store.supervision_failed(),
                                  time.time())
            if self.cluster is not None:
                await self.cluster.start()
            await self.rules.start(time.time())
            for name, spec in self.router.outputs.items():
                f = Forwarder(self.store, make_output(spec), self.metrics,
                              on_change=self._output_health,
                              gate=self.cluster.delivers if self.cluster else None,
                              where=self.vehicles.where_forwarded)
                f.start()
                self.forwarders[name] = f
            self._tasks.append(asyncio.create_task(self.supervision.run(), name="supervision"))
            self._tasks.append(asyncio.create_task(self.rules.run(), name="rules"))
            self._tasks.append(asyncio.create_task(self.escalations.run(), name="escalations"))
            self._tasks.append(asyncio.create_task(Housekeeping(self).run(),
                                                   name="housekeeping"))
            self._tasks.append(asyncio.create_task(self.vehicle_loop.run(), name="vehicles"))
            await self._open_listeners()
            cfg = self.config
            if cfg.metrics or cfg.web:
                self._http = await http.start(self, cfg.metrics, cfg.web)
            self._budget_connections()
            self._started = True
        except BaseException:
            await self.stop()
            raise
        _LOGGER.info("receiver started db=%s accounts=%d tcp=%s udp=%s serial=%s",
                     getattr(self.store, "path", "?"), len(self.accounts),
                     ",".join("%s:%d" % a for a in self.addresses["tcp"]) or "-",
                     ",".join("%s:%d" % a for a in self.addresses["udp"]) or "-",
                     ",".join(self.addresses["serial"]) or "-")

    async def _open_listeners(self) -> None:
        """One listener per configured address, native and DC-09; each
        address as bound (port 0 gets one) in ``addresses``."""
        from receiver import dc09_listener, listeners  # noqa: PLC0415

        cfg = self.config
        for host, port in cfg.tcp:
            await self._listen("tcp", listeners.TcpListener(self, host, port))
        for host, port in cfg.udp:
            await self._listen("udp", listeners.UdpListener(self, host, port))
        for spec in cfg.serial:
            await self._listen("serial", listeners.SerialListener(self, spec))
        if cfg.dc09_tcp or cfg.dc09_udp:
            dc09 = self.dc09 = dc09_listener.Dc09Service(self)
            self.addresses.update(dc09_tcp=[], dc09_udp=[])
            for host, port in cfg.dc09_tcp:
                await self._listen("dc09_tcp", dc09_listener.Dc09TcpListener(dc09, host, port))
            for host, port in cfg.dc09_udp:
                await self._listen("dc09_udp", dc09_listener.Dc09UdpListener(dc09, host, port))

    async def _listen(self, kind: str, lst: Listener) -> None:
        await lst.start()
        self.listeners.append(lst)
        self.addresses[kind].append(lst.address)

    async def stop(self) -> None:
        """Stop accepting, let in-flight commits finish and their ACKs go out,
        write back replay state, close everything."""
        if self._stopping:
            return
        self._stopping = True
        for lst in self.listeners:
            await lst.stop_accepting()
        if self._inflight:
            _, pending = await asyncio.wait(set(self._inflight), timeout=STOP_GRACE_S)
            if pending:
                _LOGGER.warning("stop: %d commits still pending after %.0f s", len(pending),
                                STOP_GRACE_S)
        for lst in self.listeners:
            await lst.close()
        await self._cancel_tasks()
        for f in self.forwarders.values():
            await f.stop()
        if self._http is not None:
            await self._http.cleanup()
        if self.cluster is not None:
            await self.cluster.stop()
        try:
            await self.flush_replay_state()
        except Exception as e:  # noqa: BLE001 - the store may be what failed
            _LOGGER.warning("stop: replay state not saved error=%s", e)
        await self.store.close()
        self._accept_errors.uninstall()
        _LOGGER.info("receiver stopped")

    async def _cancel_tasks(self) -> None:
        await cancel_all(self._tasks)
        for t in list(self._bg):
            t.cancel()
        if self._bg:
            await asyncio.wait(set(self._bg), timeout=2)

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

    # -- accounts --------------------------------------------------------------------

    def account(self, number: str) -> Account | None:
        return self.accounts.get(number)

    async def reload_accounts(self) -> int:
        """Re-read accounts if they changed (supervision follows); returns
        how many there are."""
        changes = await self.accounts.reload()
        if changes is not None and not changes.first:
            self.supervision.follow(changes, time.time())
            self.rules.follow(changes.accounts, changes.removed, time.time())
        return len(self.accounts)

    async def add_account(self, account: Account) -> None:
        """Create an account (the CLI and the console use the store directly
        or this; either way the running keyring picks it up)."""
        await self.store.add_account(account)
        await self.reload_accounts()

    async def flush_replay_state(self) -> None:
        await self.accounts.flush_replay_state()

    # -- what listeners call -----------------------------------------------------------

    def on_native(self, result, link) -> None:
        """A judged native frame from a listener's link (receiver.native)."""
        self.native.handle(result, link)

    def heard(self, account: str, path: int, now: float) -> None:
        """A panel was heard on ``path`` (any protocol): supervision."""
        self.supervision.heard(account, path, now)

    def _store_behind(self) -> bool:
        """Too far behind with events to be given security events too."""
        return self.store.pending_writes >= self.config.max_pending_writes // 2

    def _store_security_event(self, ev: SecurityReport) -> None:
        self.spawn(self._record_security(ev))

    async def _record_security(self, ev: SecurityReport) -> None:
        try:
            await self.store.record_security_event(ev.at, ev.account, ev.seq, ev.reason,
                                                   ev.detail, ev.peer, ev.transport)
        except Exception as e:  # noqa: BLE001
            self.metrics.security_dropped.inc()
            _LOGGER.warning("security event not stored account=%s peer=%s error=%s",
                            ev.account, ev.peer, e)
            return
        self.publish(SecurityRejected.of(ev))

    # -- supervision, commands, gauges (receiver.supervision_loop, .commands, ...) ------

    async def supervision_tick(self, now: float) -> list[Change]:
        """Poll the supervisor at ``now`` and store what it reports."""
        return await self.supervision.tick(now)

    async def send_command(self, account: str, command: str, partition: int = 1,
                           arg: int = 0, by: str = "?",
                           timeout: float = COMMAND_TIMEOUT_S) -> dict:
        """A COMMAND to a panel and its REPLY (receiver.commands); raises
        CommandError."""
        return await self.commands.send(account, command, partition, arg, by, timeout)

    def refresh_gauges(self) -> None:
        refresh_gauges(self)

    async def refresh_store_gauges(self) -> None:
        await refresh_store_gauges(self)

    def _output_health(self, f: Forwarder) -> None:
        """An output started or stopped failing, or fails for another
        reason now: tell the consoles."""
        self.publish(OutputHealth.of(f), broadcast=False)

    # -- pub/sub for the console (receiver.pubsub) -------------------------------------

    def subscribe(self) -> Subscription:
        """A queue of live messages (receiver.messages)."""
        return self.hub.subscribe()

    def unsubscribe(self, q: Subscription) -> None:
        self.hub.unsubscribe(q)

    def publish(self, message: ConsoleMessage, broadcast: bool = True) -> None:
        """Give ``message`` to every subscriber here and, with several
        receivers, to theirs (``broadcast=False``: it came from them)."""
        self.hub.publish(message, broadcast)

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
        source ('panel' default; the receiver's own: 'supervision',
        'vehicle'), user (the user the event names; by default ZZZ of a
        Contact ID user report from a panel), ext (dict: DC-09 extended
        data and SIA modifiers, raw), position (records.Position: where a
        vehicle unit was; from DC-09 extended data X/Y when not given)."""
        _check_event(event)
        account, q, code = event["account"], event["qualifier"], event["code"]
        partition = int(event.get("partition") or 0)
        zone = int(event.get("zone") or 0)
        a = self.accounts.get(account)
        source = event.get("source") or "panel"
        kind = contactid.number_kind(code)
        # ZZZ is looked up as a zone name only when the code says it is a
        # zone (protocol.contactid.number_kind): never a user or a path.
        zname = a.zones.get(str(zone)) if a and kind == contactid.ZONE else None
        user = event.get("user")
        if user is None and kind == contactid.USER and source == "panel":
            user = zone
        pname = a.partitions.get(str(partition)) if a else None
        # The receiver's own events (supervision, schedule, periodic, vehicle
        # checks, an operator's duress report) carry its sentence in text
        # ("backup path (2) silent for 90 s", "not armed by 17:45 ..."): that
        # is their description's detail.  A path number is in the sentence
        # already; a user (an early opening) is named as the code says.
        own = source != "panel"
        cls, prio, desc = _alarms.classify(code, q, zone=None if source in NUMBERLESS_SOURCES
                                           else zone,
                                           partition=partition, zone_name=zname,
                                           partition_name=pname,
                                           detail=event.get("text") if own else None)
        rec = EventRecord(
            account=account, protocol=event["protocol"], dedupe_key=str(event["dedupe_key"]),
            qualifier=q, code=code, partition=partition, zone=zone,
            received_at=float(event.get("received_at") or time.time()), seq=event.get("seq"),
            text=event.get("text"), value=event.get("value"),
            event_time=event.get("event_time") or None, path=int(event.get("path") or 1),
            peer=str(event.get("peer") or ""), source=source,
            event_class=cls, priority=prio, description=desc,
            user=None if user is None else int(user), ext=event.get("ext") or None,
            position=_position_of(event))
        if self.alarm_policy.opens_alarm(q, code, cls):
            self._route(rec, a)
        elif q == 1 and code == ingest.CANCEL_CODE:
            rec.cancel_closes = self.workflow.cancel_policy()
        return rec

    def _route(self, rec: EventRecord, a: Account | None) -> None:
        """An event that opens an alarm: where it goes (``routed_to``) and
        the outbox rows for each dispatch centre's outputs."""
        rec.open_alarm = True
        region = a.region if a else ""
        decision = self.router.route(region, rec.event_class)
        rec.routed_to = decision.routed_to
        for output, level, center in decision.deliveries:
            rec.outbox.append((output, {
                "type": "alarm", "level": level, "center": center.id,
                "center_name": center.name, "account": rec.account,
                "site_name": a.site_name if a else "",
                "site_address": a.site_address if a else "", "region": region,
                "event_class": rec.event_class, "priority": rec.priority, "code": rec.code,
                "qualifier": rec.qualifier, "description": rec.description,
                "partition": rec.partition, "zone": rec.zone,
                "text": rec.text, "value": rec.value, "event_time": rec.event_time,
                "received_at": rec.received_at, "protocol": rec.protocol,
                "user": rec.user,
                "location": rec.position.location() if rec.position else None,
                "position": rec.position.to_json() if rec.position else None,
                "contacts": a.contacts if a else []}))
        if self.router.routes and not decision.routed_to:
            _LOGGER.warning("alarm unrouted account=%s region=%s class=%s code=%03d",
                            rec.account, region, rec.event_class, rec.code)
        # its plan, steps and escalation deadlines (the version in force now)
        rec.opening = self.workflow.opening(rec, region, self.center_names())

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

    def track_busy_reason(self) -> str | None:
        """Why a track point is NAKed busy now (None: take it): the receiver
        is busy, or track points would take more than their share of the
        store's queue (TRACK_IN_HAND, TRACK_SHARE)."""
        reason = self.busy_reason()
        if reason is not None:
            return reason
        if self._tracks_in_hand >= TRACK_IN_HAND:
            return "%d track points being stored (at most %d at once)" % (
                self._tracks_in_hand, TRACK_IN_HAND)
        pending = self.store.pending_writes
        cap = int(self.config.max_pending_writes * TRACK_SHARE)
        if pending >= cap:
            return "store queue %d >= %d (the track points' share)" % (pending, cap)
        return None

    async def ingest_track(self, rec: TrackRecord) -> TrackOutcome:
        """Store one track point (a POSITION message) in the next group
        commit; returns once it is durable.  Raises Busy when the sender
        must retry (track_busy_reason, or the store failing)."""
        reason = self.track_busy_reason()
        if reason is not None:
            raise Busy(reason)
        self._tracks_in_hand += 1
        try:
            [out] = await self._write(lambda: self.store.ingest_track([rec]))
        finally:
            self._tracks_in_hand -= 1
        if not out.duplicate:
            self.metrics.track_points.labels(rec.source).inc()
            self.publish(PositionStored.of(rec, out.point_id))
        return out

    async def ingest_records(self, recs: list[EventRecord]) -> list[IngestOutcome]:
        if len(recs) == 1:
            return [await self.ingest_record(recs[0])]
        outs = await self._write(lambda: self.store.queue_ingest(recs))
        for rec, out in zip(recs, outs):
            self._stored(rec, out)
        return outs

    async def ingest_record(self, rec: EventRecord) -> IngestOutcome:
        [fut] = self.queue_records([rec])
        return await self.record_stored(rec, fut)

    def queue_records(self, recs: list[EventRecord]) -> list[asyncio.Future]:
        """Queue the writes of independent events now, one store request
        each, in one group commit (Busy at once, for all, when we are busy:
        the bound is checked once per call); :meth:`record_stored` awaits
        each.  receiver.native queues the events of one turn of the event
        loop so, and awaits them in one task."""
        return self.queue_messages([[r] for r in recs])

    def queue_messages(self, messages: list[list[EventRecord]]) -> list[asyncio.Future]:
        """:meth:`queue_records` for messages of several events each (SIA
        DC-09): one store request per message, all of its events stored or
        none; :meth:`message_stored` awaits each."""
        return self._queued(lambda: self.store.queue_ingests(messages))

    async def record_stored(self, rec: EventRecord, fut: asyncio.Future) -> IngestOutcome:
        """The outcome of a :meth:`queue_records` future once durable (Busy
        when the store could not take it: the sender retries)."""
        [out] = await self._committed(fut)
        return self._stored(rec, out)

    async def message_stored(self, recs: list[EventRecord],
                             fut: asyncio.Future) -> list[IngestOutcome]:
        """The outcomes of a :meth:`queue_messages` future once durable."""
        outs = await self._committed(fut)
        for rec, out in zip(recs, outs):
            self._stored(rec, out)
        return outs

    async def _write(self, write):
        """Run a store write unless we are busy; the store's busy and
        unavailable errors become Busy (the sender retries)."""
        return await self._committed(self._queued(write))

    def _queued(self, write):
        """``write()`` (a store write's awaitable) unless we are busy."""
        reason = self.busy_reason()
        if reason is not None:
            raise Busy(reason)
        try:
            return write()
        except StoreBusy as e:
            raise Busy("store busy: %s" % e) from None

    @staticmethod
    async def _committed(pending):
        try:
            return await pending
        except StoreBusy as e:
            raise Busy("store busy: %s" % e) from None
        except StoreUnavailable as e:
            raise Busy("store unavailable: %s" % e) from None

    def _stored(self, rec: EventRecord, out: IngestOutcome) -> IngestOutcome:
        """Metrics, live updates, forwarder wake-ups and the log line for an
        event the store took; what the rules decided (on test, held,
        resolved by its restore) is told too."""
        if out.duplicate:
            self.metrics.duplicates.inc()
            return out
        m = self.metrics
        m.child(m.events, rec.protocol, rec.event_class).inc()
        live = self.hub.wanted  # no console, no other receiver: no message to build
        if live:
            self.publish(EventStored(rec.stored(out.event_id, out.test_placement,
                                                out.attached_to)))
        self._ruled(rec, out, live)
        self.rules.on_stored(rec, out)
        t = rec.track(out.event_id)
        if t is not None and out.track_point_id is not None:  # stored with the event
            m.child(m.track_points, t.source).inc()
            if live:
                self.publish(PositionStored.of(t, out.track_point_id))
        if out.touched:  # a 406 cancel or a 459 recent close changed open alarms (rare)
            self.spawn(self._publish_touched(rec, out.touched))
        if out.alarm_id is not None:
            if live:
                self.publish(AlarmUpdate.raised(rec, out.alarm_id, out.event_id))
            d = rec.opening.deadlines if rec.opening is not None else None
            self.escalations.wake(None if d is None else min(d.ack_due_at, d.resolve_due_at))
            for output, _ in rec.outbox:
                f = self.forwarders.get(output)
                if f is not None:
                    f.wake()
            if _LOGGER.isEnabledFor(logging.WARNING):  # the routing text is built only then
                _LOGGER.warning("alarm account=%s alarm_id=%d class=%s code=%03d zone=%d "
                                "partition=%d routed_to=%s", rec.account, out.alarm_id,
                                rec.event_class, rec.code, rec.zone, rec.partition,
                                ",".join("%s:%s" % kv for kv in sorted(
                                    (rec.routed_to or {}).items())) or "-")
        else:
            _LOGGER.info("event account=%s seq=%s q=%d code=%03d zone=%d partition=%d "
                         "class=%s path=%d", rec.account, rec.seq, rec.qualifier, rec.code,
                         rec.zone, rec.partition, rec.event_class, rec.path)
        return out

    def _ruled(self, rec: EventRecord, out: IngestOutcome, live: bool) -> None:
        """Live updates and log lines for what the rules did with an event."""
        if out.test_placement is not None and rec.open_alarm:
            _LOGGER.info("on test: no alarm account=%s code=%03d zone=%d placement=%d",
                         rec.account, rec.code, rec.zone, out.test_placement)
        for alarm_id in out.resolved:
            _LOGGER.info("alarm resolved by its restore account=%s alarm_id=%d", rec.account,
                         alarm_id)
        if not live:
            return
        if out.attached_to is not None:
            self.publish(RulesUpdate("zone.signal", rec.account,
                                     hygiene.signals_sentence(rec.zone, out.signals or 0),
                                     out.attached_to, rec.zone, out.signals))
        for alarm_id in out.resolved:
            self.publish(AlarmUpdate(alarm_id, "resolved", account=rec.account, by="receiver",
                                     note="restored"))

    # -- the centre's rules: what the console and the CLI change ---------------------------

    def _rules_changed(self, action: str, account: str, sentence: str,
                       zone: int | None = None) -> None:
        self.publish(RulesUpdate(action, account, sentence, zone=zone))
        _LOGGER.info("rules changed action=%s account=%s %s", action, account, sentence)

    async def place_on_test(self, p: testmode.Placement) -> testmode.Placement:
        """Place an account, partition or zone on test (refused: a
        ValueError in words); audited."""
        p = await self.store.place_on_test(p, time.time())
        self._rules_changed("test.place", p.account, p.place_sentence(), p.zone)
        return p

    async def end_test(self, placement_id: int, by: str) -> testmode.Placement | None:
        p = await self.store.end_test_placement(placement_id, by, time.time())
        if p is not None:
            self._rules_changed("test.end", p.account, testmode.end_sentence(p), p.zone)
        return p

    async def release_zone(self, account: str, zone: int, by: str) -> ZoneHold:
        h = await self.store.release_zone(account, zone, by, time.time())
        self._rules_changed("zone.release", account, "zone %d released by %s" % (zone, by),
                            zone)
        return h

    async def set_schedule(self, s: Schedule, by: str) -> bool:
        changed = await self.store.set_schedule(s, by, time.time())
        if changed:
            await self.rules.reload(time.time())
            self._rules_changed("schedule.set", s.account, "schedule of partition %d set by "
                                "%s" % (s.partition, by))
        return changed

    async def change_schedule(self, c: TemporaryChange) -> TemporaryChange:
        c = await self.store.add_schedule_change(c)
        await self.rules.reload(time.time())
        self._rules_changed("schedule.change", c.account, "%s, by %s" % (c.words(), c.by))
        return c

    async def cancel_schedule_change(self, change_id: int, by: str) -> TemporaryChange:
        c = await self.store.cancel_schedule_change(change_id, by, time.time())
        await self.rules.reload(time.time())
        self._rules_changed("schedule.cancel", c.account, "change #%d cancelled by %s"
                            % (change_id, by))
        return c

    # -- the operator's workflow (receiver.workflow_service) ----------------------------

    def center_names(self) -> dict:
        """{dispatch centre id: its name} (the words of steps and trails)."""
        return {cid: c.name for cid, c in self.router.centers.items()}

    async def _publish_touched(self, rec: EventRecord, alarm_ids) -> None:
        """Tell the consoles about the alarms a cancel or a recent closing
        changed (after the commit: the console reads them again)."""
        change = "cancel" if rec.code == ingest.CANCEL_CODE else "recent_close"
        for alarm_id in alarm_ids:
            a = await self.store.get_alarm(alarm_id)
            if a is None:
                continue
            if a.state == _alarms.RESOLVED:
                self.publish(AlarmUpdate.moved(a, a.resolved_by or "receiver", a.note))
            self.publish(WorkflowChange.of(a, change))
            _LOGGER.warning("alarm %s account=%s alarm_id=%d user=%s state=%s",
                            "cancelled at the panel" if change == "cancel"
                            else "follows a recent closing", a.account, a.id,
                            rec.user if rec.user is not None else "-", a.state)

    async def raise_duress(self, d: DuressAlarm) -> int | None:
        """A duress passcode given on a call: a hold-up alarm for the site,
        stored, routed and planned like a panel's (source ``operator``).
        The alarm's id (the one raised before, for a second check of the
        same passcode)."""
        a = self.accounts.get(d.account)
        rec = self.make_record({
            "account": d.account, "protocol": a.protocol if a else "native",
            "dedupe_key": d.dedupe_key, "qualifier": 1, "code": d.code,
            "partition": d.partition, "zone": 0, "received_at": d.at, "source": "operator",
            "text": d.text})
        rec.raised_from = d.from_alarm_id
        out = await self.ingest_record(rec)
        if out.alarm_id is not None:
            return out.alarm_id
        return await self.store.read(lambda tx: tx.value(
            "SELECT id FROM alarms WHERE event_id = :e", e=out.event_id))

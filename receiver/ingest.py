"""The ingest rules, once: typed event records in, the rows to write out.

Both store backends (receiver.sqlite_store row by row, receiver.pg_store
set-based over arrays) execute what this module decides; neither decides
anything itself.  No I/O, no clock: tests feed it records and what the
store answered, and read the plan (tests/test_ingest_plan.py).

One ``ingest`` or ``ingest_many`` call (or a PostgreSQL group commit of
several) is planned in two steps, because only the database can say, race
free, whether an event is new:

1. :func:`candidates`: the first copy of each ``(account, dedupe_key)``
   in the batch, in arrival order (a later copy is a duplicate of it, the
   same answer a later batch would get).  The backend inserts these events
   unless the key is already stored (``INSERT OR IGNORE`` / ``ON CONFLICT
   DO NOTHING``) and learns each key's event id: ``inserted`` (new now) or
   ``existing`` (stored before, by this receiver or another).
2. :func:`plan`: from the records and those two answers, everything else,
   as a :class:`Plan`:

   - **replay state** travels with the event: for each account the highest
     native sequence (and our ``tx_seq`` towards the panel) among the
     events inserted now, never lowering the stored value, so after a
     restart the session core starts from the highest sequence whose event
     is on disk;
   - **alarms**: an inserted event marked ``open_alarm`` opens an alarm
     (pending, ``routed_to``), with its first audit row ("routed to ...")
     and one outbox row per delivery, carrying the alarm and event ids;
   - **restores** (qualifier 3, not itself an alarm) stamp ``restored_at``
     on the open alarms they restore: same account, code, partition and
     zone, not resolved, not yet restored, raised before the restore (by
     arrival, and by time: ``created_at <= restore time``).  A restore
     never closes an alarm: that is the operator's decision.  Alarms
     stored before the batch are stamped by :attr:`Plan.restores`, which
     the backend runs *before* inserting the batch's alarms; alarms opened
     earlier in the same batch carry their stamp in
     :attr:`AlarmRow.restored_at`;
   - **track points**: an inserted event that carries a position (a
     vehicle unit's) adds a track point keyed by its event id, so the
     track holds every position the unit reported, whichever message
     carried it;
   - **plans** (issue 17): an alarm opens with the plan the receiver chose
     for it (``EventRecord.opening``): its workflow columns (plan, version,
     escalation deadlines), its own copy of the plan's steps and the plan's
     audit row ("Plan 'holdup-bank' (v7, ...), the site's plan for hold-up
     alarms."), in the same transaction as the alarm;
   - **follow-ups** (issue 22): an inserted cancel (406) or recent closing
     (459) attaches to the earlier alarms it concerns; the rule needs the
     stored alarms, so the backend runs it (receiver.workflow_db.follow_up)
     after the batch's alarms are in, inside the same transaction;
   - **hearings**: an event from the panel (stored or a duplicate) is a
     hearing of its path (receiver.ownership reads them on PostgreSQL);
   - **periodic tests**: for each account the latest periodic test report
     (602/608, receiver.rules.periodic) inserted now, kept on the account
     (``accounts.last_test_at``, never moved back) where the periodic-test
     rule reads it, instead of an index over every test report;
   - **the centre's rules** (issue 18, receiver.rules), in arrival order,
     each decision's new state feeding the next, from a :class:`RulesState`
     the backend reads for the batch (:func:`rules_query` says what) inside
     the same transaction:

     1. *test*: an event under a test placement (receiver.rules.testmode)
        is marked with it and opens no alarm, goes nowhere;
     2. *runaway*: an alarm of a zone past the runaway limit holds the zone
        (the alarm is opened as the hold's anchor) or, once held, opens
        nothing and is attached to the anchor and counted
        (receiver.rules.hygiene.runaway); hold-up and fire never;
     3. *grouping*: each alarm opened joins its site's open incident or
        heads a new one (hygiene.group);
     4. *restores*: besides the stamp, the restore policy may resolve the
        alarm, with the disposition "restored" and the receiver as actor
        (hygiene.on_restore), its open steps then skipped as moot (a
        follow-up); not an alarm whose action plan someone began and left
        a mandatory step open: that one is left open, audited with why.

     Alarms of the batch are named by :class:`NewAlarm` until the backend
     inserted them (:meth:`Plan.alarm_id`);
   - **outcomes**, one per record in order: the event id, whether it was a
     duplicate, the alarm it opened, what the rules decided, and the
     earlier alarms it changed (a 406 cancel, a 459 recent closing).

On PostgreSQL two receivers may plan batches of one account at once: the
backend locks the batch's accounts that open alarms or restore one the
restore policy may resolve (:attr:`RulesQuery.lock`, in account order, after the events: the lock
order of every batch) before it reads the rules' state, so one account's
hygiene decisions are taken one batch after the other.

Everything a batch writes commits together or not at all (the backends'
transaction), so a multi-event DC-09 message is all-or-nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from protocol import contactid
from receiver.records import EventRecord, IngestOutcome
from receiver.rules import hygiene, periodic, testmode
from receiver.workflow import steps as _steps
from receiver.times import iso_utc

Key = tuple  # (account, dedupe_key)


class ConflictVanished(Exception):
    """A key conflicted on insert but its row was not there when read back
    (deleted meanwhile).  ``key`` is that (account, dedupe_key).  Only the
    request holding the record fails (receiver.store.EventNotStored, the
    sender retries); the backend plans the other requests of its group
    commit without it."""

    def __init__(self, key):
        super().__init__("event %s/%s conflicted but is not there" % key)
        self.key = key


def candidates(recs: Sequence[EventRecord]) -> list[tuple[Key, int]]:
    """[(key, index)] of the first copy of each key, in arrival order: the
    events to insert unless already stored."""
    first: dict = {}
    for i, r in enumerate(recs):
        first.setdefault(r.key, i)
    return list(first.items())


def routed_json(routed_to: dict | None) -> str:
    return json.dumps(routed_to or {}, sort_keys=True)


# Reports that concern earlier alarms (a new one, qualifier 1): a user's
# cancel after a transmitted alarm, and a recent closing (CP-01,
# docs/firmware.md).
CANCEL_CODE = 406
RECENT_CLOSE_CODE = 459
FOLLOW_UP_CODES = (CANCEL_CODE, RECENT_CLOSE_CODE)


def follows_up(r: EventRecord) -> bool:
    return r.qualifier == 1 and r.code in FOLLOW_UP_CODES


# The alarm's workflow columns an opening fills (receiver.workflow.handling.Opening.columns).
OPENING_COLUMNS = ("plan_name", "plan_hash", "plan_version", "ack_due_at", "resolve_due_at",
                   "ack_within_s", "resolve_within_min")
# The alarms row AlarmRow.values() fills, in order (state is 'pending').
ALARM_COLUMNS = ("event_id", "account", "event_class", "priority", "code", "partition", "zone",
                 "description", "created_at", "routed_to", "restored_at",
                 "restore_event_id") + OPENING_COLUMNS + ("raised_from",)
# An alarm's step rows (AlarmRow.steps), in order.
STEP_COLUMNS = ("alarm_id", "position", "kind", "title", "text", "mandatory", "params")


@dataclass(frozen=True)
class NewAlarm:
    """The ``index``-th alarm the plan opens, before the backend knows its
    id (:meth:`Plan.alarm_id`)."""

    index: int


# An alarm stored before the batch (its id), or one the batch opens.
AlarmRef = int | NewAlarm


@dataclass(frozen=True)
class Hygiene:
    """The signal-hygiene policies (receiver.toml ``[hygiene]``)."""

    runaway: hygiene.RunawayPolicy = hygiene.RunawayPolicy()
    grouping: hygiene.GroupingPolicy = hygiene.GroupingPolicy()
    restore: hygiene.RestorePolicy = hygiene.RestorePolicy()


@dataclass(frozen=True)
class Restorable:
    """An open alarm stored before the batch that a restore of the batch
    may resolve by policy (read only for the classes the policy names)."""

    id: int
    account: str
    code: int
    partition: int
    zone: int
    event_class: str
    state: str
    created_at: float
    handler: str | None = None  # an operator who took it: the policy leaves it to them
    steps: tuple = ()  # its action plan's steps (receiver.workflow.steps.StepRecord)


@dataclass
class RulesState:
    """What the backend read for one batch (see :class:`RulesQuery`):
    the live test placements, each held-or-counted zone's state, each
    site's newest incident, the alarms the batch's restores may resolve."""

    placements: list = field(default_factory=list)  # [testmode.Placement], live
    zones: dict = field(default_factory=dict)  # (account, zone) -> hygiene.ZoneState
    sites: dict = field(default_factory=dict)  # account -> hygiene.SiteState
    restorable: list = field(default_factory=list)  # [Restorable]


@dataclass(frozen=True)
class RulesQuery:
    """What a backend reads into a :class:`RulesState` for a batch:
    ``zones`` [(account, zone, since)] (their alarms opened after
    ``since``, their live hold and last release), ``sites`` [account]
    (newest incident), ``restores`` [(account, code, partition, zone)]
    (open alarms the restore policy may resolve), and ``lock``: the
    accounts to lock first (PostgreSQL), in order."""

    zones: list
    sites: list
    restores: list
    lock: list

    def __bool__(self) -> bool:
        return bool(self.zones or self.sites or self.restores or self.lock)


def _new_first_copies(recs, inserted):
    seen: set = set()
    for r in recs:
        if r.key in inserted and r.key not in seen:
            seen.add(r.key)
            yield r


def held_or_counted(r: EventRecord) -> bool:
    """Does runaway suppression look at this would-be alarm: its number is
    a zone (not 0), and it is not a class that is never held?"""
    return (r.zone != 0 and r.event_class not in hygiene.NEVER_HELD
            and contactid.number_kind(r.code) == contactid.ZONE)


def rules_query(recs: Sequence[EventRecord], inserted: Mapping[Key, int],
                policy: Hygiene) -> RulesQuery:
    """What the backend must read for :func:`plan` (the records that are new
    now decide it; heartbeats and statuses need nothing)."""
    zones: dict = {}
    sites: set = set()
    restores: set = set()
    lock: set = set()
    for r in _new_first_copies(recs, inserted):
        if r.open_alarm:
            lock.add(r.account)
            if policy.grouping.window_s:
                sites.add(r.account)
            if held_or_counted(r):
                k = (r.account, r.zone)
                zones[k] = min(zones.get(k, r.received_at), r.received_at)
        elif r.qualifier == 3 and r.event_class in policy.restore.auto_resolve:
            # (a restore only stamps otherwise: one set-based UPDATE, no state)
            lock.add(r.account)
            restores.add((r.account, r.code, r.partition, r.zone))
    return RulesQuery(sorted((a, z, t - policy.runaway.window_s)
                             for (a, z), t in zones.items()),
                      sorted(sites), sorted(restores), sorted(lock))


def zone_state(alarms, released_at: float | None, hold) -> hygiene.ZoneState:
    """A zone's runaway state from the rows the backend read: ``alarms``
    [(created_at, code, event_class)] of the account's alarms on this
    number in the window, ``released_at`` its last release (or None),
    ``hold`` (anchor alarm id, signals) of its live hold or None.  Only
    alarms whose number is the zone, of classes that are held, since the
    release count."""
    recent = tuple(sorted(
        t for t, code, cls in alarms
        if cls not in hygiene.NEVER_HELD and contactid.number_kind(code) == contactid.ZONE
        and (released_at is None or t > released_at)))
    if hold is None:
        return hygiene.ZoneState(recent)
    return hygiene.ZoneState(recent, hold[0], hold[1])


def site_state(newest) -> hygiene.SiteState:
    """A site's grouping state from its newest alarm that is in an incident
    (incident id, created_at, whether the incident's head is resolved), or
    None (no incident yet)."""
    if newest is None:
        return hygiene.SiteState()
    return hygiene.SiteState(newest[0], bool(newest[2]), newest[1])


@dataclass(frozen=True)
class Restore:
    """Stamp ``restored_at = at`` and the restore's event on the alarms
    stored before this batch that the restore (account, code, partition,
    zone) restores."""

    account: str
    code: int
    partition: int
    zone: int
    at: float
    event_id: int = 0


@dataclass(frozen=True)
class Resolve:
    """Resolve ``alarm`` (it was ``from_state``) on its restore, by the
    receiver, with the disposition "restored"; the backend writes it only
    if the alarm is still in ``from_state`` (an operator may have moved it
    meanwhile on another receiver) and then its audit row."""

    alarm: AlarmRef
    from_state: str
    at: float
    note: str
    event_id: int


@dataclass(frozen=True)
class LeftOpen:
    """A stored alarm the restore policy would resolve but leaves open:
    someone began its action plan and left a mandatory step open (``why``,
    receiver.workflow.steps.left_to_a_person).  The restore is stamped on
    it as on any alarm; the backend adds an audit row saying why the
    receiver did not close it."""

    alarm_id: int
    at: float
    event_id: int
    why: str


@dataclass(frozen=True)
class NewHold:
    """A zone held now: its anchor is the alarm the batch opens."""

    account: str
    zone: int
    anchor: NewAlarm
    since: float
    reason: str


@dataclass(frozen=True)
class OutboxInsert:
    """An outbox row to insert (``payload`` already JSON)."""

    output: str
    alarm_id: int
    payload: str
    created_at: float


@dataclass
class AlarmRow:
    """An alarm to insert, opened by event ``event_id`` (``rec``), with its
    first audit row and its outbox rows."""

    event_id: int
    rec: EventRecord
    restored_at: float | None = None  # restored later in the same batch
    restore_event_id: int | None = None
    incident: AlarmRef | None = None  # the incident it joins or (itself) heads

    @property
    def created_at(self) -> float:
        return self.rec.received_at

    def values(self) -> tuple:
        """The alarms row, in ALARM_COLUMNS order; state is 'pending'."""
        r = self.rec
        opened = r.opening.columns() if r.opening is not None else {}
        return (self.event_id, r.account, r.event_class, r.priority, r.code, r.partition,
                r.zone, r.description, r.received_at, routed_json(r.routed_to),
                self.restored_at, self.restore_event_id) + tuple(opened.get(k) for k in OPENING_COLUMNS) + (
                r.raised_from,)

    def steps(self, alarm_id: int) -> list[tuple]:
        """The alarm's copy of its plan's steps (STEP_COLUMNS), all open."""
        if self.rec.opening is None:
            return []
        return [(alarm_id, s.position, s.kind, s.title, s.text, bool(s.mandatory),
                 json.dumps(s.params, sort_keys=True)) for s in self.rec.opening.steps]

    def plan_audit(self, alarm_id: int) -> tuple | None:
        """The plan's audit row (alarm_id, at, action, detail JSON): which
        plan, and why; None for an alarm opened without one."""
        o = self.rec.opening
        if o is None:
            return None
        return (alarm_id, o.audit.at, o.audit.action, json.dumps(o.audit.detail,
                                                                 sort_keys=True))

    def audit_note(self) -> str:
        """The note of the receiver's first audit row (pending, actor
        'receiver')."""
        return "routed to " + routed_json(self.rec.routed_to)

    def outbox(self, alarm_id: int) -> list[OutboxInsert]:
        return [OutboxInsert(output, alarm_id,
                             json.dumps(dict(payload, alarm_id=alarm_id,
                                             event_id=self.event_id), sort_keys=True),
                             self.created_at)
                for output, payload in self.rec.outbox]

    def restored_by(self, r: EventRecord) -> bool:
        """Does restore ``r``, arriving after this alarm in its batch,
        restore it?"""
        a = self.rec
        return (r.account, r.code, r.partition, r.zone) == (
            a.account, a.code, a.partition, a.zone) and (
            self.restored_at is None and self.created_at <= r.received_at)


@dataclass
class _Outcome:
    event_id: int
    duplicate: bool
    alarm: int | None = None  # index into Plan.alarms
    test_placement: int | None = None
    attached_to: AlarmRef | None = None
    signals: int | None = None
    resolved: list = field(default_factory=list)  # [AlarmRef]


@dataclass
class Plan:
    """What one batch writes, beyond its events (see the module doc)."""

    replay: list  # [(account, highest_seq, tx_seq)], sorted by account
    restores: list  # [Restore] of alarms stored before the batch, in arrival order
    alarms: list  # [AlarmRow], in arrival order
    heard: list  # [(account, path, received_at)]
    _outcomes: list  # [_Outcome]
    # the rules (empty without a RulesState)
    marks: list = field(default_factory=list)  # [(event_id, placement id, AlarmRef)]
    holds: list = field(default_factory=list)  # [NewHold]
    hold_signals: list = field(default_factory=list)  # [(account, zone, added, last_at)]
    resolves: list = field(default_factory=list)  # [Resolve]
    left_open: list = field(default_factory=list)  # [LeftOpen]
    # the track points of inserted events that carry a position
    tracks: list = field(default_factory=list)  # [TrackRecord]
    # [(account, its latest periodic test report inserted now: received_at)]
    tested: list = field(default_factory=list)

    @staticmethod
    def alarm_id(ref: AlarmRef, alarm_ids: Sequence[int]) -> int:
        """The id of an alarm the plan names, once ``alarm_ids`` (the ids
        the backend got for :attr:`alarms`, same order) are known."""
        return alarm_ids[ref.index] if isinstance(ref, NewAlarm) else ref

    def incidents(self, alarm_ids: Sequence[int]) -> list[tuple[int, int]]:
        """[(alarm id, incident id)] of the batch's alarms."""
        return [(i, self.alarm_id(al.incident, alarm_ids))
                for i, al in zip(alarm_ids, self.alarms) if al.incident is not None]
    # [(index of the outcome, record, event id)] of inserted cancels and
    # recent closings, and of restores that resolved alarms by policy (their
    # open steps are skipped as moot), in arrival order: the backend runs
    # them after the batch's alarms are inserted
    followups: list = field(default_factory=list)

    def outcomes(self, alarm_ids: Sequence[int],
                 track_ids: Mapping[int, int] | None = None,
                 touched: Mapping[int, Sequence[int]] | None = None) -> list[IngestOutcome]:
        """One per record, given the ids the backend got for ``alarms``
        (same order), for :attr:`tracks` (``track_ids``: {event id: track
        point id}, those the backend stored), and the alarms each follow-up
        touched (by outcome index)."""
        track_ids = track_ids or {}
        touched = touched or {}
        out = []
        for i, o in enumerate(self._outcomes):
            alarm = None if o.alarm is None else alarm_ids[o.alarm]
            inc = None if o.alarm is None else self.alarms[o.alarm].incident
            out.append(IngestOutcome(
                o.event_id, o.duplicate, alarm, o.test_placement,
                None if o.attached_to is None else self.alarm_id(o.attached_to, alarm_ids),
                o.signals, None if inc is None else self.alarm_id(inc, alarm_ids),
                tuple(self.alarm_id(r, alarm_ids) for r in o.resolved),
                None if o.duplicate else track_ids.get(o.event_id),
                tuple(touched.get(i, ()))))
        return out


def plan(recs: Sequence[EventRecord], inserted: Mapping[Key, int],
         existing: Mapping[Key, int], rules: RulesState | None = None,
         policy: Hygiene = Hygiene()) -> Plan:
    """The rows to write for ``recs`` once the backend inserted the
    :func:`candidates`: ``inserted`` {key: id} are new now, ``existing``
    {key: id} were stored before; ``rules``: the state the backend read for
    :func:`rules_query` (None: no rules, as for a store without them).
    Raises ConflictVanished for a key in neither."""
    replay: dict = {}
    tested: dict = {}
    outcomes: list = []
    p = Plan([], [], [], [], outcomes)
    seen: set = set()
    st = rules or RulesState()
    zones, sites = dict(st.zones), dict(st.sites)
    stamped: set = set()  # stored alarms a restore of the batch already stamped
    added: dict = {}  # (account, zone) -> [signals added, last at]
    for r in recs:
        k = r.key
        if k in inserted and k not in seen:
            seen.add(k)
            eid = inserted[k]
            _replay(replay, r)
            if periodic.is_test_report(r.code, r.qualifier):
                tested[r.account] = max(tested.get(r.account, r.received_at), r.received_at)
            t = r.track(eid)
            if t is not None:
                p.tracks.append(t)
            if follows_up(r):
                p.followups.append((len(outcomes), r, eid))
            o = _Outcome(eid, False)
            placement = testmode.under_test(st.placements, r.account, r.partition, r.zone,
                                            r.code, r.received_at) if rules else None
            if placement is not None:
                o.test_placement = placement.id
            opens = r.open_alarm and placement is None
            if opens and rules is not None and held_or_counted(r):
                opens = _runaway(p, o, r, zones, added, policy)
            if opens:
                o.alarm = len(p.alarms)
                row = AlarmRow(eid, r)
                if rules is not None:
                    ref = NewAlarm(o.alarm)
                    site = sites.get(r.account, hygiene.SiteState())
                    joins = hygiene.group(policy.grouping, site, r.received_at)
                    row.incident = ref if joins is None else _ref(joins)
                    sites[r.account] = hygiene.joined(site, row.incident, r.received_at)
                p.alarms.append(row)
            elif r.qualifier == 3 and not r.open_alarm:
                _restore(p, o, r, eid, st, stamped, policy, rules is not None)
                if o.resolved:
                    p.followups.append((len(outcomes), r, eid))
            if o.test_placement is not None or o.attached_to is not None:
                p.marks.append((eid, o.test_placement, o.attached_to))
            outcomes.append(o)
            continue
        eid = inserted.get(k) or existing.get(k)
        if eid is None:
            raise ConflictVanished(k)
        outcomes.append(_Outcome(eid, True))
    p.replay = sorted((a, h, t) for a, (h, t) in replay.items())
    p.tested = sorted(tested.items())
    p.heard = [(r.account, r.path, r.received_at) for r in recs if r.source == "panel"]
    p.hold_signals = [(a, z, n, t) for (a, z), (n, t) in sorted(added.items())]
    return p


def _ref(x: object) -> AlarmRef:
    """An anchor or incident the hygiene core hands back: one of the
    plan's own (a stored alarm's id, or a :class:`NewAlarm`)."""
    if isinstance(x, (int, NewAlarm)):
        return x
    raise TypeError("not an alarm of the plan: %r" % (x,))


def _runaway(p: Plan, o: _Outcome, r: EventRecord, zones: dict, added: dict,
             policy: Hygiene) -> bool:
    """Runaway suppression for a would-be alarm; False: it opens nothing
    (counted on the zone's anchor)."""
    k = (r.account, r.zone)
    ref = NewAlarm(len(p.alarms))
    d, zones[k] = hygiene.runaway(policy.runaway, zones.get(k, hygiene.ZoneState()),
                                  r.event_class, r.zone, r.received_at, ref)
    if d.action == hygiene.ATTACH:
        o.attached_to = _ref(d.anchor)
        o.signals = zones[k].held_signals
        n, last = added.get(k, (0, r.received_at))
        added[k] = (n + 1, max(last, r.received_at))
        return False
    if d.action == hygiene.HOLD:
        p.holds.append(NewHold(r.account, r.zone, ref, r.received_at, d.note))
    return True


def _restore(p: Plan, o: _Outcome, r: EventRecord, eid: int, st: RulesState,
             stamped: set, policy: Hygiene, rules: bool) -> None:
    """A restore: stamp the alarms it restores (stored ones through
    :attr:`Plan.restores`, the batch's in their rows); with the rules, the
    policy may resolve them too."""
    p.restores.append(Restore(r.account, r.code, r.partition, r.zone, r.received_at, eid))
    when = iso_utc(r.received_at)
    for i, al in enumerate(p.alarms):
        if al.restored_by(r):
            al.restored_at = r.received_at
            al.restore_event_id = eid
            if rules:
                _decide(p, o, NewAlarm(i), al.rec.event_class, "pending", r, eid, when,
                        policy)
    if not rules:
        return
    for c in st.restorable:
        if (c.account, c.code, c.partition, c.zone) == (r.account, r.code, r.partition,
                                                        r.zone) \
                and c.created_at <= r.received_at and c.id not in stamped:
            stamped.add(c.id)
            _decide(p, o, c.id, c.event_class, c.state, r, eid, when, policy, c.handler,
                    _steps.left_to_a_person(c.steps))


def _decide(p, o, ref, event_class, state, r, eid, when, policy, handler=None,
            plan_keeps_open="") -> None:
    """(An alarm of the batch has steps nobody touched: only a stored one
    can have a plan a person began.)"""
    d = hygiene.on_restore(policy.restore, 0, event_class, state, when, handler,
                           plan_keeps_open)
    if d.action == hygiene.RESOLVE:
        p.resolves.append(Resolve(ref, state, r.received_at, d.note, eid))
        o.resolved.append(ref)
    elif d.action == hygiene.LEAVE_OPEN:
        p.left_open.append(LeftOpen(ref, r.received_at, eid, d.note))


def _replay(replay: dict, r: EventRecord) -> None:
    if r.seq is not None and r.protocol == "native":
        h, t = replay.get(r.account, (0, 0))
        replay[r.account] = (max(h, r.seq), max(t, r.tx_seq or 0))

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
   - **hearings**: an event from the panel (stored or a duplicate) is a
     hearing of its path (receiver.ownership reads them on PostgreSQL);
   - **outcomes**, one per record in order: the event id, whether it was a
     duplicate, and the alarm it opened.

Everything a batch writes commits together or not at all (the backends'
transaction), so a multi-event DC-09 message is all-or-nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from receiver.records import EventRecord, IngestOutcome

Key = tuple  # (account, dedupe_key)


class ConflictVanished(Exception):
    """A key conflicted on insert but its row was not there when read back
    (deleted meanwhile): the backend raises StoreUnavailable, the sender
    retries."""


def candidates(recs: Sequence[EventRecord]) -> list[tuple[Key, int]]:
    """[(key, index)] of the first copy of each key, in arrival order: the
    events to insert unless already stored."""
    first: dict = {}
    for i, r in enumerate(recs):
        first.setdefault(r.key, i)
    return list(first.items())


def routed_json(routed_to: dict | None) -> str:
    return json.dumps(routed_to or {}, sort_keys=True)


@dataclass(frozen=True)
class Restore:
    """Stamp ``restored_at = at`` on the alarms stored before this batch
    that the restore (account, code, partition, zone) restores."""

    account: str
    code: int
    partition: int
    zone: int
    at: float


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

    @property
    def created_at(self) -> float:
        return self.rec.received_at

    def values(self) -> tuple:
        """The alarms row: (event_id, account, event_class, priority, code,
        partition, zone, description, created_at, routed_to, restored_at);
        state is 'pending'."""
        r = self.rec
        return (self.event_id, r.account, r.event_class, r.priority, r.code, r.partition,
                r.zone, r.description, r.received_at, routed_json(r.routed_to),
                self.restored_at)

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
class Plan:
    """What one batch writes, beyond its events (see the module doc)."""

    replay: list  # [(account, highest_seq, tx_seq)], sorted by account
    restores: list  # [Restore] of alarms stored before the batch, in arrival order
    alarms: list  # [AlarmRow], in arrival order
    heard: list  # [(account, path, received_at)]
    _outcomes: list  # [(event_id, duplicate, index into alarms or None)]

    def outcomes(self, alarm_ids: Sequence[int]) -> list[IngestOutcome]:
        """One per record, given the ids the backend got for ``alarms``
        (same order)."""
        return [IngestOutcome(eid, dup, None if a is None else alarm_ids[a])
                for eid, dup, a in self._outcomes]


def plan(recs: Sequence[EventRecord], inserted: Mapping[Key, int],
         existing: Mapping[Key, int]) -> Plan:
    """The rows to write for ``recs`` once the backend inserted the
    :func:`candidates`: ``inserted`` {key: id} are new now, ``existing``
    {key: id} were stored before.  Raises ConflictVanished for a key in
    neither."""
    replay: dict = {}
    alarms: list = []
    restores: list = []
    outcomes: list = []
    seen: set = set()
    for r in recs:
        k = r.key
        if k in inserted and k not in seen:
            seen.add(k)
            eid = inserted[k]
            _replay(replay, r)
            a = None
            if r.open_alarm:
                a = len(alarms)
                alarms.append(AlarmRow(eid, r))
            elif r.qualifier == 3:
                restores.append(Restore(r.account, r.code, r.partition, r.zone,
                                        r.received_at))
                for al in alarms:
                    if al.restored_by(r):
                        al.restored_at = r.received_at
            outcomes.append((eid, False, a))
            continue
        eid = inserted.get(k) or existing.get(k)
        if eid is None:
            raise ConflictVanished("event %s/%s conflicted but is not there" % k)
        outcomes.append((eid, True, None))
    heard = [(r.account, r.path, r.received_at) for r in recs if r.source == "panel"]
    return Plan(sorted((a, h, t) for a, (h, t) in replay.items()), restores, alarms, heard,
                outcomes)


def _replay(replay: dict, r: EventRecord) -> None:
    if r.seq is not None and r.protocol == "native":
        h, t = replay.get(r.account, (0, 0))
        replay[r.account] = (max(h, r.seq), max(t, r.tx_seq or 0))

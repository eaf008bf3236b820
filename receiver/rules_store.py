"""The centre's rules in the store (issue 18), written once for both
backends: what the ingest plan reads and writes for the rules
(receiver.ingest), and the store's schedules, temporary changes, test
placements, zone holds, rules audit, periodic-test look-ups and report rows.

Each operation is a sans-I/O generator: it yields ``(sql, args)`` and is
sent back the rows (a list; ``RETURNING`` gives an UPDATE's rows), or
yields ``(sql, [args, ...], MANY)`` for one statement over many rows (sent
nothing back), and returns its result.  The SQL uses ``?`` placeholders
and only what SQLite and PostgreSQL both read; the backends drive a
generator inside a transaction of theirs (:func:`drive`, :func:`drive_async`,
:func:`pg_sql` numbers the placeholders for asyncpg), so the rules' rows
are read and written one way whatever the database.

Every change of a schedule, a temporary change, a placement or a hold
writes a ``rules_audit`` row (who, when, what as a sentence) in the same
transaction, and moves the ``rules_rev`` counter the scheduler watches
(receiver.rules_loop).  What is refused is refused before anything is
written, with a :class:`RulesError` in words.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import replace

from receiver import ingest, schema
from receiver.records import Alarm, Event, RulesAuditEntry, ZoneHold
from receiver.rules import hygiene, reports, schedules, testmode
from receiver.workflow import audit as _wf_audit
from receiver.workflow import steps as _steps

MANY = "many"


class RulesError(ValueError):
    """A change the rules refuse (no such schedule, an ended placement, a
    zone that is not held ...), in words for the person who asked."""


# -- drivers ------------------------------------------------------------------------------

_PG_CACHE: dict = {}


def pg_sql(sql: str) -> str:
    """``?`` placeholders as asyncpg's ``$1, $2 ...``."""
    out = _PG_CACHE.get(sql)
    if out is None:
        n = iter(range(1, 1000))
        out = _PG_CACHE[sql] = re.sub(r"\?", lambda m: "$%d" % next(n), sql)
    return out


def and_where(sql: str, args: list, conds) -> str:
    """``sql`` with `` AND cond`` for each (cond, value) of ``conds`` whose
    value is not None, the value appended to ``args`` (a ``?`` each: the
    SQLite backend's and this module's dialect; pg_sql numbers them)."""
    for cond, value in conds:
        if value is not None:
            sql += " AND " + cond
            args.append(value)
    return sql


def drive(conn, gen):
    """Run an operation on an SQLite connection; its result."""
    try:
        step = next(gen)
        while True:
            if len(step) == 3:
                conn.executemany(step[0], step[1])
                step = gen.send(None)
            else:
                step = gen.send(conn.execute(step[0], step[1]).fetchall())
    except StopIteration as e:
        return e.value


async def drive_async(conn, gen):
    """Run an operation on an asyncpg connection; its result."""
    try:
        step = next(gen)
        while True:
            if len(step) == 3:
                if step[1]:
                    await conn.executemany(pg_sql(step[0]), step[1])
                step = gen.send(None)
            else:
                step = gen.send(await conn.fetch(pg_sql(step[0]), *step[1]))
    except StopIteration as e:
        return e.value


def _utc(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t))


def _audit(at, actor, action, account, sentence, partition=None, zone=None):
    return ("""INSERT INTO rules_audit (at, actor, action, account, partition, zone, sentence)
               VALUES (?, ?, ?, ?, ?, ?, ?)""",
            (at, actor, action, account, partition, zone, sentence))


_BUMP = ("UPDATE meta SET value = value + 1 WHERE key = 'rules_rev' RETURNING value", ())


# -- the ingest plan's state and writes -----------------------------------------------------

_LIVE_PLACEMENTS = "SELECT * FROM test_placements WHERE ended_at IS NULL"
_ZONE_ALARMS = """SELECT created_at, code, event_class FROM alarms
                  WHERE account = ? AND zone = ? AND created_at > ?"""
_ZONE_RELEASED = """SELECT MAX(released_at) AS t FROM zone_holds
                    WHERE account = ? AND zone = ? AND released_at IS NOT NULL"""
_ZONE_HOLD = """SELECT id, alarm_id, signals FROM zone_holds
                WHERE account = ? AND zone = ? AND released_at IS NULL"""
_SITE_NEWEST = """SELECT a.incident_id, a.created_at,
                         CASE WHEN h.state = 'resolved' THEN 1 ELSE 0 END AS head_resolved
                  FROM alarms a JOIN alarms h ON h.id = a.incident_id
                  WHERE a.account = ? AND a.incident_id IS NOT NULL
                  ORDER BY a.created_at DESC, a.id DESC LIMIT 1"""
_STEPS = "SELECT * FROM alarm_steps WHERE alarm_id = ? ORDER BY position"
_RESTORABLE = """SELECT id, account, code, partition, zone, event_class, state, created_at,
                        handler
                 FROM alarms WHERE account = ? AND code = ? AND partition = ? AND zone = ?
                 AND state <> 'resolved' AND restored_at IS NULL ORDER BY id"""


def read_state(q: ingest.RulesQuery):
    """The rules' state for a batch (receiver.ingest.RulesQuery says what);
    the caller has locked ``q.lock`` where the database needs it."""
    st = ingest.RulesState()
    st.placements = [testmode.Placement.from_row(r) for r in (yield (_LIVE_PLACEMENTS, ()))]
    for account, zone, since in q.zones:
        rows = yield (_ZONE_ALARMS, (account, zone, since))
        released = (yield (_ZONE_RELEASED, (account, zone)))[0]["t"]
        hold = yield (_ZONE_HOLD, (account, zone))
        st.zones[(account, zone)] = ingest.zone_state(
            [(r["created_at"], r["code"], r["event_class"]) for r in rows], released,
            (hold[0]["alarm_id"], hold[0]["signals"]) if hold else None)
    for account in q.sites:
        rows = yield (_SITE_NEWEST, (account,))
        st.sites[account] = ingest.site_state(
            (rows[0]["incident_id"], rows[0]["created_at"], rows[0]["head_resolved"])
            if rows else None)
    for key in q.restores:
        for r in (yield (_RESTORABLE, key)):
            steps = tuple(_steps.from_row(s) for s in (yield (_STEPS, (r["id"],))))
            st.restorable.append(ingest.Restorable(**dict(r), steps=steps))
    return st


def write_plan(plan: ingest.Plan, alarm_ids):
    """What the rules add to a batch once its alarms are inserted (their
    ids ``alarm_ids``, the plan's order): incidents, new holds (audited),
    signals counted, events marked, alarms resolved by their restore
    (audited on the alarm; their open steps are skipped by the restore's
    follow-up, receiver.workflow_db.follow_up), alarms a restore left open
    (audited with why).  Returns nothing."""
    yield ("UPDATE alarms SET incident_id = ? WHERE id = ?",
           [(inc, aid) for aid, inc in plan.incidents(alarm_ids)], MANY)
    for h in plan.holds:
        anchor = plan.alarm_id(h.anchor, alarm_ids)
        yield ("""INSERT INTO zone_holds (account, zone, alarm_id, since, reason)
                  VALUES (?, ?, ?, ?, ?) RETURNING id""",
               (h.account, h.zone, anchor, h.since, h.reason))
        yield _audit(h.since, "receiver", "zone.hold", h.account,
                     "Zone %d of account %s held by the receiver: %s (alarm #%d)."
                     % (h.zone, h.account, h.reason.split(": ", 1)[-1], anchor), zone=h.zone)
    yield ("""UPDATE zone_holds SET signals = signals + ?,
              last_signal_at = CASE WHEN last_signal_at IS NULL OR last_signal_at < ?
                               THEN ? ELSE last_signal_at END
              WHERE account = ? AND zone = ? AND released_at IS NULL""",
           [(n, t, t, a, z) for a, z, n, t in plan.hold_signals], MANY)
    yield ("UPDATE events SET test_placement = ?, attached_to = ? WHERE id = ?",
           [(tp, None if att is None else plan.alarm_id(att, alarm_ids), eid)
            for eid, tp, att in plan.marks], MANY)
    for r in plan.resolves:
        aid = plan.alarm_id(r.alarm, alarm_ids)
        done = yield ("""UPDATE alarms SET state = 'resolved', resolved_by = 'receiver',
                         resolved_at = ?, note = ?, disposition = ?
                         WHERE id = ? AND state = ? AND handler IS NULL RETURNING id""",
                      (r.at, r.note, hygiene.RESTORED, aid, r.from_state))
        if done:
            yield ("""INSERT INTO alarm_audit (alarm_id, at, from_state, to_state, actor, note)
                      VALUES (?, ?, ?, 'resolved', 'receiver', ?)""",
                   (aid, r.at, r.from_state, r.note))
            yield from _release_with(aid, r.at, "receiver")
    for lo in plan.left_open:  # the restore is stamped; why the policy did not close it
        yield ("""INSERT INTO alarm_audit (alarm_id, at, from_state, to_state, actor, note,
                                          action, detail)
                  SELECT id, CAST(? AS DOUBLE PRECISION), state, state, 'receiver', NULL,
                         CAST(? AS TEXT), CAST(? AS TEXT)
                    FROM alarms WHERE id = ?""",
               (lo.at, _wf_audit.RESTORE_LEFT_OPEN,
                json.dumps({"event_id": lo.event_id, "left_open": lo.why}), lo.alarm_id))


def _release_with(alarm_id: int, at: float, by: str):
    """Release the hold anchored on an alarm that is resolved: its zone
    counts afresh (a resolved anchor must not swallow what comes next)."""
    rows = yield ("""UPDATE zone_holds SET released_at = ?, released_by = ?
                     WHERE alarm_id = ? AND released_at IS NULL
                     RETURNING account, zone, signals""", (at, by, alarm_id))
    for r in rows:
        yield _audit(at, by, "zone.release", r["account"],
                     "Zone %d of account %s released with the resolution of alarm #%d by %s, "
                     "after %s." % (r["zone"], r["account"], alarm_id,
                                    "the receiver" if by == "receiver" else by,
                                    hygiene.signals_sentence(r["zone"], r["signals"])
                                    .split(": ", 1)[1]), zone=r["zone"])


def resolved(alarm_id: int, at: float, by: str):
    """An alarm was resolved (receiver.workflow_db.resolve runs this in the
    same transaction): a hold it anchors is released, audited."""
    yield from _release_with(alarm_id, at, by)


# -- schedules --------------------------------------------------------------------------------


def rules_revision():
    return (yield ("SELECT value FROM meta WHERE key = 'rules_rev'", ()))[0]["value"]


def _schedule_row(r) -> schedules.Schedule:
    return schedules.Schedule.from_dict(json.loads(r["doc"]))


def list_schedules(account: str | None = None):
    if account is None:
        rows = yield ("SELECT doc FROM schedules ORDER BY account, partition", ())
    else:
        rows = yield ("SELECT doc FROM schedules WHERE account = ? ORDER BY partition",
                      (account,))
    return [_schedule_row(r) for r in rows]


def set_schedule(s: schedules.Schedule, by: str, at: float):
    """Store (or replace) a partition's schedule; audited."""
    if not by:
        raise RulesError("who sets the schedule is required")
    if not (yield ("SELECT 1 FROM accounts WHERE number = ?", (s.account,))):
        raise RulesError("no account %s: add the account before its schedule" % s.account)
    doc = json.dumps(s.to_dict(), sort_keys=True)
    old = yield ("SELECT doc FROM schedules WHERE account = ? AND partition = ?",
                 (s.account, s.partition))
    if old and old[0]["doc"] == doc:
        return False
    if old:
        yield ("""UPDATE schedules SET doc = ?, updated_at = ?, updated_by = ?
                  WHERE account = ? AND partition = ?""", (doc, at, by, s.account, s.partition))
    else:
        yield ("""INSERT INTO schedules (account, partition, doc, updated_at, updated_by)
                  VALUES (?, ?, ?, ?, ?)""", (s.account, s.partition, doc, at, by))
    yield _audit(at, by, "schedule.set", s.account, "Schedule of partition %d of account %s "
                 "set by %s: %s." % (s.partition, s.account, by, s.words()),
                 partition=s.partition)
    yield _BUMP
    return True


def delete_schedule(account: str, partition: int, by: str, at: float):
    if not by:
        raise RulesError("who removes the schedule is required")
    if not (yield ("DELETE FROM schedules WHERE account = ? AND partition = ? RETURNING 1",
                   (account, partition))):
        raise RulesError("partition %d of account %s has no schedule" % (partition, account))
    yield _audit(at, by, "schedule.delete", account, "Schedule of partition %d of account %s "
                 "removed by %s." % (partition, account, by), partition=partition)
    yield _BUMP


def add_schedule_change(c: schedules.TemporaryChange):
    """Store a temporary change (checked against the partition's schedule);
    audited.  Returns it with its id."""
    rows = yield ("SELECT doc FROM schedules WHERE account = ? AND partition = ?",
                  (c.account, c.partition))
    if not rows:
        raise RulesError("partition %d of account %s has no schedule to change"
                         % (c.partition, c.account))
    c.check(_schedule_row(rows[0]))
    [row] = yield ("""INSERT INTO schedule_changes (account, partition, day, plan, created_at,
                      expires_at, created_by, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                      RETURNING id""",
                   (c.account, c.partition, c.day.isoformat(),
                    json.dumps(c.plan.to_dict(), sort_keys=True), c.created_at, c.expires_at,
                    c.by, c.reason))
    c = replace(c, id=row["id"])
    yield _audit(c.created_at, c.by, "schedule.change", c.account, "Hours of %s changed by %s "
                 "to %s, until %s%s." % (c.where(), c.by, c.plan.words(), _utc(c.expires_at),
                                         ": " + c.reason if c.reason else ""),
                 partition=c.partition)
    yield _BUMP
    return c


def cancel_schedule_change(change_id: int, by: str, at: float):
    """End a temporary change now; audited.  Refused for one that is no
    longer in force."""
    if not by:
        raise RulesError("who cancels the change is required")
    rows = yield ("SELECT * FROM schedule_changes WHERE id = ?", (change_id,))
    if not rows:
        raise RulesError("no schedule change %d" % change_id)
    c = schedules.TemporaryChange.from_row(rows[0])
    if not c.in_force(at) and c.created_at <= at:
        raise RulesError("schedule change %d is no longer in force (it %s)" % (
            change_id, "was cancelled by %s" % c.cancelled_by if c.cancelled_by
            else "expired at %s" % _utc(c.expires_at)))
    end = max(at, c.created_at)
    yield ("""UPDATE schedule_changes SET expires_at = ?, cancelled_at = ?, cancelled_by = ?
              WHERE id = ?""", (end, at, by, change_id))
    yield _audit(at, by, "schedule.cancel", c.account, "Change #%d of the hours of %s "
                 "cancelled by %s." % (change_id, c.where(), by), partition=c.partition)
    yield _BUMP
    return replace(c, expires_at=end, cancelled_at=at, cancelled_by=by)


def list_schedule_changes(account: str | None = None, since: float | None = None):
    """Temporary changes (of ``account``) that expire after ``since`` (all
    with None), oldest first."""
    args: list = []
    sql = and_where("SELECT * FROM schedule_changes WHERE 1 = 1", args,
                    (("account = ?", account), ("expires_at > ?", since)))
    rows = yield (sql + " ORDER BY id", tuple(args))
    return [schedules.TemporaryChange.from_row(r) for r in rows]


def open_close_history(account: str, partition: int, since: float):
    """The partition's arm/disarm reports (partition 0 counts for every
    partition) received from ``since`` on, and the last one before it (the
    state the first day starts in), oldest first."""
    pred = schema.open_close_predicate()
    cols = "received_at, partition, code, qualifier, user_number"
    before = yield ("""SELECT %s FROM events WHERE account = ? AND %s AND partition IN (0, ?)
                       AND received_at < ? ORDER BY received_at DESC, id DESC LIMIT 1"""
                    % (cols, pred), (account, partition, since))
    rows = yield ("""SELECT %s FROM events WHERE account = ? AND %s AND partition IN (0, ?)
                     AND received_at >= ? ORDER BY received_at, id""" % (cols, pred),
                  (account, partition, since))
    out = []
    for r in list(before) + list(rows):
        armed = schedules.arm_state(r["code"], r["qualifier"])
        if armed is not None:
            out.append(schedules.OpenClose(r["received_at"], r["partition"], armed,
                                           r["user_number"]))
    return out


# -- test placements -------------------------------------------------------------------------


def place_on_test(p: testmode.Placement, now: float):
    """Store a placement (checked: testmode.Placement.check); audited.
    Returns it with its id."""
    p.check(now)
    if not (yield ("SELECT 1 FROM accounts WHERE number = ?", (p.account,))):
        raise RulesError("no account %s" % p.account)
    [row] = yield ("""INSERT INTO test_placements (account, partition, zone, starts_at,
                      ends_at, reason, placed_by) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id""",
                   (p.account, p.partition, p.zone, p.starts_at, p.ends_at, p.reason, p.by))
    p = replace(p, id=row["id"])
    yield _audit(now, p.by, "test.place", p.account, p.place_sentence(), p.partition, p.zone)
    yield _BUMP
    return p


def end_test_placement(placement_id: int, by: str, at: float):
    """End a placement (``by`` 'receiver': its time was up, at its end
    time); audited once, whoever ends it first.  None when it had ended."""
    rows = yield ("""UPDATE test_placements SET ended_at = CASE WHEN ends_at < ? THEN ends_at
                     ELSE ? END, ended_by = ? WHERE id = ? AND ended_at IS NULL RETURNING *""",
                  (at, at, by, placement_id))
    if not rows:
        if not (yield ("SELECT 1 FROM test_placements WHERE id = ?", (placement_id,))):
            raise RulesError("no test placement %d" % placement_id)
        return None
    p = testmode.Placement.from_row(rows[0])
    yield _audit(at, by, "test.end", p.account, testmode.end_sentence(p), p.partition, p.zone)
    yield _BUMP
    return p


def list_test_placements(live: bool = True, account: str | None = None,
                         limit: int = 1000):
    args: list = []
    sql = and_where("SELECT * FROM test_placements WHERE %s" % (
        "ended_at IS NULL" if live else "1 = 1"), args, (("account = ?", account),))
    args.append(limit)
    rows = yield (sql + " ORDER BY ends_at, id LIMIT ?" if live
                  else sql + " ORDER BY id DESC LIMIT ?", tuple(args))
    return [testmode.Placement.from_row(r) for r in rows]


# -- zone holds -------------------------------------------------------------------------------


def list_zone_holds(live: bool = True, account: str | None = None, limit: int = 1000):
    args: list = []
    sql = and_where("SELECT * FROM zone_holds WHERE %s" % (
        "released_at IS NULL" if live else "1 = 1"), args, (("account = ?", account),))
    args.append(limit)
    return [ZoneHold.from_row(r) for r in (yield (sql + " ORDER BY id DESC LIMIT ?",
                                                  tuple(args)))]


def release_zone(account: str, zone: int, by: str, at: float):
    """An operator releases a held zone: it counts afresh; audited."""
    if not by:
        raise RulesError("who releases the zone is required")
    rows = yield ("""UPDATE zone_holds SET released_at = ?, released_by = ?
                     WHERE account = ? AND zone = ? AND released_at IS NULL RETURNING *""",
                  (at, by, account, zone))
    if not rows:
        raise RulesError("zone %d of account %s is not held" % (zone, account))
    h = ZoneHold.from_row(rows[0])
    yield _audit(at, by, "zone.release", account, "Zone %d of account %s released by %s after "
                 "%s (alarm #%d)." % (zone, account, by, hygiene.signals_sentence(
                     zone, h.signals).split(": ", 1)[1], h.alarm_id), zone=zone)
    yield _BUMP
    return h


def list_rules_audit(account: str | None = None, since: float | None = None,
                     limit: int = 500):
    """The rules' audit rows, newest first."""
    args: list = []
    sql = and_where("SELECT * FROM rules_audit WHERE 1 = 1", args,
                    (("account = ?", account), ("at >= ?", since)))
    args.append(limit)
    rows = yield (sql + " ORDER BY id DESC LIMIT ?", tuple(args))
    return [RulesAuditEntry.from_row(r) for r in rows]


# -- what the console shows beside an alarm ------------------------------------------------------


def incident_members(incident_id: int):
    """The alarms of an incident, oldest first (the head first)."""
    rows = yield ("SELECT * FROM alarms WHERE incident_id = ? ORDER BY created_at, id",
                  (incident_id,))
    return [Alarm.from_row(r) for r in rows]


def attached_events(alarm_id: int, limit: int = 50):
    """(count, first, last, [the newest ``limit`` events]) counted on a
    held zone's anchor alarm."""
    [agg] = yield ("""SELECT COUNT(*) AS n, MIN(received_at) AS first, MAX(received_at) AS last
                      FROM events WHERE attached_to = ?""", (alarm_id,))
    rows = yield ("SELECT * FROM events WHERE attached_to = ? ORDER BY id DESC LIMIT ?",
                  (alarm_id, limit))
    return agg["n"], agg["first"], agg["last"], [Event.from_row(r) for r in rows]


# -- periodic tests ----------------------------------------------------------------------------


def last_test_reports(accounts):
    """{account: received_at of its latest periodic test report (602/608)},
    as the ingest keeps it on the account (receiver.ingest)."""
    out = {}
    for a in accounts:
        rows = yield ("SELECT last_test_at FROM accounts WHERE number = ?", (a,))
        if rows and rows[0]["last_test_at"] is not None:
            out[a] = rows[0]["last_test_at"]
    return out


def periodic_failed(accounts):
    """{account: when raised} of accounts whose latest 358 is a failure."""
    out = {}
    for a in accounts:
        rows = yield ("""SELECT qualifier, received_at FROM events
                         WHERE account = ? AND source = 'periodic' ORDER BY id DESC LIMIT 1""",
                      (a,))
        if rows and rows[0]["qualifier"] == 1:
            out[a] = rows[0]["received_at"]
    return out


# -- reports ---------------------------------------------------------------------------------------

def report_rows(start: float, end: float):
    """(AlarmFact list, EventFact list) for alarms raised and receiver
    events received in [start, end); an alarm's fact has its first patrol
    dispatched and first on scene (issue 19)."""
    rows = yield ("""SELECT a.id, a.account, COALESCE(ac.site_name, '') AS site,
                            COALESCE(ac.region, '') AS region, a.event_class, a.priority,
                            a.code, a.created_at, a.acknowledged_at, a.acknowledged_by,
                            a.resolved_at, a.resolved_by, a.note, a.disposition,
                            (SELECT MIN(d.dispatched_at) FROM dispatches d
                             WHERE d.alarm_id = a.id) AS patrol_dispatched_at,
                            (SELECT MIN(d.arrived_at) FROM dispatches d
                             WHERE d.alarm_id = a.id) AS patrol_arrived_at,
                            a.disposition_category
                     FROM alarms a LEFT JOIN accounts ac ON ac.number = a.account
                     WHERE a.created_at >= ? AND a.created_at < ? ORDER BY a.id""",
                  (start, end))
    alarms = [reports.AlarmFact(**dict(r)) for r in rows]
    rows = yield ("""SELECT e.account, COALESCE(ac.site_name, '') AS site,
                            COALESCE(ac.region, '') AS region, e.code, e.qualifier,
                            e.received_at, e.source
                     FROM events e LEFT JOIN accounts ac ON ac.number = e.account
                     WHERE %s AND e.received_at >= ? AND e.received_at < ?
                     ORDER BY e.id""" % schema.report_predicate().replace("code", "e.code"),
                  (start, end))
    return alarms, [reports.EventFact(**dict(r)) for r in rows]


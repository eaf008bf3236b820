"""The operator's workflow in the store: every read and every
compare-and-set write, written once for both backends.

The cores (receiver.workflow) decide from what was read and return typed
changes; the functions here apply them inside one transaction
(``Store.transact``; reads: ``Store.read``) over a :class:`receiver.store.Tx`,
whose statements name their parameters (``:name``) so SQLite and PostgreSQL
run the same text.  Each write goes with its audit rows, in the same
transaction.

The compare-and-set, for every action a person takes on an alarm (the
claim's revision, receiver.workflow.claims)::

    UPDATE alarms SET ... WHERE id = :id AND claim_rev = :rev AND state <> 'resolved'

An implicit claim (acting on an alarm nobody handles) moves ``claim_rev``
on; any other action rewrites it unchanged (``claim_rev = claim_rev``), so
the row is locked for the rest of the transaction on PostgreSQL and a
take-over racing with the action waits for it and then sees it.  No row
matched: :class:`receiver.store.RowMoved` is raised, everything the
transaction wrote is rolled back, and the caller reads again and decides
again (receiver.workflow_service).  Steps move only from the state they were
read in (``AND state = :before``); a passcode's call row only when the
wrong tries counted are still the ones the check was decided from; an
escalation only while its stamp is unset (receiver.workflow.escalation:
every receiver may run the scheduler, each escalation fires once).

At ingest (receiver.ingest plans them, the backends run them in the
ingest transaction, before the ACK): a CP-01 cancel (406) is attached to
the alarms it cancels and may close them (:func:`cancel`), a recent
closing (459) to the alarm it follows (:func:`recent_close`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from receiver import alarms as _alarms
from receiver import ingest, rules_store
from receiver.records import Alarm, AuditEntry, EventRecord
from receiver.rules import hygiene
from receiver.store import RowMoved, Tx
from receiver.workflow import audit as _audit
from receiver.workflow import claims as _claims
from receiver.workflow import contacts as _contacts
from receiver.workflow import escalation as _escalation
from receiver.workflow import handling as _handling
from receiver.workflow import notes as _notes
from receiver.workflow import steps as _steps
from receiver.workflow.common import ActionRefused, NotFound
from receiver.workflow import dispositions as _dispositions

# Burglary and tamper: the classes a CP-01 cancel may cancel
# (docs/firmware.md, "Cancel, and how a receiver matches it").
CANCELLABLE_CLASSES = ("burglary", "tamper")
_CLASSES_SQL = ", ".join("'%s'" % c for c in CANCELLABLE_CLASSES)
# Opening reports (DC-05 qualifier 1 of 401, 403, 407): a cancel's span
# starts after the latest one of its partition.
OPENING_CODES = (401, 403, 407)
# A 459 follows its alarm at once (held with it, docs/firmware.md "Recent
# closing"); one further apart than the firmware's longest recent_close_s
# belongs to no alarm the receiver has.
RECENT_CLOSE_MAX_S = 600


def _json(d) -> str:
    return json.dumps(d, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _claim_of(a: Alarm) -> _claims.Claim:
    return _claims.Claim(a.handler, a.handler_since, a.claim_rev)


# -- the alarm and its rows -------------------------------------------------------------


@dataclass(frozen=True)
class AlarmWork:
    """An alarm as the workflow reads it: its row, its steps and calls, and
    its trail, from one snapshot."""

    alarm: Alarm
    steps: tuple  # StepRecords, in plan order
    calls: tuple  # CallRecords, oldest first
    trail: tuple = ()  # AuditEntries, oldest first

    @property
    def claim(self) -> _claims.Claim:
        return _claim_of(self.alarm)

    def step(self, position: int) -> _steps.StepRecord | None:
        for s in self.steps:
            if s.position == position:
                return s
        return None


def call_from_row(r) -> _contacts.CallRecord:
    return _contacts.CallRecord(r["alarm_id"], r["at"], r["actor"], r["contact"], r["phone"],
                                r["outcome"])


async def get_alarm(tx: Tx, alarm_id: int) -> Alarm | None:
    r = await tx.row("SELECT * FROM alarms WHERE id = :id", id=alarm_id)
    return None if r is None else Alarm.from_row(r)


async def alarm_work(tx: Tx, alarm_id: int, trail: bool = False) -> AlarmWork | None:
    """The alarm, its steps and calls (and its trail), or None."""
    a = await get_alarm(tx, alarm_id)
    if a is None:
        return None
    steps = tuple(_steps.from_row(r) for r in await tx.rows(
        "SELECT * FROM alarm_steps WHERE alarm_id = :id ORDER BY position", id=alarm_id))
    calls = tuple(call_from_row(r) for r in await tx.rows(
        "SELECT * FROM alarm_calls WHERE alarm_id = :id ORDER BY id", id=alarm_id))
    rows = ()
    if trail:
        rows = tuple(AuditEntry.from_row(r) for r in await tx.rows(
            "SELECT * FROM alarm_audit WHERE alarm_id = :id ORDER BY id", id=alarm_id))
    return AlarmWork(a, steps, calls, rows)


async def _audit_row(tx: Tx, rec: _audit.AuditRecord, alarm_id: int,
                     note: str | None = None) -> None:
    """A workflow row of the alarm's trail (it keeps the alarm's state)."""
    await tx.run(
        """INSERT INTO alarm_audit (alarm_id, at, from_state, to_state, actor, note, action,
                                    detail)
           SELECT id, CAST(:at AS DOUBLE PRECISION), state, state, CAST(:actor AS TEXT),
                  CAST(:note AS TEXT), CAST(:action AS TEXT), CAST(:detail AS TEXT)
             FROM alarms WHERE id = :id""",
        id=alarm_id, at=rec.at, actor=rec.actor, note=note, action=rec.action,
        detail=_json(rec.detail))


async def _hold(tx: Tx, alarm_id: int, auth: _claims.Authorization) -> None:
    """The claim part of an action: the implicit claim when the alarm was
    unclaimed, else the row held at the revision the action was decided
    from.  RowMoved when the claim moved meanwhile."""
    if auth.claim is not None:
        await apply_claim(tx, alarm_id, auth.claim)
        return
    n = await tx.run("""UPDATE alarms SET claim_rev = claim_rev
                        WHERE id = :id AND claim_rev = :rev AND state <> 'resolved'""",
                     id=alarm_id, rev=auth.expect_rev)
    if n != 1:
        raise RowMoved("alarm %d changed hands" % alarm_id)


async def apply_claim(tx: Tx, alarm_id: int, ch: _claims.ClaimChange) -> Alarm:
    """A claim, take-over or release, with its audit row; the alarm after."""
    n = await tx.run("""UPDATE alarms SET handler = :handler, handler_since = :since,
                               claim_rev = :rev + 1
                        WHERE id = :id AND claim_rev = :rev AND state <> 'resolved'""",
                     id=alarm_id, handler=ch.after.handler, since=ch.after.since,
                     rev=ch.expect_rev)
    if n != 1:
        raise RowMoved("alarm %d changed hands" % alarm_id)
    await _audit_row(tx, ch.audit, alarm_id)
    a = await get_alarm(tx, alarm_id)
    assert a is not None
    return a


async def acknowledge(tx: Tx, alarm_id: int, auth: _claims.Authorization, actor: str,
                      at: float) -> Alarm:
    """Acknowledge (receiver.workflow.handling.acknowledge: it takes the alarm)."""
    await _hold(tx, alarm_id, auth)
    n = await tx.run("""UPDATE alarms SET state = 'acknowledged', acknowledged_by = :actor,
                               acknowledged_at = :at
                        WHERE id = :id AND state = 'pending' AND claim_rev = :rev""",
                     id=alarm_id, actor=actor, at=at, rev=auth.expect_rev)
    if n != 1:
        raise RowMoved("alarm %d is no longer pending" % alarm_id)
    await tx.run("""INSERT INTO alarm_audit (alarm_id, at, from_state, to_state, actor, note)
                    VALUES (:id, :at, 'pending', 'acknowledged', :actor, NULL)""",
                 id=alarm_id, at=at, actor=actor)
    a = await get_alarm(tx, alarm_id)
    assert a is not None
    return a


async def _apply_step(tx: Tx, change: _steps.StepChange, alarm_id: int) -> None:
    after, before = change.after, change.before
    n = await tx.run("""UPDATE alarm_steps SET state = :after, reason = :reason,
                               changed_by = :actor, changed_at = :at,
                               started_at = :started_at, due_at = :due_at
                        WHERE alarm_id = :id AND position = :position AND state = :before""",
                     id=alarm_id, position=before.position, before=before.state,
                     after=after.state, reason=after.reason, actor=after.changed_by,
                     at=after.changed_at, started_at=after.started_at, due_at=after.due_at)
    if n != 1:
        raise RowMoved("step %d of alarm %d moved" % (before.position, alarm_id))
    await _audit_row(tx, change.audit, alarm_id)


async def act_on_step(tx: Tx, alarm_id: int, action: _handling.StepAction) -> None:
    await _hold(tx, alarm_id, action.authorization)
    await _apply_step(tx, action.change, alarm_id)


async def record_call(tx: Tx, alarm_id: int, result: _handling.CallResult,
                      wrong_tries: int | None = None) -> int:
    """A call and its effects (a passcode step completed, the duress audit);
    ``wrong_tries``: for a checked passcode, the wrong tries of its contact
    the check was decided from (RowMoved when another check counted one
    meanwhile).  The call's id."""
    await _hold(tx, alarm_id, result.authorization)
    c = result.call
    if wrong_tries is not None:
        n = await tx.value("""SELECT COUNT(*) FROM alarm_calls WHERE alarm_id = :id
                              AND contact = :contact AND outcome = 'passcode_wrong'""",
                           id=alarm_id, contact=c.contact)
        if n != wrong_tries:
            raise RowMoved("another passcode of %s was checked meanwhile" % c.contact)
    call_id = await tx.value("""INSERT INTO alarm_calls (alarm_id, at, actor, contact, phone,
                                                         outcome)
                                VALUES (:id, :at, :actor, :contact, :phone, :outcome)
                                RETURNING id""",
                             id=alarm_id, at=c.at, actor=c.by, contact=c.contact,
                             phone=c.phone, outcome=c.outcome)
    # the claim's audit row went with _hold; then the call's, then its effects
    for rec in result.audit:
        if rec.action in (_audit.CLAIM, _audit.STEP_COMPLETE):
            continue
        await _audit_row(tx, rec, alarm_id)
    if result.step_change is not None:
        await _apply_step(tx, result.step_change, alarm_id)
    assert call_id is not None  # INSERT ... RETURNING gives its row
    return call_id


async def resolve(tx: Tx, alarm_id: int, closing: _handling.Closing, expect_rev: int,
                  nobody_handles: bool = False) -> Alarm:
    """Resolve with a disposition (a person's: ``closing.authorization``;
    the receiver's own: ``nobody_handles``, and its skipped steps)."""
    if closing.authorization is not None:
        await _hold(tx, alarm_id, closing.authorization)
        expect_rev = closing.authorization.expect_rev
    for ch in closing.step_changes:
        await _apply_step(tx, ch, alarm_id)
    cols = closing.columns()
    before = await tx.value("SELECT state FROM alarms WHERE id = :id", id=alarm_id)
    n = await tx.run(
        """UPDATE alarms SET state = 'resolved', resolved_by = :actor, resolved_at = :at,
                  note = :note, disposition = :code, disposition_label = :label,
                  disposition_category = :category, override_reason = :override_reason
           WHERE id = :id AND state <> 'resolved' AND claim_rev = :rev
             AND (handler IS NULL OR :anyone = 1)""",
        id=alarm_id, actor=closing.actor, at=closing.at, note=cols["note"],
        code=closing.disposition.code, label=closing.disposition.label,
        category=closing.disposition.category, override_reason=cols["override_reason"],
        rev=expect_rev, anyone=0 if nobody_handles else 1)
    if n != 1:
        raise RowMoved("alarm %d moved" % alarm_id)
    rec = closing.audit[-1]
    await tx.run("""INSERT INTO alarm_audit (alarm_id, at, from_state, to_state, actor, note,
                                             action, detail)
                    VALUES (:id, :at, :before, 'resolved', :actor, :note, :action, :detail)""",
                 id=alarm_id, at=rec.at, before=before, actor=rec.actor, note=cols["note"],
                 action=rec.action, detail=_json(rec.detail))
    # a zone hold the alarm anchors is released with it (issue 18), audited
    await tx.drive(rules_store.resolved(alarm_id, closing.at, closing.actor))
    a = await get_alarm(tx, alarm_id)
    assert a is not None
    return a


# -- escalation ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Timers:
    """What the escalation scheduler reads: the open alarms' timer columns
    and the started wait steps, with each alarm's account (who runs it on
    PostgreSQL: receiver.workflow_loop)."""

    alarms: tuple = ()  # escalation.AlarmTimers
    waits: tuple = ()  # escalation.WaitTimer
    accounts: dict = field(default_factory=dict)  # alarm id -> account


async def timers(tx: Tx) -> Timers:
    rows = await tx.rows(
        """SELECT id, account, state, ack_due_at, resolve_due_at, ack_within_s,
                  resolve_within_min, ack_escalated_at, resolve_escalated_at
             FROM alarms WHERE state <> 'resolved' AND ack_due_at IS NOT NULL""")
    waits = await tx.rows(
        """SELECT s.alarm_id, s.position, s.title, s.params, s.state, s.due_at, s.reminded_at,
                  a.state AS alarm_state, a.account
             FROM alarm_steps s JOIN alarms a ON a.id = s.alarm_id
            WHERE s.state = 'waiting' AND s.reminded_at IS NULL AND a.state <> 'resolved'""")
    accounts = {r["id"]: r["account"] for r in rows}
    accounts.update((r["alarm_id"], r["account"]) for r in waits)
    return Timers(
        tuple(_escalation.AlarmTimers(r["id"], r["state"], r["ack_due_at"], r["resolve_due_at"],
                                      r["ack_within_s"] or 0, r["resolve_within_min"] or 0,
                                      r["ack_escalated_at"], r["resolve_escalated_at"])
              for r in rows),
        tuple(_escalation.WaitTimer(r["alarm_id"], r["position"], r["title"],
                                    int(json.loads(r["params"] or "{}").get("minutes", 0)),
                                    r["alarm_state"], r["state"], r["due_at"], r["reminded_at"])
              for r in waits),
        accounts)


async def stamp(tx: Tx, e: _escalation.Escalation, at: float,
                notify: tuple | None = None) -> bool:
    """Fire escalation ``e`` once: its stamp, its audit row and (``notify``:
    (output, payload)) an outbox row, or nothing when another run (another
    receiver) stamped it or its condition ended."""
    if e.kind == _escalation.ACK:
        n = await tx.run("""UPDATE alarms SET ack_escalated_at = :at WHERE id = :id
                            AND state = 'pending' AND ack_escalated_at IS NULL""",
                         id=e.alarm_id, at=at)
    elif e.kind == _escalation.RESOLVE:
        n = await tx.run("""UPDATE alarms SET resolve_escalated_at = :at WHERE id = :id
                            AND state <> 'resolved' AND resolve_escalated_at IS NULL""",
                         id=e.alarm_id, at=at)
    else:
        n = await tx.run("""UPDATE alarm_steps SET reminded_at = :at
                            WHERE alarm_id = :id AND position = :position
                              AND state = 'waiting' AND reminded_at IS NULL
                              AND EXISTS (SELECT 1 FROM alarms WHERE id = :id
                                          AND state <> 'resolved')""",
                         id=e.alarm_id, position=e.position, at=at)
    if n != 1:
        return False
    await _audit_row(tx, e.audit(at), e.alarm_id)
    if notify is not None:
        output, payload = notify
        await tx.run("""INSERT INTO outbox (output, alarm_id, payload, created_at)
                        VALUES (:output, :id, :payload, :at)""",
                     output=output, id=e.alarm_id, payload=_json(payload), at=at)
    return True


async def supervisor_queue(tx: Tx, limit: int) -> list[Alarm]:
    """Open alarms not resolved in time (moved to the supervisor queue),
    oldest deadline first."""
    return [Alarm.from_row(r) for r in await tx.rows(
        """SELECT * FROM alarms WHERE state <> 'resolved' AND resolve_escalated_at IS NOT NULL
           ORDER BY resolve_due_at, id LIMIT :limit""", limit=limit)]


async def escalated(tx: Tx, limit: int) -> list[Alarm]:
    """Alarms still pending past their acknowledgement deadline, stamped by
    the scheduler: the console's alert for everyone (a state, so a console
    that missed the live message still shows it)."""
    return [Alarm.from_row(r) for r in await tx.rows(
        """SELECT * FROM alarms WHERE state = 'pending' AND ack_escalated_at IS NOT NULL
           ORDER BY priority, ack_due_at, id LIMIT :limit""", limit=limit)]


# -- at ingest: what the panel says after an alarm (issue 22) ------------------------------


def _order_column(rec: EventRecord) -> str:
    """How the cancel rule orders a panel's reports: by the panel's own
    sequence (native: it never repeats within a queue), else by arrival."""
    return "seq" if rec.protocol == "native" and rec.seq is not None else "id"


async def cancel(tx: Tx, rec: EventRecord, event_id: int,
                 close_with: _dispositions.Dispositions | None) -> list[int]:
    """A 406 cancel (qualifier 1) stored as ``event_id``: attach it to the
    alarms it cancels (docs/firmware.md: the partition's burglary and
    tamper alarms whose report lies between the partition's latest opening
    before the 406 and the 406), and close each that nobody works with
    ``close_with``'s disposition for a user's cancel (None: attach only).
    The alarms it touched."""
    col = _order_column(rec)
    here = rec.seq if col == "seq" else event_id
    lo = await tx.value(
        """SELECT MAX(%s) FROM events WHERE account = :account AND partition = :partition
           AND qualifier = 1 AND code IN (%s) AND %s < :here"""
        % (col, ", ".join(str(c) for c in OPENING_CODES), col),
        account=rec.account, partition=rec.partition, here=here)
    rows = await tx.rows(
        """SELECT a.id, a.created_at, e.event_time FROM alarms a JOIN events e
               ON e.id = a.event_id
            WHERE a.account = :account AND a.partition = :partition
              AND a.event_class IN (%s) AND a.cancel_event_id IS NULL
              AND e.%s > :lo AND e.%s < :here
            ORDER BY a.id""" % (_CLASSES_SQL, col, col),
        account=rec.account, partition=rec.partition, lo=lo if lo is not None else -1,
        here=here)
    touched = []
    at = rec.event_time or rec.received_at
    for r in rows:
        after = max(0.0, at - (r["event_time"] or r["created_at"]))
        await tx.run("""UPDATE alarms SET cancel_event_id = :event_id, cancel_user = :user,
                               cancelled_at = :at, cancel_after_s = :after
                        WHERE id = :id""",
                     id=r["id"], event_id=event_id, user=rec.user, at=rec.received_at,
                     after=after)
        detail: dict = {"user": rec.user, "after_s": round(after, 1), "event_id": event_id}
        left_open = None
        if close_with is not None:
            left_open = await _close_cancelled(tx, r["id"], close_with, rec.received_at)
            if left_open:
                detail["left_open"] = left_open
        await _audit_row(tx, _audit.AuditRecord(r["id"], rec.received_at, _audit.RECEIVER,
                                                _audit.CANCEL, detail), r["id"])
        touched.append(r["id"])
    return touched


async def _close_cancelled(tx: Tx, alarm_id: int, ds: _dispositions.Dispositions,
                           at: float) -> str | None:
    """Close a cancelled alarm when nobody works it; why not, otherwise."""
    work = await alarm_work(tx, alarm_id)
    assert work is not None
    got = _handling.auto_close(alarm_id, work.alarm.state, work.claim, work.steps, ds,
                               "cancelled_by_user", at)
    if got.closing is None:
        return None if work.alarm.state == _alarms.RESOLVED else got.why_not
    await resolve(tx, alarm_id, got.closing, work.alarm.claim_rev, nobody_handles=True)
    return None


async def _skip_moot_steps(tx: Tx, event_id: int) -> None:
    """The alarms restore ``event_id`` resolved by policy (receiver.ingest
    decided: nobody began their plan, handling.auto_close's rule) keep no
    open step: each is skipped by the receiver, with why, as auto_close
    does for a panel's cancel."""
    for r in await tx.rows("""SELECT id, resolved_at FROM alarms
                              WHERE restore_event_id = :event_id AND state = 'resolved'
                                AND resolved_by = :receiver AND disposition = :restored
                              ORDER BY id""",
                           event_id=event_id, receiver=_audit.RECEIVER,
                           restored=hygiene.RESTORED):
        work = await alarm_work(tx, r["id"])
        assert work is not None
        for s in sorted(work.steps, key=lambda s: s.position):
            if s.is_open:
                await _apply_step(tx, _steps.apply(
                    s, _steps.SKIP, _audit.RECEIVER, r["resolved_at"],
                    "closed by the receiver: its restore resolved it (restore policy)"), r["id"])


async def recent_close(tx: Tx, rec: EventRecord, event_id: int) -> list[int]:
    """A 459 recent closing (qualifier 1, the user who armed): attach it to
    the alarm of its partition it follows (the newest burglary or tamper
    alarm reported before it, at most RECENT_CLOSE_MAX_S earlier)."""
    col = _order_column(rec)
    here = rec.seq if col == "seq" else event_id
    r = await tx.row(
        """SELECT a.id FROM alarms a JOIN events e ON e.id = a.event_id
            WHERE a.account = :account AND a.partition = :partition
              AND a.event_class IN (%s) AND a.recent_close_user IS NULL
              AND e.%s < :here AND a.created_at >= :since
            ORDER BY e.%s DESC LIMIT 1""" % (_CLASSES_SQL, col, col),
        account=rec.account, partition=rec.partition, here=here,
        since=rec.received_at - RECENT_CLOSE_MAX_S)
    if r is None:
        return []
    await tx.run("UPDATE alarms SET recent_close_user = :user WHERE id = :id",
                 id=r["id"], user=rec.user if rec.user is not None else rec.zone)
    await _audit_row(tx, _audit.AuditRecord(r["id"], rec.received_at, _audit.RECEIVER,
                                            _audit.RECENT_CLOSE,
                                            {"user": rec.user, "event_id": event_id}), r["id"])
    return [r["id"]]


async def follow_up(tx: Tx, rec: EventRecord, event_id: int) -> list[int]:
    """What a stored event does to earlier alarms (receiver.ingest.follows_up:
    a cancel, a recent closing; a restore that resolved alarms by policy:
    their open steps skipped); the alarms it touched (not the restore's: they
    are the outcome's ``resolved``)."""
    if rec.qualifier == 3:
        await _skip_moot_steps(tx, event_id)
        return []
    if not ingest.follows_up(rec):
        return []
    if rec.code == ingest.CANCEL_CODE:
        return await cancel(tx, rec, event_id, rec.cancel_closes)
    return await recent_close(tx, rec, event_id)


# -- sites: contacts, call lists, notes ------------------------------------------------------


async def _site_audit(tx: Tx, at: float, actor: str, action: str, account: str | None,
                      detail: dict) -> None:
    await tx.run("""INSERT INTO workflow_audit (at, actor, action, account, detail)
                    VALUES (:at, :actor, :action, :account, :detail)""",
                 at=at, actor=actor, action=action, account=account, detail=_json(detail))


def contact_from_row(r) -> _contacts.Contact:
    phones = tuple(_contacts.Phone(p.get("label", ""), p["number"])
                   for p in json.loads(r["phones"]))
    windows = tuple(_contacts.parse_window(w, "site %s, contact %s" % (r["account"], r["name"]))
                    for w in json.loads(r["available"]))
    return _contacts.Contact(r["name"], r["role"], phones, r["passcode_hash"],
                             r["duress_hash"], windows)


def _contact_values(c: _contacts.Contact) -> dict:
    return {"name": c.name, "role": c.role,
            "phones": _json([{"label": p.label, "number": p.number} for p in c.phones]),
            "passcode_hash": c.passcode_hash, "duress_hash": c.duress_hash,
            "available": _json([w.text for w in c.available])}


# The time zone of a site nobody described yet (its contacts from the
# account's own list, no availability windows to read in it).
DEFAULT_TIME_ZONE = "UTC"


async def site(tx: Tx, account: str) -> _contacts.Site | None:
    """The site's contacts and call lists (None: no such account).  A site
    never imported has the account's own contact list (names and phones,
    no passcodes)."""
    acct = await tx.row("SELECT number, contacts FROM accounts WHERE number = :a", a=account)
    if acct is None:
        return None
    prof = await tx.row("SELECT * FROM site_profiles WHERE account = :a", a=account)
    if prof is None:
        out = []
        for i, c in enumerate(json.loads(acct["contacts"] or "[]")):
            if not isinstance(c, dict) or not c.get("name"):
                continue
            phones = (_contacts.Phone("", str(c["phone"])),) if c.get("phone") else ()
            out.append(_contacts.Contact(str(c["name"]), str(c.get("role") or ""), phones))
        return _contacts.Site(account, DEFAULT_TIME_ZONE, tuple(out), {}, (), "account")
    rows = await tx.rows("SELECT * FROM site_contacts WHERE account = :a ORDER BY position",
                         a=account)
    orders = {k: tuple(v) for k, v in json.loads(prof["call_orders"]).items()}
    return _contacts.Site(account, prof["time_zone"], tuple(contact_from_row(r) for r in rows),
                          orders, (), "store")


async def _sync_account_contacts(tx: Tx, account: str) -> None:
    """The account's contact list (what forwarded alarms carry: names, roles
    and phones, never a passcode) follows the site's contacts."""
    rows = await tx.rows("SELECT * FROM site_contacts WHERE account = :a ORDER BY position",
                         a=account)
    listed = []
    for r in rows:
        c = contact_from_row(r)
        listed.append({"name": c.name, "role": c.role,
                       "phone": c.phones[0].number if c.phones else ""})
    await tx.run("UPDATE accounts SET contacts = :c WHERE number = :a",
                 a=account, c=json.dumps(listed, sort_keys=True))


async def import_site(tx: Tx, s: _contacts.Site, by: str, at: float, replace: bool) -> dict:
    """A site file's contacts, call lists and notes into the store.  A site
    already described is replaced only when asked (``replace``); the
    file's notes are added unless the same text is already shown."""
    if await tx.value("SELECT 1 FROM accounts WHERE number = :a", a=s.account) is None:
        raise NotFound("no account %s: add the account first" % s.account)
    exists = await tx.value("SELECT 1 FROM site_profiles WHERE account = :a", a=s.account)
    if exists and not replace:
        raise ActionRefused("site %s is in the store already: --replace replaces its "
                              "contacts and call lists" % s.account)
    await tx.run("DELETE FROM site_contacts WHERE account = :a", a=s.account)
    await tx.run("DELETE FROM site_profiles WHERE account = :a", a=s.account)
    await tx.run("""INSERT INTO site_profiles (account, time_zone, call_orders, updated_at,
                                               updated_by)
                    VALUES (:a, :tz, :orders, :at, :by)""",
                 a=s.account, tz=s.time_zone, at=at, by=by,
                 orders=_json({k: list(v) for k, v in s.call_orders.items()}))
    for i, c in enumerate(s.contacts):
        await tx.run("""INSERT INTO site_contacts (account, name, position, role, phones,
                            passcode_hash, duress_hash, available, updated_at, updated_by)
                        VALUES (:a, :name, :position, :role, :phones, :passcode_hash,
                                :duress_hash, :available, :at, :by)""",
                     a=s.account, position=i + 1, at=at, by=by, **_contact_values(c))
    added = 0
    for n in s.notes:
        same = await tx.value("""SELECT 1 FROM site_notes WHERE account = :a AND text = :t
                                 AND deleted_at IS NULL""", a=s.account, t=n.text)
        if same is None:
            await _insert_note(tx, n)
            added += 1
    await _sync_account_contacts(tx, s.account)
    await _site_audit(tx, at, by, "site.import", s.account, {
        "source": s.source, "contacts": len(s.contacts), "notes_added": added,
        "replaced": bool(exists)})
    return {"contacts": len(s.contacts), "notes_added": added, "replaced": bool(exists)}


async def _profile(tx: Tx, account: str, by: str, at: float) -> None:
    """Make sure the site has a profile row (a site first described in the
    console starts with the account's own contacts)."""
    if await tx.value("SELECT 1 FROM site_profiles WHERE account = :a", a=account):
        return
    s = await site(tx, account)
    if s is None:
        raise NotFound("no account %s" % account)
    await tx.run("""INSERT INTO site_profiles (account, time_zone, call_orders, updated_at,
                                               updated_by) VALUES (:a, :tz, '{}', :at, :by)""",
                 a=account, tz=s.time_zone, at=at, by=by)
    for i, c in enumerate(s.contacts):
        await tx.run("""INSERT INTO site_contacts (account, name, position, role, phones,
                            passcode_hash, duress_hash, available, updated_at, updated_by)
                        VALUES (:a, :name, :position, :role, :phones, :passcode_hash,
                                :duress_hash, :available, :at, :by)""",
                     a=account, position=i + 1, at=at, by=by, **_contact_values(c))


async def put_contact(tx: Tx, account: str, c: _contacts.Contact, by: str, at: float) -> bool:
    """Add or change a contact (its passcode hashes stay as they are);
    True when it is new."""
    await _profile(tx, account, by, at)
    v = _contact_values(c)
    n = await tx.run("""UPDATE site_contacts SET role = :role, phones = :phones,
                               available = :available, updated_at = :at, updated_by = :by
                        WHERE account = :a AND name = :name""",
                     a=account, at=at, by=by, **{k: v[k] for k in (
                         "name", "role", "phones", "available")})
    new = n == 0
    if new:
        count = await tx.value("SELECT COUNT(*) FROM site_contacts WHERE account = :a",
                               a=account)
        if (count or 0) >= _contacts.MAX_CONTACTS:
            raise ActionRefused("a site has at most %d contacts" % _contacts.MAX_CONTACTS)
        await tx.run("""INSERT INTO site_contacts (account, name, position, role, phones,
                            passcode_hash, duress_hash, available, updated_at, updated_by)
                        SELECT CAST(:a AS TEXT), CAST(:name AS TEXT),
                               COALESCE(MAX(position), 0) + 1, CAST(:role AS TEXT),
                               CAST(:phones AS TEXT), NULL, NULL, CAST(:available AS TEXT),
                               CAST(:at AS DOUBLE PRECISION), CAST(:by AS TEXT)
                          FROM site_contacts WHERE account = :a""",
                     a=account, at=at, by=by, **{k: v[k] for k in (
                         "name", "role", "phones", "available")})
    await _sync_account_contacts(tx, account)
    await _site_audit(tx, at, by, "site.contact", account, {
        "contact": c.name, "change": "added" if new else "changed"})
    return new


async def delete_contact(tx: Tx, account: str, name: str, by: str, at: float) -> None:
    await _profile(tx, account, by, at)
    n = await tx.run("DELETE FROM site_contacts WHERE account = :a AND name = :name",
                     a=account, name=name)
    if n != 1:
        raise NotFound("site %s has no contact named %s" % (account, name))
    prof = await tx.row("SELECT call_orders FROM site_profiles WHERE account = :a", a=account)
    orders = {k: [x for x in v if x != name]
              for k, v in json.loads(prof["call_orders"] if prof else "{}").items()}
    await tx.run("UPDATE site_profiles SET call_orders = :o WHERE account = :a", a=account,
                 o=_json({k: v for k, v in orders.items() if v}))
    await _sync_account_contacts(tx, account)
    await _site_audit(tx, at, by, "site.contact", account, {"contact": name,
                                                           "change": "deleted"})


async def set_passcode(tx: Tx, account: str, name: str, hashes: tuple, by: str,
                       at: float) -> None:
    """Store a contact's passcode hashes ((passcode, duress or None)); the
    audit says only that they were set."""
    await _profile(tx, account, by, at)
    n = await tx.run("""UPDATE site_contacts SET passcode_hash = :p, duress_hash = :d,
                               updated_at = :at, updated_by = :by
                        WHERE account = :a AND name = :name""",
                     a=account, name=name, p=hashes[0], d=hashes[1], at=at, by=by)
    if n != 1:
        raise NotFound("site %s has no contact named %s" % (account, name))
    await _site_audit(tx, at, by, "site.passcode", account, {
        "contact": name, "duress": hashes[1] is not None})


async def set_call_orders(tx: Tx, account: str, orders: dict, by: str, at: float) -> None:
    await _profile(tx, account, by, at)
    await tx.run("""UPDATE site_profiles SET call_orders = :o, updated_at = :at,
                           updated_by = :by WHERE account = :a""",
                 a=account, o=_json({k: list(v) for k, v in orders.items()}), at=at, by=by)
    await _site_audit(tx, at, by, "site.call_orders", account,
                      {"lists": sorted(orders)})


async def set_time_zone(tx: Tx, account: str, tz: str, by: str, at: float) -> None:
    await _profile(tx, account, by, at)
    await tx.run("""UPDATE site_profiles SET time_zone = :tz, updated_at = :at,
                           updated_by = :by WHERE account = :a""",
                 a=account, tz=tz, at=at, by=by)
    await _site_audit(tx, at, by, "site.time_zone", account, {"time_zone": tz})


def note_from_row(r) -> _notes.SiteNote:
    return _notes.SiteNote(r["account"], r["text"], r["author"], r["created_at"],
                           r["expires_at"], r["starts_at"], r["id"])


async def _insert_note(tx: Tx, n: _notes.SiteNote) -> int:
    note_id = (await tx.value("""INSERT INTO site_notes (account, text, author, created_at,
                                                     starts_at, expires_at)
                             VALUES (:a, :text, :author, :at, :starts_at, :expires_at)
                             RETURNING id""",
                          a=n.account, text=n.text, author=n.author, at=n.created_at,
                          starts_at=n.starts_at, expires_at=n.expires_at))
    assert note_id is not None  # INSERT ... RETURNING gives its row
    return note_id


async def add_note(tx: Tx, n: _notes.SiteNote) -> int:
    if await tx.value("SELECT 1 FROM accounts WHERE number = :a", a=n.account) is None:
        raise NotFound("no account %s" % n.account)
    note_id = await _insert_note(tx, n)
    await _site_audit(tx, n.created_at, n.author, "site.note", n.account, {
        "note": note_id, "change": "added", "expires_at": n.expires_at})
    return note_id


async def delete_note(tx: Tx, account: str, note_id: int, by: str, at: float,
                      anyone: bool) -> None:
    """Mark a note deleted (kept for the record); only its author, unless
    ``anyone`` (a supervisor)."""
    r = await tx.row("""SELECT author FROM site_notes WHERE id = :id AND account = :a
                        AND deleted_at IS NULL""", id=note_id, a=account)
    if r is None:
        raise NotFound("site %s has no note %d" % (account, note_id))
    if r["author"] != by and not anyone:
        raise ActionRefused("only its author (%s) or a supervisor deletes this note"
                              % r["author"])
    await tx.run("""UPDATE site_notes SET deleted_at = :at, deleted_by = :by
                    WHERE id = :id AND deleted_at IS NULL""", id=note_id, at=at, by=by)
    await _site_audit(tx, at, by, "site.note", account, {"note": note_id,
                                                         "change": "deleted"})


async def notes(tx: Tx, account: str, with_deleted: bool = False) -> list:
    """The site's notes as records ([(SiteNote, deleted_at, deleted_by)])."""
    sql = "SELECT * FROM site_notes WHERE account = :a"
    if not with_deleted:
        sql += " AND deleted_at IS NULL"
    return [(note_from_row(r), r["deleted_at"], r["deleted_by"])
            for r in await tx.rows(sql + " ORDER BY id", a=account)]


async def site_changes(tx: Tx, account: str, limit: int = 50) -> list[dict]:
    return [{"at": r["at"], "actor": r["actor"], "action": r["action"],
             "detail": json.loads(r["detail"])} for r in await tx.rows(
        """SELECT * FROM workflow_audit WHERE account = :a ORDER BY id DESC LIMIT :n""",
        a=account, n=limit)]


# -- the workflow files in force -------------------------------------------------------------


@dataclass(frozen=True)
class WorkflowFile:
    kind: str  # "plans" | "dispositions"
    hash: str
    text: str
    label: str
    source: str
    loaded_at: float
    loaded_by: str
    active: bool = False

    def to_json(self, with_text: bool = False) -> dict:
        d = {"kind": self.kind, "hash": self.hash, "label": self.label,
             "source": self.source, "loaded_at": self.loaded_at,
             "loaded_by": self.loaded_by, "active": self.active}
        if with_text:
            d["text"] = self.text
        return d


async def active_files(tx: Tx) -> dict:
    """{kind: WorkflowFile} in force."""
    rows = await tx.rows("""SELECT f.* FROM workflow_files f JOIN workflow_active a
                               ON a.kind = f.kind AND a.hash = f.hash""")
    return {r["kind"]: WorkflowFile(r["kind"], r["hash"], r["text"], r["label"], r["source"],
                                    r["loaded_at"], r["loaded_by"], True) for r in rows}


async def file_history(tx: Tx, kind: str, limit: int = 50) -> list[WorkflowFile]:
    active = await tx.value("SELECT hash FROM workflow_active WHERE kind = :k", k=kind)
    return [WorkflowFile(r["kind"], r["hash"], r["text"], r["label"], r["source"],
                         r["loaded_at"], r["loaded_by"], r["hash"] == active)
            for r in await tx.rows("""SELECT * FROM workflow_files WHERE kind = :k
                                      ORDER BY loaded_at DESC LIMIT :n""", k=kind, n=limit)]


async def activate_file(tx: Tx, f: WorkflowFile) -> bool:
    """Store a checked workflow file's text (once per hash) and make it the
    one in force; False when it was in force already."""
    active = await tx.value("SELECT hash FROM workflow_active WHERE kind = :k", k=f.kind)
    if active == f.hash:
        return False
    if await tx.value("SELECT 1 FROM workflow_files WHERE kind = :k AND hash = :h",
                      k=f.kind, h=f.hash) is None:
        await tx.run("""INSERT INTO workflow_files (kind, hash, text, label, source, loaded_at,
                                                    loaded_by)
                        VALUES (:k, :h, :text, :label, :source, :at, :by)""",
                     k=f.kind, h=f.hash, text=f.text, label=f.label, source=f.source,
                     at=f.loaded_at, by=f.loaded_by)
    await tx.run("DELETE FROM workflow_active WHERE kind = :k", k=f.kind)
    await tx.run("""INSERT INTO workflow_active (kind, hash, since, by_whom)
                    VALUES (:k, :h, :at, :by)""", k=f.kind, h=f.hash, at=f.loaded_at,
                 by=f.loaded_by)
    await _site_audit(tx, f.loaded_at, f.loaded_by, "workflow.load", None, {
        "kind": f.kind, "hash": f.hash, "label": f.label, "source": f.source, "was": active})
    return True

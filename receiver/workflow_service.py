"""The operator's workflow as the console's API, the CLI and the demo use
it: one object per receiver (``Receiver.workflow``) that reads what an
action needs, asks the core (receiver.workflow) to decide, writes the
decision with its compare-and-set and its audit rows (receiver.workflow_db),
and publishes what changed to every console (receiver.messages).

    work = await wf.work(alarm_id)                  # the alarm, its steps, calls
    alarm = await wf.step(alarm_id, 2, "complete", "olga")
    result = await wf.passcode(alarm_id, "Anna Berg", "+00 555 0101", said, "olga")

Invariants:

- **One path for every interface.**  The API (receiver.web.workflow_api)
  and the CLI (receiver.workflow_cli) call these methods; the role checks
  are theirs (the permission table), the rules and the audit are here and
  in the cores.
- **Decided from what was read, written only if it still holds.**  A
  write that finds its row moved (another console, another receiver)
  raises RowMoved inside its transaction; the action is read and decided
  again, at most :data:`MAX_TRIES` times.  A take-over names the claim
  revision the person saw, so deciding again refuses it when the alarm
  changed hands meanwhile: nobody takes an alarm from someone they did not
  see.
- **A passcode goes into the check and nowhere else**: not into a log
  line, an audit row, a live message or an exception.  The argon2 checks
  run in a worker thread, in one of the receiver's hash slots
  (receiver.hash_slots), outside any store transaction.
- **The plans and dispositions in force are the store's** (``workflow_files``),
  so every receiver on one database gives an alarm the same plan; a
  receiver's ``[workflow]`` files are loaded into the store at start when
  they changed, and each receiver follows the store (:meth:`refresh`).

Errors: :class:`NotFound` (404 / exit 1), ``ActionRefused`` and
``AlarmStateError`` (a sentence for the person: 409 / exit 1),
``WorkflowConfigError`` (a file or a form that cannot be used: 400 / exit 2).
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import logging
import time
import tomllib
from dataclasses import dataclass
from typing import Awaitable, Callable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from protocol import contactid
from receiver import alarms as _alarms
from receiver import hash_slots, workflow_db
from receiver.messages import AlarmUpdate, ConsoleMessage, SiteChanged, WorkflowChange
from receiver.records import Alarm, AuditEntry, EventRecord
from receiver.store import RowMoved, Store
from receiver.workflow import audit as _audit
from receiver.workflow import claims as _claims
from receiver.workflow import contacts as _contacts
from receiver.workflow import dispositions as _dispositions
from receiver.workflow import handling as _handling
from receiver.workflow import notes as _notes
from receiver.workflow import plans as _plans
from receiver.workflow import steps as _steps
from receiver.workflow.common import (ActionRefused, NotFound, WorkflowConfigError,
                                      content_hash)

_LOGGER = logging.getLogger(__name__)

# Times an action is read and decided again when its row moved under it.
# A person's action loses to another's at most once or twice; more means
# the alarm is being changed faster than anyone can look at it.
MAX_TRIES = 3
# Alarms the escalation views (the alert bar, the supervisor queue) list at most.
MAX_LISTED = 500
PLANS = "plans"
DISPOSITIONS = "dispositions"
KINDS = (PLANS, DISPOSITIONS)
# A workflow file's text, at most: the example plans file is 10 kB.
MAX_FILE_BYTES = 256 * 1024


def trail(entries: list[AuditEntry] | tuple, routed_to: dict | None,
          center_names: dict) -> list[dict]:
    """An alarm's audit trail as the console and the CLI show it: each row
    with its sentence (``text``) and the person's note."""
    out = []
    for r in entries:
        if r.action:
            try:
                text = _audit.AuditRecord(r.alarm_id, r.at, r.actor, r.action,
                                          r.detail or {}).sentence()
            except (ValueError, KeyError, TypeError):  # written by a newer receiver
                text = "%s by %s." % (r.action, r.actor)
        else:
            text = _alarms.audit_sentence(r.to_json(), routed_to, center_names)
        # the receiver's first row holds routing data, and a note row its
        # sentence (shown as text): neither is an operator's note
        note = r.note if (r.actor != _audit.RECEIVER or r.action) and not \
            _alarms.is_note_row(r.to_json()) else None
        out.append(dict(r.to_json(), text=text, note=note))
    return out


def parse_site_time(text: str, time_zone: str) -> float:
    """Unix seconds, or ISO 8601; a time without an offset is in the site's
    time zone (as in a site file).  ActionRefused when it is neither."""
    try:
        return float(text)
    except (TypeError, ValueError):
        pass
    try:
        t = _dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        raise ActionRefused("%r is not a time (ISO 8601, e.g. 2025-06-14T18:00, in the "
                            "site's time zone)" % (text,)) from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=ZoneInfo(time_zone))
    return t.timestamp()


@dataclass(frozen=True)
class PasscodeResult:
    """What a passcode check says to the person who typed it."""

    outcome: str  # receiver.workflow.contacts: passcode_correct | passcode_wrong | duress
    sentence: str
    step: _steps.StepRecord | None = None  # the passcode step it completed
    duress_alarm_id: int | None = None  # the hold-up alarm a duress passcode raised


def _offered_order(work: workflow_db.AlarmWork) -> str:
    """The call list an alarm's calls come from: its first call step's
    (open first), else its class's."""
    calls = [s for s in work.steps if s.kind == _plans.CALL]
    calls.sort(key=lambda s: (not s.is_open, s.position))
    if calls and calls[0].params.get("call_order"):
        return calls[0].params["call_order"]
    return work.alarm.event_class


class Workflow:
    def __init__(self, store: Store, *, publish: Callable[[ConsoleMessage], None] | None = None,
                 raise_duress: Callable[[_handling.DuressAlarm], Awaitable[int | None]]
                 | None = None, close_cancelled: bool = True,
                 clock: Callable[[], float] = time.time, hasher=_contacts.HASHER):
        self.store = store
        self.publish = publish or (lambda m: None)
        self.raise_duress = raise_duress
        self.close_cancelled = close_cancelled
        self.clock = clock
        self.hasher = hasher
        self.planset: _plans.PlanSet = _plans.builtin()
        self.dispositions: _dispositions.Dispositions = _dispositions.builtin()
        self.files: dict = {}  # kind -> workflow_db.WorkflowFile in force (none: built in)

    # -- the plans and dispositions in force -----------------------------------------------

    @staticmethod
    def parse(kind: str, text: str, source: str):
        """(parsed set, hash, label) of a workflow file's text; raises
        WorkflowConfigError naming ``source`` and the plan, step or code."""
        if kind not in KINDS:
            raise WorkflowConfigError(source, "a workflow file is plans or dispositions")
        if not isinstance(text, str) or not text.strip():
            raise WorkflowConfigError(source, "the file is empty")
        if len(text.encode("utf-8", "replace")) > MAX_FILE_BYTES:
            raise WorkflowConfigError(source, "longer than %d kB" % (MAX_FILE_BYTES // 1024))
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise WorkflowConfigError(source, "not valid TOML (%s)" % e) from None
        if kind == PLANS:
            ps = _plans.parse(doc, source)
            return ps, ps.hash, ps.label
        ds = _dispositions.parse(doc, source)
        return ds, content_hash(doc), ""

    def _use(self, files: dict) -> None:
        for kind in KINDS:
            f = files.get(kind)
            if f is None:
                continue
            try:
                parsed, _, _ = self.parse(kind, f.text, "%s in the store (%s)"
                                          % (kind, f.hash[:12]))
            except WorkflowConfigError as e:  # checked when loaded: a newer receiver's?
                _LOGGER.error("workflow file in the store not usable, keeping the one in "
                              "use kind=%s error=%s", kind, e)
                continue
            if kind == PLANS:
                assert isinstance(parsed, _plans.PlanSet)
                self.planset = parsed
            else:
                assert isinstance(parsed, _dispositions.Dispositions)
                self.dispositions = parsed
            self.files[kind] = f

    async def load(self) -> None:
        """Use the plans and dispositions in force in the store (the
        built-in sets for what the store has none of)."""
        files = await self.store.read(workflow_db.active_files)
        self._use(files)
        for kind in KINDS:
            if kind not in files:
                _LOGGER.info("no %s file loaded: the built-in %s are used (guardline-receiver "
                             "%s load FILE)", kind, kind, kind)

    async def refresh(self) -> bool:
        """Follow the store when another receiver or the CLI loaded a new
        file; True when something changed."""
        files = await self.store.read(workflow_db.active_files)
        if {k: f.hash for k, f in files.items()} == {k: f.hash for k, f in self.files.items()}:
            return False
        self._use(files)
        return True

    async def load_file(self, kind: str, text: str, source: str, by: str
                        ) -> tuple[workflow_db.WorkflowFile, bool]:
        """Check a workflow file's text and make it the one in force (a new
        version; audited).  (the file, whether it changed anything)."""
        _, digest, label = self.parse(kind, text, source)
        f = workflow_db.WorkflowFile(kind, digest, text, label, source, self.clock(), by)
        changed = await self.store.transact(lambda tx: workflow_db.activate_file(tx, f))
        self._use({kind: f})
        if changed:
            _LOGGER.info("%s file loaded as the one in force source=%s hash=%s label=%s "
                            "by=%s", kind, source, digest[:12], label or "-", by)
        return f, changed

    async def install(self, plans_path: str | None, dispositions_path: str | None) -> None:
        """At start: the ``[workflow]`` files, loaded into the store when
        they differ from what is in force there, then what is in force."""
        await self.load()
        for kind, path in ((PLANS, plans_path), (DISPOSITIONS, dispositions_path)):
            if path is None:
                continue
            try:
                with open(path, encoding="utf-8") as fh:
                    text = fh.read()
            except (OSError, UnicodeDecodeError) as e:
                raise WorkflowConfigError(path, "cannot read the %s file (%s)" % (kind, e)) \
                    from None
            await self.load_file(kind, text, path, _audit.RECEIVER)

    def file_json(self) -> dict:
        """What is in force, for the console."""
        return {k: (self.files[k].to_json() if k in self.files else
                    {"kind": k, "label": "built in", "hash": "", "source": "built in"})
                for k in KINDS}

    # -- at ingest ------------------------------------------------------------------------

    def opening(self, rec: EventRecord, region: str, center_names: dict
                ) -> _handling.Opening:
        """The plan, steps and deadlines an alarm opens with (pure)."""
        return _handling.open_alarm(self.planset, rec.account, region, rec.event_class,
                                    rec.code, rec.priority, rec.received_at, rec.routed_to,
                                    center_names)

    def cancel_policy(self) -> _dispositions.Dispositions | None:
        """What a panel's cancel closes its alarms with (None: it only
        attaches to them; [workflow] close_cancelled)."""
        return self.dispositions if self.close_cancelled else None

    # -- reading --------------------------------------------------------------------------

    async def work(self, alarm_id: int, trail: bool = False) -> workflow_db.AlarmWork:
        w = await self.store.read(lambda tx: workflow_db.alarm_work(tx, alarm_id, trail))
        if w is None:
            raise NotFound("no alarm %d" % alarm_id)
        return w

    async def site(self, account: str) -> _contacts.Site:
        s = await self.store.read(lambda tx: workflow_db.site(tx, account))
        if s is None:
            raise NotFound("no account %s" % account)
        return s

    async def notes(self, account: str, with_deleted: bool = False) -> list:
        return await self.store.read(lambda tx: workflow_db.notes(tx, account, with_deleted))

    async def shown_notes(self, account: str, now: float) -> list[_notes.SiteNote]:
        return _notes.shown([n for n, _, _ in await self.notes(account)], now)

    async def escalated(self) -> list[Alarm]:
        return await self.store.read(lambda tx: workflow_db.escalated(tx, MAX_LISTED))

    async def supervisor_queue(self) -> list[Alarm]:
        return await self.store.read(lambda tx: workflow_db.supervisor_queue(tx, MAX_LISTED))

    # -- acting on an alarm -----------------------------------------------------------------

    async def _act(self, alarm_id: int, decide, write):
        """Read, decide, write; again when the write found its row moved.
        (work as read, decision, what write returned)."""
        for _ in range(MAX_TRIES):
            work = await self.work(alarm_id)
            decision = decide(work, self.clock())
            if asyncio.iscoroutine(decision):
                decision = await decision
            try:
                result = await self.store.transact(lambda tx: write(tx, work, decision))
            except RowMoved:
                continue
            return work, decision, result
        raise ActionRefused("the alarm kept changing while you acted: look at it again")

    def _changed(self, alarm: Alarm, change: str, records, by: str | None) -> None:
        sentences = [r.sentence() for r in records if r is not None]
        self.publish(WorkflowChange.of(alarm, change, sentences, by))

    async def acknowledge(self, alarm_id: int, actor: str) -> Alarm:
        """Acknowledge (it takes the alarm)."""
        def decide(w, now):
            return _handling.acknowledge(alarm_id, w.alarm.state, w.claim, actor, now)

        def write(tx, w, auth):
            return workflow_db.acknowledge(tx, alarm_id, auth, actor, self.clock())
        _, auth, a = await self._act(alarm_id, decide, write)
        self.publish(AlarmUpdate.moved(a, actor))
        if auth.claim is not None:
            self._changed(a, "claim", [auth.claim.audit], actor)
        _LOGGER.info("alarm acknowledged account=%s alarm_id=%d by=%s", a.account, alarm_id,
                     actor)
        return a

    async def _claim_change(self, alarm_id: int, actor: str, change: str, decide) -> Alarm:
        def write(tx, w, ch):
            if ch is None:
                return w.alarm
            return workflow_db.apply_claim(tx, alarm_id, ch)
        _, ch, a = await self._act(alarm_id, decide, write)
        if ch is not None:
            self._changed(a, change, [ch.audit], actor)
            _LOGGER.info("alarm %s account=%s alarm_id=%d by=%s handler=%s", change,
                         a.account, alarm_id, actor, a.handler or "-")
        return a

    async def claim(self, alarm_id: int, actor: str) -> Alarm:
        """Take an alarm nobody handles (nothing changes when it is ours)."""
        return await self._claim_change(alarm_id, actor, "claim", lambda w, now: _claims.claim(
            alarm_id, w.claim, w.alarm.state, actor, now))

    async def take_over(self, alarm_id: int, actor: str, seen_rev: int) -> Alarm:
        """Take the alarm from the handler seen at ``seen_rev``."""
        if not isinstance(seen_rev, int) or isinstance(seen_rev, bool):
            raise ActionRefused("a take-over names the claim it takes over (seen_rev)")
        return await self._claim_change(
            alarm_id, actor, "take_over", lambda w, now: _claims.take_over(
                alarm_id, w.claim, w.alarm.state, actor, now, seen_rev))

    async def release(self, alarm_id: int, actor: str, may_release_others: bool) -> Alarm:
        return await self._claim_change(
            alarm_id, actor, "release", lambda w, now: _claims.release(
                alarm_id, w.claim, w.alarm.state, actor, now, may_release_others))

    async def step(self, alarm_id: int, position: int, action: str, actor: str,
                   reason: str | None = None) -> tuple[Alarm, _steps.StepRecord]:
        """Complete, skip, fail or start one step of the alarm's plan."""
        if action not in _steps.ACTIONS:
            raise ActionRefused("a step is %s" % ", ".join(
                "%sed" % a if a != "start" else "started" for a in _steps.ACTIONS))

        def decide(w, now):
            s = w.step(position)
            if s is None:
                raise NotFound("alarm %d has no step %s" % (alarm_id, position))
            return _handling.act_on_step(alarm_id, w.alarm.state, w.claim, s, action, actor,
                                         now, reason)

        async def write(tx, w, act):
            await workflow_db.act_on_step(tx, alarm_id, act)
            return await workflow_db.get_alarm(tx, alarm_id)
        _, act, a = await self._act(alarm_id, decide, write)
        self._changed(a, "step", act.audit, actor)
        _LOGGER.info("alarm step account=%s alarm_id=%d step=%d action=%s by=%s", a.account,
                     alarm_id, position, action, actor)
        return a, act.change.after

    async def _contact(self, account: str, name) -> _contacts.Contact:
        if not isinstance(name, str) or not name:
            raise ActionRefused("name the contact called")
        s = await self.site(account)
        try:
            return s.contact(name)
        except ActionRefused:
            raise NotFound("site %s has no contact named %s" % (account, name)) from None

    async def call(self, alarm_id: int, contact: str, phone: str, outcome: str,
                   actor: str) -> _contacts.CallRecord:
        """Record a call's outcome (reached, no answer, wrong number)."""
        a0 = (await self.work(alarm_id)).alarm
        c = await self._contact(a0.account, contact)

        def decide(w, now):
            return _handling.record_call(alarm_id, w.alarm.state, w.claim, c, phone, outcome,
                                         actor, now)

        async def write(tx, w, result):
            await workflow_db.record_call(tx, alarm_id, result)
            return await workflow_db.get_alarm(tx, alarm_id)
        _, result, a = await self._act(alarm_id, decide, write)
        self._changed(a, "call", result.audit, actor)
        _LOGGER.info("alarm call account=%s alarm_id=%d contact=%s outcome=%s by=%s",
                     a.account, alarm_id, c.name, outcome, actor)
        return result.call

    async def passcode(self, alarm_id: int, contact: str, phone: str, given,
                       actor: str) -> PasscodeResult:
        """Check the passcode a contact gave on a call.  A duress passcode
        raises a hold-up alarm for the site at once."""
        a0 = (await self.work(alarm_id)).alarm
        c = await self._contact(a0.account, contact)
        if not c.has_passcode:
            raise ActionRefused("%s has no passcode on file: verify the caller another way "
                                "and record it on the step" % c.name)

        def check(w, now):
            return _handling.check_passcode(alarm_id, w.alarm.state, w.claim, w.alarm.account,
                                            w.alarm.partition, c, phone, given, w.calls,
                                            w.steps, actor, now, self.hasher)

        async def decide(w, now):
            # two argon2 verifies: a worker thread, one of the receiver's hash slots
            return await asyncio.to_thread(hash_slots.bounded, check, w, now)

        async def write(tx, w, result):
            await workflow_db.record_call(tx, alarm_id, result,
                                          _handling.passcode_tries(w.calls, c.name))
            return await workflow_db.get_alarm(tx, alarm_id)
        _, result, a = await self._act(alarm_id, decide, write)
        change = "duress" if result.duress is not None else "passcode"
        self._changed(a, change, result.audit, actor)
        duress_id = None
        if result.duress is not None:
            _LOGGER.warning("DURESS passcode given on a call account=%s alarm_id=%d contact=%s "
                            "by=%s", a.account, alarm_id, c.name, actor)
            if self.raise_duress is not None:
                duress_id = await self.raise_duress(result.duress)
        else:
            _LOGGER.info("passcode checked account=%s alarm_id=%d contact=%s outcome=%s by=%s",
                         a.account, alarm_id, c.name, result.call.outcome, actor)
        sentence = [r for r in result.audit if r.action == _audit.PASSCODE][0].sentence()
        return PasscodeResult(result.call.outcome, sentence,
                              result.step_change.after if result.step_change else None,
                              duress_id)

    async def resolve(self, alarm_id: int, actor: str, disposition, note=None,
                      override_reason=None, may_override: bool = False) -> Alarm:
        """Resolve with a disposition; open mandatory steps refuse it unless
        ``may_override`` (a supervisor) gives ``override_reason``."""
        def decide(w, now):
            return _handling.decide_resolve(alarm_id, w.alarm.state, w.alarm.event_class,
                                            w.claim, w.steps, self.dispositions, disposition,
                                            note, actor, now, may_override, override_reason)

        def write(tx, w, closing):
            return workflow_db.resolve(tx, alarm_id, closing, w.alarm.claim_rev)
        _, closing, a = await self._act(alarm_id, decide, write)
        self.publish(AlarmUpdate.moved(a, actor, a.note))
        self._changed(a, "resolve", closing.audit, actor)
        _LOGGER.info("alarm resolved account=%s alarm_id=%d by=%s disposition=%s override=%s",
                     a.account, alarm_id, actor, closing.disposition.code,
                     "yes" if closing.override else "no")
        return a

    # -- sites ------------------------------------------------------------------------------

    def _site_changed(self, account: str, change: str) -> None:
        self.publish(SiteChanged(account, change))

    async def import_site(self, path: str, by: str, replace: bool = False) -> dict:
        """A site file into the store (errors name the file and contact)."""
        s = _contacts.load_site(path, self.clock(), by)
        got = await self.store.transact(lambda tx: workflow_db.import_site(
            tx, s, by, self.clock(), replace))
        self._site_changed(s.account, "import")
        return dict(got, account=s.account)

    async def put_contact(self, account: str, data: dict, by: str) -> bool:
        """Add or change a contact from a form ({name, role, phones,
        available}); checked as a site file's contact is."""
        s = await self.site(account)
        if not isinstance(data, dict):
            raise WorkflowConfigError("contact", "must be an object")
        doc = {"account": account, "time_zone": s.time_zone, "contacts": [data]}
        c = _contacts.parse_site(doc, "contact").contacts[0]
        new = await self.store.transact(lambda tx: workflow_db.put_contact(
            tx, account, c, by, self.clock()))
        self._site_changed(account, "contact")
        return new

    async def delete_contact(self, account: str, name: str, by: str) -> None:
        await self.site(account)
        await self.store.transact(lambda tx: workflow_db.delete_contact(
            tx, account, name, by, self.clock()))
        self._site_changed(account, "contact")

    async def set_passcode(self, account: str, name: str, passcode, duress, by: str) -> None:
        """Hash and store a contact's passcode (and duress passcode); only
        the hashes are kept, and the audit says only that they were set."""
        await self._contact(account, name)
        hashes = await asyncio.to_thread(hash_slots.bounded, _contacts.passcode_hashes,
                                         passcode, duress or None, self.hasher)
        await self.store.transact(lambda tx: workflow_db.set_passcode(
            tx, account, name, hashes, by, self.clock()))
        _LOGGER.info("site passcode set account=%s contact=%s duress=%s by=%s", account, name,
                     "yes" if hashes[1] else "no", by)
        self._site_changed(account, "passcode")

    async def set_call_orders(self, account: str, orders, by: str) -> None:
        """The site's call lists: {class or "default": [contact names]}."""
        s = await self.site(account)
        if not isinstance(orders, dict):
            raise WorkflowConfigError("call lists", "give {class: [contact names]}")
        names = {c.name for c in s.contacts}
        out = {}
        for key, listed in orders.items():
            where = "call list %s" % key
            if key not in contactid.CLASSES + (_plans.DEFAULT_ORDER,):
                raise WorkflowConfigError(where, "a call list is for an alarm class (%s) or "
                                          "default" % ", ".join(contactid.CLASSES))
            if not isinstance(listed, list) or not all(isinstance(n, str) for n in listed):
                raise WorkflowConfigError(where, "must list contact names")
            if len(set(listed)) != len(listed):
                raise WorkflowConfigError(where, "names a contact twice")
            unknown = [n for n in listed if n not in names]
            if unknown:
                raise WorkflowConfigError(where, "names no contact of this site: %s"
                                          % ", ".join(unknown))
            if listed:
                out[key] = tuple(listed)
        await self.store.transact(lambda tx: workflow_db.set_call_orders(
            tx, account, out, by, self.clock()))
        self._site_changed(account, "call_orders")

    async def set_time_zone(self, account: str, tz, by: str) -> None:
        await self.site(account)
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise WorkflowConfigError("time zone", "must be an IANA time zone such as "
                                      "\"Europe/Vienna\" (got %r)" % (tz,)) from None
        await self.store.transact(lambda tx: workflow_db.set_time_zone(
            tx, account, tz, by, self.clock()))
        self._site_changed(account, "time_zone")

    async def add_note(self, account: str, text, author: str, expires_at=None,
                       starts_at=None) -> int:
        """A site note (temporary with ``expires_at``: Unix seconds or ISO
        8601 in the site's time zone)."""
        s = await self.site(account)
        now = self.clock()
        until = None if expires_at in (None, "") else parse_site_time(expires_at, s.time_zone)
        start = None if starts_at in (None, "") else parse_site_time(starts_at, s.time_zone)
        n = _notes.new_note(account, text, author, now, until, start)
        note_id = await self.store.transact(lambda tx: workflow_db.add_note(tx, n))
        _LOGGER.info("site note added account=%s note=%d by=%s temporary=%s", account, note_id,
                     author, "yes" if until else "no")
        self._site_changed(account, "note")
        return note_id

    async def delete_note(self, account: str, note_id: int, by: str, anyone: bool) -> None:
        await self.store.transact(lambda tx: workflow_db.delete_note(
            tx, account, note_id, by, self.clock(), anyone))
        self._site_changed(account, "note")

    async def site_changes(self, account: str) -> list[dict]:
        return await self.store.read(lambda tx: workflow_db.site_changes(tx, account))

    # -- views (the JSON the console and the CLI show) -----------------------------------------

    def note_json(self, n: _notes.SiteNote, time_zone: str, deleted_at=None,
                  deleted_by=None) -> dict:
        return {"id": n.id, "text": n.text, "author": n.author, "created_at": n.created_at,
                "expires_at": n.expires_at, "starts_at": n.starts_at,
                "permanent": n.permanent, "when": n.when_words(time_zone),
                "deleted_at": deleted_at, "deleted_by": deleted_by}

    async def alarm_view(self, alarm_id: int, center_names: dict,
                         may_override: bool = False) -> dict:
        """Everything the alarm's workflow shows: its plan and each step's
        state, the call list and calls, who handles it, the site's notes,
        the dispositions offered, its escalation, and what the panel said
        after it (a cancel, a recent closing)."""
        w = await self.work(alarm_id, trail=True)
        a = w.alarm
        now = self.clock()
        site = await self.site(a.account)
        plan_row = next((r for r in w.trail if r.action == _audit.PLAN), None)
        plan = None
        if a.plan_name:
            plan = {"name": a.plan_name, "hash": a.plan_hash, "version": a.plan_version,
                    "sentence": trail([plan_row], a.routed_to, center_names)[0]["text"]
                    if plan_row is not None else "Plan '%s' (%s)." % (a.plan_name,
                                                                       a.plan_version)}
        cl = _contacts.call_list(site, _offered_order(w), now)
        nxt = _contacts.next_to_call(cl, w.calls)
        tries = {}
        for c in w.calls:
            if c.outcome == _contacts.PASSCODE_WRONG:
                tries[c.contact] = tries.get(c.contact, 0) + 1
        left = _steps.open_mandatory(w.steps)
        claim = w.claim
        return {
            "alarm_id": a.id, "state": a.state,
            "plan": plan,
            "steps": [dict(s.__dict__, label=s.label) for s in w.steps],
            "open_mandatory": ["%d. %s" % (s.position, s.title) for s in left],
            "calls": [dict(c.__dict__, words=_audit.OUTCOME_WORDS.get(c.outcome, c.outcome))
                      for c in w.calls],
            "call_list": {"words": cl.words(), "time_zone": site.time_zone, "entries": [
                {"position": e.position, "contact": e.contact.to_json(), "available": e.available,
                 "availability": e.contact.availability_words(),
                 "wrong_tries": tries.get(e.contact.name, 0)} for e in cl.entries]},
            "next_to_call": nxt.contact.name if nxt is not None else None,
            "max_passcode_tries": _handling.MAX_PASSCODE_TRIES,
            "claim": {"handler": claim.handler, "since": claim.since, "rev": claim.rev,
                      "banner": claim.banner(now)},
            "notes": [self.note_json(n, site.time_zone)
                      for n in _notes.shown([n for n, _, _ in await self.notes(a.account)],
                                            now)],
            "dispositions": [d.to_json() for d in self.dispositions.offered(a.event_class)],
            "disposition": None if a.disposition is None else {
                "code": a.disposition, "label": a.disposition_label,
                "category": a.disposition_category, "override_reason": a.override_reason},
            "may_override": may_override,
            "escalation": {"ack_due_at": a.ack_due_at, "resolve_due_at": a.resolve_due_at,
                           "ack_within_s": a.ack_within_s,
                           "resolve_within_min": a.resolve_within_min,
                           "ack_escalated_at": a.ack_escalated_at,
                           "resolve_escalated_at": a.resolve_escalated_at},
            "cancel": None if a.cancel_event_id is None else {
                "user": a.cancel_user, "after_s": a.cancel_after_s, "at": a.cancelled_at,
                "event_id": a.cancel_event_id,
                "words": _audit.cancel_words(a.cancel_user, a.cancel_after_s)},
            "recent_close_user": a.recent_close_user,
            "confirmed": a.confirmed,
            "raised_from": a.raised_from,
            "trail": trail(w.trail, a.routed_to, center_names),
        }

    async def site_view(self, account: str, with_deleted: bool = False) -> dict:
        s = await self.site(account)
        now = self.clock()
        all_notes = await self.notes(account, with_deleted)
        shown = {n.id for n in _notes.shown([n for n, _, _ in all_notes], now)}
        return {
            "account": account, "time_zone": s.time_zone, "described": s.source == "store",
            "contacts": [dict(c.to_json(), availability=c.availability_words(),
                              available_now=c.available_at(now, s.time_zone))
                         for c in s.contacts],
            "call_orders": {k: list(v) for k, v in s.call_orders.items()},
            "notes": [dict(self.note_json(n, s.time_zone, d_at, d_by), shown=n.id in shown)
                      for n, d_at, d_by in all_notes if with_deleted or n.id in shown],
        }


def alarm_sentence(a: Alarm, site_name: str) -> str:
    """'HOLD-UP at City Bank, Main Street branch (account 1001)': how an
    escalation names its alarm."""
    cls = contactid.CLASS_LABELS.get(a.event_class, a.event_class).upper()
    where = "%s (account %s)" % (site_name, a.account) if site_name else "account %s" % a.account
    return "%s at %s" % (cls, where)


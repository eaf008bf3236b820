"""Opening and closing schedules per partition, and the receiver's own
open/close exception events (sans-I/O).

A bank branch is armed after closing and disarmed only in business hours.
Each supervised partition has a :class:`Schedule`: for every weekday an
opening window and a closing window in the site's local time (or a closed
day), a tolerance, holidays, planned exceptions (Christmas Eve closes at
noon), and whether an opening is required.  An operator may change one
day's hours for a while (:class:`TemporaryChange`: "opens at 11:00 today").
:func:`evaluate` compares the partition's arm/disarm history (Contact ID
open/close reports, :func:`arm_state`) with the plan and returns the
events the receiver owes, each a :class:`ScheduleEvent`:

========================= ============ ===================================================
kind                      Contact ID   raised when
========================= ============ ===================================================
``fail_to_close``         454, new     not armed at the closing deadline (close window end
                                       + tolerance)
``fail_to_close_restored`` 454, restore armed again after a fail to close
``fail_to_open``          453, new     still armed at the opening deadline (open window
                                       end + tolerance), where the schedule requires an
                                       opening
``fail_to_open_restored`` 453, restore disarmed after a fail to open
``early_open``            451, new     disarmed before the opening window (minus tolerance)
``late_open``             452, new     the day's first disarm in business hours comes after
                                       the opening window (plus tolerance)
``unscheduled_open``      450, new     disarmed on a closed day (holiday, weekend), or
                                       after the closing deadline
========================= ============ ===================================================

(DC-05 gives 451 and 452 an opening meaning with qualifier 1 (E451 early
open, E452 late open) and a closing meaning with 3; the receiver raises
only the opening ones.  455 "auto-arm failed" is the panel's own report.)

The rules, in the site's wall-clock time (``zoneinfo``):

- A moment of a day, "08:30", is the *first instant whose local time is
  08:30 or later* on that day: a time skipped by a DST change (02:30 on a
  spring-forward night) is the first instant after the gap, a time that
  occurs twice (autumn) its first occurrence.
- A deadline is checked once, at the first instant at which it is both
  past and in force, and only during its own day; it fires when the
  partition's state then (the last open/close report at or before it) is
  the wrong one.  A partition with no report at all has no known state and
  raises no deadline event.
- A temporary change applies to decisions made from its creation until it
  expires; a decision already made stays made (an alarm raised at 09:00 is
  not taken back by a change entered at 09:30), and a later deadline it
  brings is checked again.
- A disarm is judged at its own instant by the plan then in force.  Lunch
  breaks do not make late openings: only the first disarm of the day in
  business hours can be late.  A disarm after a fail to open restores it
  (453 restore) rather than raising a late open as well.
- Each kind is raised at most once per (partition, local day); its
  :attr:`ScheduleEvent.dedupe_key` (``schedule:<partition>:<day>:<kind>``)
  goes into the events table's unique ``(account, dedupe_key)``, so a
  restart that evaluates the same day again, or a second receiver that
  raced the first (PostgreSQL), stores it once.

:func:`evaluate` is a pure function of (schedule, changes, history, range,
now): the instant of each event does not depend on when the receiver runs,
so a receiver that was down over a deadline raises it when it is back,
stamped with the deadline.  :func:`next_check` gives the next deadline
after an instant (the scheduler keeps one heap entry per scheduled
partition, as line supervision does).
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from receiver.supervision import duration_text

# -- the receiver's events ------------------------------------------------------------

FAIL_TO_CLOSE = "fail_to_close"
FAIL_TO_CLOSE_RESTORED = "fail_to_close_restored"
FAIL_TO_OPEN = "fail_to_open"
FAIL_TO_OPEN_RESTORED = "fail_to_open_restored"
EARLY_OPEN = "early_open"
LATE_OPEN = "late_open"
UNSCHEDULED_OPEN = "unscheduled_open"

# KINDS[kind] -> (Contact ID code, qualifier).  Class and priority come from
# protocol.contactid like any panel event's.
KINDS = {
    FAIL_TO_CLOSE: (454, 1),
    FAIL_TO_CLOSE_RESTORED: (454, 3),
    FAIL_TO_OPEN: (453, 1),
    FAIL_TO_OPEN_RESTORED: (453, 3),
    EARLY_OPEN: (451, 1),
    LATE_OPEN: (452, 1),
    UNSCHEDULED_OPEN: (450, 1),
}

# The EventRecord source of the receiver's schedule events (beside 'panel'
# and 'supervision').
SOURCE = "schedule"

# Contact ID reports that arm (qualifier 3, "closing") or disarm (1,
# "opening") a partition (DC-05 400-409, 441-442).  404 "late to open/close"
# and 405 "deferred" are a panel's own exception reports, 406 "cancel"
# cancels an alarm: none of them changes the arming state.
OPEN_CLOSE_CODES = frozenset((400, 401, 402, 403, 407, 408, 409, 441, 442))

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_MINUTES = 24 * 60
# The longest tolerance a schedule may have: beyond, "on time" means nothing.
MAX_TOLERANCE_MIN = 240
# The longest a temporary change may stay in force (a longer one is a new
# schedule, not a change).
MAX_CHANGE_S = 7 * 86400


class ScheduleError(ValueError):
    """A schedule, exception or temporary change that cannot be used; the
    message names the field."""


def arm_state(code: int, qualifier: int) -> bool | None:
    """True: the report arms its partition (a closing); False: it disarms
    it (an opening); None: it is not an arm/disarm report."""
    if code not in OPEN_CLOSE_CODES:
        return None
    return {1: False, 3: True}.get(qualifier)


# -- plans ------------------------------------------------------------------------------


def _hhmm(m: int) -> str:
    return "%02d:%02d" % divmod(m, 60)


def parse_window(text, where: str) -> "Window":
    """'08:30-09:00' -> Window(510, 540)."""
    m = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*", str(text)) \
        if isinstance(text, str) else None
    if not m:
        raise ScheduleError("%s: expected a window like \"08:30-09:00\", got %r"
                            % (where, text))
    h1, m1, h2, m2 = (int(x) for x in m.groups())
    if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59:
        raise ScheduleError("%s: %r is not a time of day (00:00-23:59)" % (where, text))
    return Window(h1 * 60 + m1, h2 * 60 + m2)


@dataclass(frozen=True)
class Window:
    """From ``start`` to ``end``, minutes after local midnight."""

    start: int
    end: int

    def __str__(self) -> str:
        return "%s-%s" % (_hhmm(self.start), _hhmm(self.end))


@dataclass(frozen=True)
class Hours:
    """A business day's two windows."""

    open: Window
    close: Window


@dataclass(frozen=True)
class DayPlan:
    """One day's plan: a business day has an opening and a closing window;
    a closed day has neither."""

    open: Window | None = None
    close: Window | None = None

    @property
    def business(self) -> bool:
        return self.open is not None

    def hours(self) -> Hours | None:
        """A business day's windows; None on a closed day."""
        if self.open is None or self.close is None:
            return None
        return Hours(self.open, self.close)

    def check(self, tolerance_min: int, where: str) -> None:
        if (self.open is None) != (self.close is None):
            raise ScheduleError("%s: a business day needs both an open and a close window "
                                "(or neither: closed)" % where)
        hours = self.hours()
        if hours is None:
            return
        o, c = hours.open, hours.close
        if not o.start <= o.end <= c.start <= c.end:
            raise ScheduleError(
                "%s: the windows must follow each other within the day: open %s, close %s"
                % (where, o, c))
        if o.start - tolerance_min < 0 or c.end + tolerance_min >= DAY_MINUTES:
            raise ScheduleError(
                "%s: with the tolerance of %d min, open %s and close %s must stay within "
                "the day (a night shift across midnight is not supported)"
                % (where, tolerance_min, o, c))

    def words(self) -> str:
        if not self.business:
            return "closed"
        return "open %s, close %s" % (self.open, self.close)

    def to_dict(self) -> dict:
        if not self.business:
            return {"closed": True}
        return {"open": str(self.open), "close": str(self.close)}


CLOSED = DayPlan()


def _plan_from(d: dict, where: str) -> DayPlan:
    if d == "closed" or (isinstance(d, dict) and d.get("closed") is True and len(d) == 1):
        return CLOSED
    if not isinstance(d, dict) or set(d) != {"open", "close"}:
        raise ScheduleError("%s: expected {open = \"HH:MM-HH:MM\", close = \"HH:MM-HH:MM\"} "
                            "or \"closed\", got %r" % (where, d))
    return DayPlan(parse_window(d["open"], where + ".open"),
                   parse_window(d["close"], where + ".close"))


def _zone(name, where: str) -> ZoneInfo:
    if not isinstance(name, str) or not name:
        raise ScheduleError("%s: a time zone name such as \"Europe/Berlin\" is required"
                            % where)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError("%s: unknown time zone %r (an IANA name such as "
                            "\"Europe/Berlin\")" % (where, name)) from None


@dataclass(frozen=True)
class Schedule:
    """One partition's opening schedule.  ``week``: Monday to Sunday;
    ``exceptions``: planned plans for given dates (a short day, an extra
    closed day); ``holidays``: closed dates (an exception wins over a
    holiday)."""

    account: str
    partition: int
    timezone: str
    week: tuple  # 7 DayPlans, Monday first
    tolerance_min: int = 15
    require_open: bool = False
    holidays: frozenset = frozenset()
    exceptions: dict = field(default_factory=dict)  # date -> DayPlan

    def __post_init__(self):
        where = "schedule %s/%d" % (self.account, self.partition)
        if not isinstance(self.partition, int) or self.partition < 1:
            raise ScheduleError("%s: the partition is a number from 1" % where)
        _zone(self.timezone, where + ".timezone")
        if not isinstance(self.tolerance_min, int) or isinstance(self.tolerance_min, bool) \
                or not 0 <= self.tolerance_min <= MAX_TOLERANCE_MIN:
            raise ScheduleError("%s.tolerance_min: whole minutes from 0 to %d"
                                % (where, MAX_TOLERANCE_MIN))
        if len(self.week) != 7:
            raise ScheduleError("%s: the week has 7 days" % where)
        for name, plan in zip(WEEKDAYS, self.week):
            plan.check(self.tolerance_min, "%s.%s" % (where, name))
        for day, plan in self.exceptions.items():
            plan.check(self.tolerance_min, "%s.exception %s" % (where, day))

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def base_plan(self, day: _dt.date) -> DayPlan:
        """The day's plan without temporary changes."""
        if day in self.exceptions:
            return self.exceptions[day]
        if day in self.holidays:
            return CLOSED
        return self.week[day.weekday()]

    def week_words(self) -> list[str]:
        """The week in words, days with the same plan together:
        ['mon-fri open 08:30-09:00, close 17:00-17:30', 'sat-sun closed']."""
        out, i = [], 0
        while i < 7:
            j = i
            while j + 1 < 7 and self.week[j + 1] == self.week[i]:
                j += 1
            days = WEEKDAYS[i] if i == j else "%s-%s" % (WEEKDAYS[i], WEEKDAYS[j])
            out.append("%s %s" % (days, self.week[i].words()))
            i = j + 1
        return out

    def words(self) -> str:
        """The whole schedule in one line (the audit trail's)."""
        extra = ["%s, %d min tolerance" % (self.timezone, self.tolerance_min)]
        if self.require_open:
            extra.append("opening required")
        if self.holidays:
            extra.append("%d holiday%s" % (len(self.holidays),
                                           "" if len(self.holidays) == 1 else "s"))
        if self.exceptions:
            extra.append("%d exception%s" % (len(self.exceptions),
                                             "" if len(self.exceptions) == 1 else "s"))
        return "%s (%s)" % ("; ".join(self.week_words()), ", ".join(extra))

    def to_dict(self) -> dict:
        """The JSON the store keeps (and ``schedules export`` prints)."""
        return {"account": self.account, "partition": self.partition,
                "timezone": self.timezone, "tolerance_min": self.tolerance_min,
                "require_open": self.require_open,
                "week": {n: p.to_dict() for n, p in zip(WEEKDAYS, self.week)},
                "holidays": sorted(d.isoformat() for d in self.holidays),
                "exceptions": [dict(p.to_dict(), date=d.isoformat())
                               for d, p in sorted(self.exceptions.items())]}

    @classmethod
    def from_dict(cls, d: dict) -> "Schedule":
        where = "schedule %s/%s" % (d.get("account"), d.get("partition"))
        week = tuple(_plan_from(d["week"][n], "%s.%s" % (where, n)) for n in WEEKDAYS)
        return cls(str(d["account"]), d["partition"], d["timezone"], week,
                   d.get("tolerance_min", 15), bool(d.get("require_open", False)),
                   frozenset(_date(x, where + ".holidays") for x in d.get("holidays", ())),
                   {_date(e["date"], where + ".exceptions"):
                        _plan_from({k: v for k, v in e.items() if k != "date"},
                                   "%s.exception %s" % (where, e["date"]))
                    for e in d.get("exceptions", ())})


def _date(v, where: str) -> _dt.date:
    if isinstance(v, _dt.date) and not isinstance(v, _dt.datetime):
        return v
    if isinstance(v, str):
        try:
            return _dt.date.fromisoformat(v)
        except ValueError:
            pass
    raise ScheduleError("%s: expected a date like 2026-12-24, got %r" % (where, v))


@dataclass(frozen=True)
class TemporaryChange:
    """An operator's change of one day's plan ("opens at 11:00 today"),
    in force from ``created_at`` until ``expires_at`` (Unix seconds)."""

    account: str
    partition: int
    day: _dt.date
    plan: DayPlan
    created_at: float
    expires_at: float
    by: str = ""
    reason: str = ""
    id: int | None = None  # the store's
    cancelled_at: float | None = None  # a cancel also sets expires_at to it
    cancelled_by: str | None = None

    def in_force(self, at: float) -> bool:
        return self.created_at <= at < self.expires_at

    def where(self) -> str:
        """'partition 1 of account 1001 on 2026-03-27'."""
        return "partition %d of account %s on %s" % (self.partition, self.account,
                                                     self.day.isoformat())

    def words(self) -> str:
        """'the hours of partition 1 of account 1001 on 2026-03-27: open
        10:30-11:00, close 17:00-17:30'."""
        return "the hours of %s: %s" % (self.where(), self.plan.words())

    def to_json(self) -> dict:
        return {"id": self.id, "account": self.account, "partition": self.partition,
                "day": self.day.isoformat(), "plan": self.plan.to_dict(),
                "plan_words": self.plan.words(), "created_at": self.created_at,
                "expires_at": self.expires_at, "by": self.by, "reason": self.reason,
                "cancelled_at": self.cancelled_at, "cancelled_by": self.cancelled_by}

    @classmethod
    def from_row(cls, row) -> "TemporaryChange":
        """From a ``schedule_changes`` row (both store backends)."""
        r = dict(row)
        where = "temporary change %s" % r["id"]
        return cls(r["account"], r["partition"], _date(r["day"], where),
                   _plan_from(json.loads(r["plan"]), where), r["created_at"],
                   r["expires_at"], r["created_by"], r["reason"], r["id"],
                   r.get("cancelled_at"), r.get("cancelled_by"))

    def check(self, schedule: Schedule) -> None:
        """Refuse a change that cannot mean anything (the store calls this
        before it writes one)."""
        where = "temporary change of %s/%d on %s" % (self.account, self.partition, self.day)
        if (self.account, self.partition) != (schedule.account, schedule.partition):
            raise ScheduleError("%s: not this schedule's partition" % where)
        self.plan.check(schedule.tolerance_min, where)
        if self.created_at >= day_start(schedule.tz, self.day + _dt.timedelta(days=1)):
            raise ScheduleError("%s: that day is over" % where)
        if not self.expires_at > self.created_at:
            raise ScheduleError("%s: it must expire after it is made" % where)
        if self.expires_at - self.created_at > MAX_CHANGE_S:
            raise ScheduleError("%s: a temporary change lasts at most %d days; change the "
                                "schedule instead" % (where, MAX_CHANGE_S // 86400))
        if not self.by:
            raise ScheduleError("%s: who made it is required" % where)
        if not self.reason.strip():
            # a day closed or moved drops or moves its deadlines: say why
            raise ScheduleError("%s: a reason is required (the console and the audit show "
                                "it)" % where)


def plan_for(schedule: Schedule, changes, day: _dt.date, at: float) -> DayPlan:
    """The plan of ``day`` in force at instant ``at``: the newest temporary
    change for the day in force then, else the planned one."""
    best = None
    for c in changes:
        if c.day == day and c.partition == schedule.partition and c.in_force(at):
            if best is None or c.created_at >= best.created_at:
                best = c
    return best.plan if best is not None else schedule.base_plan(day)


def week_ahead(schedule: Schedule, changes, first: _dt.date, at: float,
               days: int = 7) -> list[tuple[_dt.date, DayPlan, "TemporaryChange | None"]]:
    """The plan of each day from ``first`` on, as in force at ``at`` (a
    change in force then, else the planned one), with the change it comes
    from: what the CLI's ``schedules show`` and the console's site view
    print."""
    out = []
    for i in range(days):
        d = first + _dt.timedelta(days=i)
        live = [c for c in changes if c.day == d and c.partition == schedule.partition
                and c.in_force(at)]
        c = max(live, key=lambda c: c.created_at) if live else None
        out.append((d, c.plan if c is not None else schedule.base_plan(d), c))
    return out


def day_words(schedule: Schedule, day: _dt.date, plan: DayPlan, change) -> str:
    """'Fri 2026-03-27 open 10:30-11:00, close 17:00-17:30 (changed by olga
    until 23:59: staff training)', '... closed (holiday)'."""
    why = ""
    if change is not None:
        why = " (changed by %s until %s%s)" % (
            change.by, _hhmm(local(schedule.tz, change.expires_at)[1])
            if local(schedule.tz, change.expires_at)[0] == day
            else _dt.datetime.fromtimestamp(change.expires_at, schedule.tz).strftime(
                "%Y-%m-%d %H:%M"), ": " + change.reason if change.reason else "")
    elif day in schedule.exceptions:
        why = " (exception)"
    elif day in schedule.holidays:
        why = " (holiday)"
    return "%s %s %s%s" % (WEEKDAYS[day.weekday()].capitalize(), day.isoformat(),
                           plan.words(), why)


# -- wall-clock time ------------------------------------------------------------------


def local(tz: ZoneInfo, t: float) -> tuple[_dt.date, int]:
    """(local date, minute of the day) of instant ``t``."""
    d = _dt.datetime.fromtimestamp(t, tz)
    return d.date(), d.hour * 60 + d.minute


def boundary(tz: ZoneInfo, day: _dt.date, minute: int) -> float:
    """The first instant whose local time on ``day`` is ``minute`` (after
    midnight) or later: the gap of a spring-forward night maps to the
    instant after it, an autumn time that occurs twice to the first."""
    wall = _dt.datetime.combine(day, _dt.time()) + _dt.timedelta(minutes=minute)
    t0 = wall.replace(tzinfo=tz, fold=0).timestamp()
    if _dt.datetime.fromtimestamp(t0, tz).replace(tzinfo=None) == wall:
        return t0
    # a wall time that does not exist: fold=0 put it after the gap, fold=1
    # before; the transition lies between, where the offset changes
    lo = int(wall.replace(tzinfo=tz, fold=1).timestamp())
    hi = int(t0)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _dt.datetime.fromtimestamp(mid, tz).replace(tzinfo=None) >= wall:
            hi = mid
        else:
            lo = mid
    return float(hi)


def day_start(tz: ZoneInfo, day: _dt.date) -> float:
    return boundary(tz, day, 0)


# -- history and results ----------------------------------------------------------------


@dataclass(frozen=True)
class OpenClose:
    """One arm (``armed`` True) or disarm report of a partition (0: the
    whole panel), with the user who did it; ``at`` is when the receiver
    received it."""

    at: float
    partition: int
    armed: bool
    user: int | None = None


@dataclass(frozen=True)
class ScheduleEvent:
    """An event the receiver owes: ``at`` is the instant it became due."""

    account: str
    partition: int
    day: _dt.date
    kind: str
    at: float
    text: str
    user: int | None = None

    @property
    def code(self) -> int:
        return KINDS[self.kind][0]

    @property
    def qualifier(self) -> int:
        return KINDS[self.kind][1]

    @property
    def dedupe_key(self) -> str:
        """Unique per (account, partition, local day, kind): the events
        table's ``UNIQUE(account, dedupe_key)`` stores it once, whoever
        raises it and however often."""
        return "schedule:%d:%s:%s" % (self.partition, self.day.isoformat(), self.kind)

    def record_fields(self) -> dict:
        """The normalized event the receiver ingests (Receiver.make_record's
        dict; source 'schedule', peer 'receiver')."""
        return {"account": self.account, "dedupe_key": self.dedupe_key,
                "qualifier": self.qualifier, "code": self.code,
                "partition": self.partition,
                # a user names who opened; the exceptions about the partition
                # (a missed closing) name nobody and keep zone 0, so their
                # restore matches the alarm (same account/code/partition/zone)
                "zone": self.user if self.kind in _USER_KINDS and self.user else 0,
                "user": self.user, "text": self.text, "event_time": self.at,
                "received_at": self.at, "peer": "receiver", "source": SOURCE}


_USER_KINDS = frozenset((EARLY_OPEN, LATE_OPEN, UNSCHEDULED_OPEN))


def _who(user: int | None) -> str:
    return " by user %d" % user if user else ""


def _at(tz: ZoneInfo, t: float) -> str:
    return _hhmm(local(tz, t)[1])


# -- the evaluator ------------------------------------------------------------------------


def evaluate(schedule: Schedule, changes, history, start: float,
             now: float) -> list[ScheduleEvent]:
    """The events due by ``now`` for the local days from the one holding
    ``start`` to the one holding ``now``, in time order.

    ``history``: the partition's open/close reports (:class:`OpenClose`,
    partition 0 counts for every partition) from the start of the first day
    on, plus the last one before it (the state the day starts in); others
    are ignored.  ``changes``: the partition's temporary changes."""
    tz = schedule.tz
    p = schedule.partition
    hist = sorted((h for h in history if h.partition in (0, p) and h.at <= now),
                  key=lambda h: h.at)
    changes = [c for c in changes if c.partition == p]
    day, last = local(tz, start)[0], local(tz, now)[0]
    out: list[ScheduleEvent] = []
    while day <= last:
        out.extend(_evaluate_day(schedule, changes, hist, day, now, tz))
        day += _dt.timedelta(days=1)
    out.sort(key=lambda e: (e.at, e.kind))
    return out


def _state(hist, t: float) -> OpenClose | None:
    """The last report at or before ``t``."""
    last = None
    for h in hist:
        if h.at > t:
            break
        last = h
    return last


def _evaluate_day(schedule, changes, hist, day, now, tz) -> list[ScheduleEvent]:
    out: list[ScheduleEvent] = []
    t0, t1 = day_start(tz, day), day_start(tz, day + _dt.timedelta(days=1))
    tol = schedule.tolerance_min
    # instants at which the day's plan may change: its temporary changes
    cuts = sorted({t0} | {t for c in changes if c.day == day
                          for t in (c.created_at, c.expires_at) if t0 < t < t1})
    spans = list(zip(cuts, cuts[1:] + [t1]))

    def ev(kind, at, text, user=None):
        out.append(ScheduleEvent(schedule.account, schedule.partition, day, kind, at,
                                 text, user))

    # deadlines: each deadline in force is checked once, at the first
    # instant at which it is both past and in force, during its own day
    fired = {}
    for kind, want_armed in ((FAIL_TO_OPEN, True), (FAIL_TO_CLOSE, False)):
        checked = set()
        for a, b in spans:
            hours = plan_for(schedule, changes, day, a).hours()
            if hours is None or (kind == FAIL_TO_OPEN and not schedule.require_open):
                continue
            minute = (hours.open.end if kind == FAIL_TO_OPEN else hours.close.end) + tol
            if minute in checked:
                continue
            c = max(boundary(tz, day, minute), a)
            if c >= b:
                continue
            if c > now:
                break
            checked.add(minute)
            st = _state(hist, c)
            if st is not None and st.armed == want_armed:
                if kind == FAIL_TO_CLOSE:
                    ev(kind, c, "not armed by %s (close %s, %d min tolerance)"
                       % (_hhmm(minute), hours.close, tol))
                else:
                    ev(kind, c, "still armed at %s (open %s, %d min tolerance)"
                       % (_hhmm(minute), hours.open, tol))
                fired[kind] = c
                break
    # restores: the first report the other way after the firing
    for kind, restored, armed in ((FAIL_TO_CLOSE, FAIL_TO_CLOSE_RESTORED, True),
                                  (FAIL_TO_OPEN, FAIL_TO_OPEN_RESTORED, False)):
        if kind in fired:
            h = next((h for h in hist if h.at > fired[kind] and h.armed == armed), None)
            if h is not None:
                ev(restored, h.at, "%s at %s%s, %s after the deadline" % (
                    "armed" if armed else "disarmed", _at(tz, h.at), _who(h.user),
                    duration_text(h.at - fired[kind])), h.user)
    # disarms, each judged at its instant by the plan then in force
    seen = set()
    in_hours = False
    for h in hist:
        if h.armed or not t0 <= h.at < t1:
            continue
        hours = plan_for(schedule, changes, day, h.at).hours()
        m = local(tz, h.at)[1]
        if hours is None:
            kind, why = UNSCHEDULED_OPEN, "on a closed day"
        elif m < hours.open.start - tol:
            kind, why = EARLY_OPEN, "before the opening window %s" % hours.open
        elif m > hours.close.end + tol:
            kind, why = UNSCHEDULED_OPEN, "after closing (%s)" % hours.close
        else:
            first, in_hours = not in_hours, True
            if not first or m <= hours.open.end + tol or (
                    FAIL_TO_OPEN in fired and fired[FAIL_TO_OPEN] < h.at):
                continue  # on time, a later opening, or the fail to open's restore
            kind, why = LATE_OPEN, "after the opening window %s" % hours.open
        if kind not in seen:
            seen.add(kind)
            ev(kind, h.at, "disarmed at %s%s, %s" % (_at(tz, h.at), _who(h.user), why),
               h.user)
    return out


def next_check(schedule: Schedule, changes, after: float) -> float | None:
    """The first deadline instant later than ``after`` (within the next 8
    days), or None: when the scheduler should next evaluate the partition.
    Disarms are judged when they arrive (the ingest path), not here."""
    tz = schedule.tz
    day = local(tz, after)[0]
    changes = [c for c in changes if c.partition == schedule.partition]
    best = None
    for i in range(9):
        d = day + _dt.timedelta(days=i)
        t0, t1 = day_start(tz, d), day_start(tz, d + _dt.timedelta(days=1))
        cuts = sorted({t0} | {t for c in changes if c.day == d
                              for t in (c.created_at, c.expires_at) if t0 < t < t1})
        for a, b in zip(cuts, cuts[1:] + [t1]):
            hours = plan_for(schedule, changes, d, a).hours()
            if hours is None:
                continue
            mins = [hours.close.end]
            if schedule.require_open:
                mins.append(hours.open.end)
            for m in mins:
                c = max(boundary(tz, d, m + schedule.tolerance_min), a)
                if after < c < b and (best is None or c < best):
                    best = c
        if best is not None:
            return best
    return None


# -- the file format (schedules.toml) --------------------------------------------------


def _day_keys(key: str, where: str) -> list[int]:
    """'mon' -> [0]; 'mon-fri' -> [0..4]."""
    parts = key.split("-")
    if len(parts) == 1 and key in WEEKDAYS:
        return [WEEKDAYS.index(key)]
    if len(parts) == 2 and all(x in WEEKDAYS for x in parts):
        a, b = WEEKDAYS.index(parts[0]), WEEKDAYS.index(parts[1])
        if a < b:
            return list(range(a, b + 1))
    raise ScheduleError("%s: %r is not a weekday or a range of them (mon, tue, ..., sun; "
                        "mon-fri)" % (where, key))


_SCHEDULE_KEYS = {"account", "partitions", "timezone", "tolerance_min", "require_open",
                  "holidays", "week", "exception"}


def dump(scheds) -> dict:
    """The schedules as a schedules.toml document (``load`` reads it back
    to the same schedules): one ``[[schedule]]`` per partition, the week
    day by day, holidays and exceptions as dates."""
    out = []
    for s in sorted(scheds, key=lambda x: (x.account, x.partition)):
        d = {"account": s.account, "partitions": [s.partition], "timezone": s.timezone,
             "tolerance_min": s.tolerance_min, "require_open": s.require_open,
             "week": {n: ("closed" if not p.business else p.to_dict())
                      for n, p in zip(WEEKDAYS, s.week)}}
        if s.holidays:
            d["holidays"] = sorted(s.holidays)
        if s.exceptions:
            d["exception"] = [dict(p.to_dict(), date=day)
                              for day, p in sorted(s.exceptions.items())]
        out.append(d)
    return {"schedule": out}


def load(doc: dict) -> list[Schedule]:
    """The schedules of a parsed schedules.toml (examples/schedules.toml):
    ``[calendars]`` named holiday lists, and ``[[schedule]]`` tables, each
    for one or more partitions of an account.  Raises ScheduleError naming
    the table and key."""
    if not isinstance(doc, dict):
        raise ScheduleError("a schedules file is a TOML document")
    bad = set(doc) - {"calendars", "schedule"}
    if bad:
        raise ScheduleError("unknown top-level key(s) %s (allowed: calendars, schedule)"
                            % ", ".join(sorted(bad)))
    calendars = {}
    for name, dates in (doc.get("calendars") or {}).items():
        if not isinstance(dates, list):
            raise ScheduleError("calendars.%s: a list of dates" % name)
        calendars[name] = frozenset(_date(d, "calendars.%s" % name) for d in dates)
    out: list[Schedule] = []
    seen = set()
    for i, s in enumerate(doc.get("schedule") or []):
        where = "schedule[%d]" % i
        if not isinstance(s, dict):
            raise ScheduleError("%s: a table" % where)
        bad = set(s) - _SCHEDULE_KEYS
        if bad:
            raise ScheduleError("%s: unknown key(s) %s (allowed: %s)" % (
                where, ", ".join(sorted(bad)), ", ".join(sorted(_SCHEDULE_KEYS))))
        account = s.get("account")
        if not isinstance(account, str) or not account:
            raise ScheduleError("%s.account: the account number, as a string" % where)
        parts = s.get("partitions")
        if not isinstance(parts, list) or not parts or not all(
                isinstance(p, int) and not isinstance(p, bool) and p >= 1 for p in parts):
            raise ScheduleError("%s.partitions: a list of partition numbers (from 1)" % where)
        where = "schedule %s" % account
        week = [CLOSED] * 7
        given = set()
        for key, plan in (s.get("week") or {}).items():
            for d in _day_keys(key, where + ".week"):
                if d in given:
                    raise ScheduleError("%s.week: %s is given twice" % (where, WEEKDAYS[d]))
                given.add(d)
                week[d] = _plan_from(plan, "%s.week.%s" % (where, key))
        holidays = set()
        for h in s.get("holidays") or []:
            if isinstance(h, str) and h in calendars:
                holidays |= calendars[h]
            else:
                try:
                    holidays.add(_date(h, where + ".holidays"))
                except ScheduleError:
                    raise ScheduleError("%s.holidays: %r is neither a date (2026-12-24) nor "
                                        "a calendar of [calendars]" % (where, h)) from None
        exceptions = {}
        for e in s.get("exception") or []:
            if not isinstance(e, dict) or "date" not in e:
                raise ScheduleError("%s.exception: each needs a date" % where)
            d = _date(e["date"], where + ".exception.date")
            exceptions[d] = _plan_from({k: v for k, v in e.items() if k != "date"},
                                       "%s.exception %s" % (where, d))
        tol = s.get("tolerance_min", 15)
        require_open = s.get("require_open", False)
        if not isinstance(require_open, bool):
            raise ScheduleError("%s.require_open: true or false" % where)
        for p in parts:
            if (account, p) in seen:
                raise ScheduleError("%s: partition %d has two schedules" % (where, p))
            seen.add((account, p))
            out.append(Schedule(account, p, s.get("timezone", ""), tuple(week), tol,
                                require_open, frozenset(holidays), dict(exceptions)))
    return out

"""The console's live messages: what the receiver publishes to its
subscribers (receiver.pubsub) and the console's live stream sends them
as (server-sent events: the SSE event's name is the message's ``kind``,
its data the message's JSON).

Each message is a dataclass with one JSON shape, :meth:`to_json`; every
shape carries ``"type"`` (= ``kind``).  The console's JavaScript
(receiver/web/static/common.js and the pages) and the API read these field
names: add fields, never rename or drop one.

- ``event``: ``event``, the stored event's JSON (ingest, receiver.app)
- ``alarm``: ``alarm_id``, ``state``, ``event_id``, ``account``,
  ``event_class``, ``priority``, ``description``, ``routed_to``, ``by``,
  ``note`` (raised by ingest as "pending"; acknowledged or resolved by an
  operator)
- ``supervision``: ``account``, ``path``, ``failed``, ``at``
  (receiver.supervision_loop)
- ``security``: ``account``, ``reason``, ``detail``, ``peer`` (a security
  event stored; supervisors' consoles only)
- ``output``: ``output``, ``failing`` (an output's health changed)
- ``position``: ``point``, a stored track point's JSON (receiver.records.
  TrackPoint: a vehicle unit's POSITION message or an event's position)
- ``patrol``: ``account``, ``status``, ``at``, ``actor``, ``alarm_id``,
  ``dispatch`` (a patrol's status changed; dispatched to an alarm, or
  arrived: the dispatch's JSON, receiver.records.Dispatch)
- ``rules``: ``action``, ``account``, ``sentence``, ``alarm_id``, ``zone``,
  ``signals`` (a test placement, schedule, change or zone hold changed, or
  a held zone counted one more signal: receiver.rules_loop, the console's
  rules API)
- ``workflow``: ``alarm_id``, ``account``, ``change`` (claim, take_over,
  release, step, call, passcode, duress, cancel, recent_close, plan),
  ``handler``, ``handler_since``, ``claim_rev``, ``sentences``, ``by``:
  someone worked an alarm (receiver.workflow_service), or the panel said
  something about it (issue 22); never a passcode
- ``escalation``: ``alarm_id``, ``account``, ``escalation`` (ack, resolve,
  wait), ``sentence``, ``event_class``, ``description``, ``site_name``,
  ``at`` (receiver.workflow_loop: every console alerts, supervisors are
  notified)
- ``site``: ``account``, ``change`` (a site's notes, contacts or call
  lists changed)
- ``hello`` (``user``), ``resync`` (``dropped``: messages this stream lost;
  reload), ``logout``: the stream's own, written by receiver.web.api

With several receivers the messages travel between them as this JSON
(receiver.ownership): :func:`from_json` reads one back.

A leaf module: it imports only the store's records (receiver.records, a
leaf itself).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

from receiver.records import (Alarm, Dispatch, Event, EventRecord, PatrolStatus, TrackPoint,
                              TrackRecord)

if TYPE_CHECKING:
    from receiver.forwarder import Forwarder
    from receiver.link_policy import SecurityReport
    from receiver.supervision import Change


@dataclass(frozen=True)
class ConsoleMessage:
    """A live message; ``kind`` names it (the SSE event)."""

    kind: ClassVar[str] = "message"

    def to_json(self) -> dict:
        d = {"type": self.kind}
        d.update((f.name, getattr(self, f.name)) for f in fields(self))
        return d

    @classmethod
    def from_fields(cls, d: Mapping[str, Any]):
        """The message from its JSON (fields it lacks take their defaults;
        unknown ones are ignored: another receiver may be newer)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass(frozen=True)
class EventStored(ConsoleMessage):
    """An event the store took (not a duplicate); its JSON is the stored
    event's (receiver.records.Event), as GET /api/events gives it."""

    kind: ClassVar[str] = "event"
    event: Event

    @classmethod
    def of(cls, rec: EventRecord, event_id: int) -> "EventStored":
        return cls(rec.stored(event_id))

    def to_json(self) -> dict:
        return {"type": self.kind, "event": self.event.to_json()}

    @classmethod
    def from_fields(cls, d: Mapping[str, Any]) -> "EventStored":
        return cls(Event.from_json(dict(d["event"])))


@dataclass(frozen=True)
class AlarmUpdate(ConsoleMessage):
    """An alarm raised ("pending", ``by`` None) or moved on by an operator
    ("acknowledged", "resolved"; ``note`` with a resolve)."""

    kind: ClassVar[str] = "alarm"
    alarm_id: int
    state: str
    event_id: int | None = None
    account: str | None = None
    event_class: str | None = None
    priority: int | None = None
    description: str | None = None
    routed_to: dict | None = None
    by: str | None = None
    note: str | None = None

    @classmethod
    def raised(cls, rec: EventRecord, alarm_id: int, event_id: int) -> "AlarmUpdate":
        """The alarm ``rec`` opened (stored as event ``event_id``)."""
        return cls(alarm_id, "pending", event_id, rec.account, rec.event_class,
                   rec.priority, rec.description, rec.routed_to)

    @classmethod
    def moved(cls, alarm: Alarm, by: str, note: str | None = None) -> "AlarmUpdate":
        """``alarm``: the alarm after the transition, as the store gives it."""
        return cls(alarm.id, alarm.state, alarm.event_id, alarm.account, alarm.event_class,
                   alarm.priority, alarm.description, alarm.routed_to, by, note)


@dataclass(frozen=True)
class SupervisionChange(ConsoleMessage):
    """A supervised path failed (``failed``) or was heard again, at ``at``."""

    kind: ClassVar[str] = "supervision"
    account: str
    path: int
    failed: bool
    at: float

    @classmethod
    def of(cls, ch: Change) -> "SupervisionChange":
        return cls(ch.account, ch.path, ch.failed, ch.at)


@dataclass(frozen=True)
class SecurityRejected(ConsoleMessage):
    """A security event stored (supervisors' consoles only)."""

    kind: ClassVar[str] = "security"
    account: str | None
    reason: str
    detail: str
    peer: str

    @classmethod
    def of(cls, report: SecurityReport) -> "SecurityRejected":
        return cls(report.account, report.reason, report.detail, report.peer)


@dataclass(frozen=True)
class OutputHealth(ConsoleMessage):
    """An output started or stopped failing (this receiver's forwarder)."""

    kind: ClassVar[str] = "output"
    output: str
    failing: bool

    @classmethod
    def of(cls, f: Forwarder) -> "OutputHealth":
        return cls(f.output.name, f.failing_since is not None)


@dataclass(frozen=True)
class PositionStored(ConsoleMessage):
    """A track point the store took (not a copy): where a vehicle unit was."""

    kind: ClassVar[str] = "position"
    point: TrackPoint

    @classmethod
    def of(cls, rec: TrackRecord, point_id: int) -> "PositionStored":
        return cls(rec.stored(point_id))

    def to_json(self) -> dict:
        return {"type": self.kind, "point": self.point.to_json()}

    @classmethod
    def from_fields(cls, d: Mapping[str, Any]) -> "PositionStored":
        return cls(TrackPoint.from_json(dict(d["point"])))


@dataclass(frozen=True)
class PatrolUpdate(ConsoleMessage):
    """A patrol's status changed (console, keypad or receiver); with
    ``dispatch`` when it was dispatched to an alarm or arrived there."""

    kind: ClassVar[str] = "patrol"
    account: str
    status: str
    at: float
    actor: str
    alarm_id: int | None = None
    dispatch: dict | None = None

    @classmethod
    def of(cls, st: PatrolStatus, dispatch: Dispatch | None = None) -> "PatrolUpdate":
        return cls(st.account, st.status, st.at, st.actor, st.alarm_id,
                   None if dispatch is None else dispatch.to_json())


@dataclass(frozen=True)
class RulesUpdate(ConsoleMessage):
    """A change of the centre's rules for an account, in words:
    ``action`` is the rules audit's (test.place, test.end, schedule.set,
    schedule.delete, schedule.change, schedule.cancel, zone.hold,
    zone.release) or ``zone.signal`` (one more signal counted on a held
    zone's alarm ``alarm_id``: ``signals`` in all)."""

    kind: ClassVar[str] = "rules"
    action: str
    account: str
    sentence: str
    alarm_id: int | None = None
    zone: int | None = None
    signals: int | None = None


@dataclass(frozen=True)
class WorkflowChange(ConsoleMessage):
    """An alarm was worked (claimed, a step, a call ...) or the panel said
    something about it (a cancel, a recent closing); ``sentences``: the
    audit sentences the change wrote."""

    kind: ClassVar[str] = "workflow"
    alarm_id: int
    account: str
    change: str
    handler: str | None = None
    handler_since: float | None = None
    claim_rev: int = 0
    sentences: tuple = ()
    by: str | None = None

    @classmethod
    def of(cls, alarm: Alarm, change: str, sentences=(), by: str | None = None
           ) -> "WorkflowChange":
        return cls(alarm.id, alarm.account, change, alarm.handler, alarm.handler_since,
                   alarm.claim_rev, tuple(sentences), by)

    def to_json(self) -> dict:
        d = super().to_json()
        d["sentences"] = list(self.sentences)
        return d


@dataclass(frozen=True)
class Escalated(ConsoleMessage):
    """An escalation fired (receiver.workflow.escalation): ``ack`` alerts
    every console and notifies supervisors, ``resolve`` puts the alarm in
    the supervisor queue, ``wait`` reminds its handler to recheck."""

    kind: ClassVar[str] = "escalation"
    alarm_id: int
    account: str
    escalation: str
    sentence: str
    event_class: str = ""
    description: str = ""
    site_name: str = ""
    at: float = 0.0


@dataclass(frozen=True)
class SiteChanged(ConsoleMessage):
    """A site's notes, contacts or call lists changed."""

    kind: ClassVar[str] = "site"
    account: str
    change: str


# -- the stream's own messages (receiver.web.api) -------------------------------------


@dataclass(frozen=True)
class Hello(ConsoleMessage):
    kind: ClassVar[str] = "hello"
    user: str


@dataclass(frozen=True)
class Resync(ConsoleMessage):
    """Messages were dropped for this stream (it fell behind): reload."""

    kind: ClassVar[str] = "resync"
    dropped: int


@dataclass(frozen=True)
class Logout(ConsoleMessage):
    """The session ended: the page goes to the login."""

    kind: ClassVar[str] = "logout"


# what another receiver may send (receiver.ownership)
PUBLISHED: dict[str, type[ConsoleMessage]] = {
    m.kind: m for m in (EventStored, AlarmUpdate, SupervisionChange, SecurityRejected,
                        OutputHealth, PositionStored, PatrolUpdate, RulesUpdate,
                        WorkflowChange, Escalated, SiteChanged)}


def from_json(d: Mapping[str, Any]) -> ConsoleMessage | None:
    """A published message from its JSON; None for a kind not published
    (or a malformed one)."""
    cls = PUBLISHED.get(str(d.get("type")))
    if cls is None:
        return None
    try:
        return cls.from_fields(d)
    except (TypeError, KeyError, ValueError):  # a required field missing or malformed
        return None

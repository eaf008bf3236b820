"""The console's state, one per aiohttp app (:func:`receiver.web.console.setup`
builds it), and what the console reads and asks of the receiver it runs in
(:class:`ConsoleHost`: the receiver is not imported, so the console sits on
the receiver's leaf modules and never on ``receiver.app``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from receiver.alarms import AlarmPolicy
from receiver.config import Config
from receiver.connections import ConnectionRegistry
from receiver.forwarder import Forwarder
from receiver.pubsub import Subscription
from receiver.routing import Router
from receiver.records import Account, ZoneHold
from receiver.rules.schedules import Schedule, TemporaryChange
from receiver.rules.testmode import Placement
from receiver.store import Store
from receiver.supervision import Supervisor
from receiver.vehicles.service import VehicleService
from receiver.web.auth import LoginThrottle, Sessions, StreamLimits, ThrottledLog
from receiver.web.sessions import SessionStore
from receiver.web.users import UserStore
from receiver.workflow_service import Workflow


class ConsoleHost(Protocol):
    """What the console reads and asks of the receiver (receiver.app.Receiver)."""

    config: Config
    store: Store
    router: Router
    alarm_policy: AlarmPolicy
    forwarders: dict[str, Forwarder]
    supervisor: Supervisor
    connections: ConnectionRegistry
    vehicles: VehicleService
    workflow: Workflow  # the operator's workflow (receiver.workflow_service)

    def account(self, number: str) -> Account | None: ...

    def subscribe(self) -> Subscription: ...

    def unsubscribe(self, q: Subscription) -> None: ...

    def center_names(self) -> dict: ...

    async def send_command(self, account: str, command: str, partition: int = 1,
                           arg: int = 0, by: str = "?", timeout: float = ...) -> dict: ...

    # the centre's rules (receiver.web.rules_api): each audited and told
    async def place_on_test(self, p: Placement) -> Placement: ...

    async def end_test(self, placement_id: int, by: str) -> Placement | None: ...

    async def release_zone(self, account: str, zone: int, by: str) -> ZoneHold: ...

    async def set_schedule(self, s: Schedule, by: str) -> bool: ...

    async def change_schedule(self, c: TemporaryChange) -> TemporaryChange: ...

    async def cancel_schedule_change(self, change_id: int, by: str) -> TemporaryChange: ...


@dataclass
class Console:
    """The console's state.  Handlers go through ``session_store``
    (receiver.web.sessions): the user store chooses it (in memory over
    ``sessions`` for SQLite, the shared database for PostgreSQL)."""

    receiver: ConsoleHost
    users: UserStore
    sessions: Sessions = field(default_factory=Sessions)
    session_store: SessionStore = field(init=False)  # the user store's choice
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    secure_cookie: bool = False
    streams: set = field(default_factory=set)  # open live streams
    stream_limits: StreamLimits = field(default_factory=StreamLimits)
    throttled_log: ThrottledLog = field(default_factory=ThrottledLog)
    routes: list = field(default_factory=list)  # [(method, path, permission)]
    csp: str = ""  # the Content-Security-Policy (receiver.web.console)

    def __post_init__(self):
        # the user store's backend decides: this process's memory (SQLite),
        # or the shared database (PostgreSQL)
        self.session_store = self.users.session_store(self.sessions)

"""Sessions, roles and login throttling for the console (no I/O, no clock:
``now`` comes in as an argument, so tests drive hours in microseconds).

With an SQLite receiver, sessions live in memory (:class:`Sessions`), in
the receiver process: a restart logs everyone out, which is the safe
direction for a console that dispatches police.  With PostgreSQL they live
in the shared database (receiver.web.pg_users), behind the same
interface (receiver.web.sessions).
The browser holds an opaque random token (256 bits, ``secrets``) in an
HttpOnly, SameSite=Strict cookie; the server keys its table by the
token's SHA-256, so the table itself holds nothing a thief could replay.
Each session carries its own CSRF token, returned by ``/api/me`` and
required in the ``X-CSRF-Token`` header of every state-changing request.

Invariants:

- Every permission check goes through :data:`PERMISSIONS` (one table,
  permission -> roles); a permission not in the table is refused
  (KeyError), not silently allowed.
- The session table and the throttle's key table are bounded
  (:data:`MAX_SESSIONS`, :data:`MAX_THROTTLE_KEYS`); the oldest entries go
  first when full.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from receiver.web.users import ADMINISTRATOR, OPERATOR, SUPERVISOR

# -- roles ---------------------------------------------------------------------------

VIEW = "view"  # alarm queue, sites, panels, history, dispatch
ALARM_ACT = "alarm.act"  # acknowledge, resolve
SECURITY_VIEW = "security.view"  # rejected frames (wrong key, replay, ...)
AUDIT_VIEW = "audit.view"  # console audit log (logins, user changes, actions)
USERS_MANAGE = "users.manage"
PANEL_COMMAND = "panel.command"  # arm, disarm, status of a panel (remote commands)

_ALL = frozenset((OPERATOR, SUPERVISOR, ADMINISTRATOR))
_SUPERVISION = frozenset((SUPERVISOR, ADMINISTRATOR))

# PERMISSIONS[permission] -> roles that hold it.  Each role holds what the
# one before it holds: a supervisor stands in for an operator at a busy
# moment, and an administrator is also a supervisor.
PERMISSIONS = {
    VIEW: _ALL,
    ALARM_ACT: _ALL,
    SECURITY_VIEW: _SUPERVISION,
    AUDIT_VIEW: _SUPERVISION,
    PANEL_COMMAND: _SUPERVISION,
    USERS_MANAGE: frozenset((ADMINISTRATOR,)),
}


def allowed(role: str, permission: str) -> bool:
    return role in PERMISSIONS[permission]


def permissions_of(role: str) -> list[str]:
    return sorted(p for p, roles in PERMISSIONS.items() if role in roles)


# -- sessions ------------------------------------------------------------------------

# A shift in a monitoring centre is up to 12 hours; nobody stays logged in
# across two.
SESSION_MAX_AGE_S = 12 * 3600
# Without a request (or an open live stream) for this long, the session
# ends: a console left unattended does not stay usable for a passer-by.
SESSION_IDLE_S = 30 * 60
# Concurrent sessions: a city centre has tens of operator seats; this
# bounds what a credential-stuffing success loop could pile up.
MAX_SESSIONS = 1000


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


@dataclass
class Session:
    user: str
    role: str
    csrf: str
    created_at: float
    last_seen: float
    ip: str = ""
    key: str = ""  # sha256 of the cookie token
    checked_at: float = 0.0  # last re-check against a shared store (live streams)

    def check_csrf(self, value: str | None) -> bool:
        return bool(value) and hmac.compare_digest(self.csrf.encode(),
                                                   str(value).encode("utf-8", "replace"))


class Sessions:
    def __init__(self, max_age_s: float = SESSION_MAX_AGE_S, idle_s: float = SESSION_IDLE_S,
                 max_sessions: int = MAX_SESSIONS):
        self.max_age_s = max_age_s
        self.idle_s = idle_s
        self.max_sessions = max_sessions
        self._by_key: OrderedDict[str, Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._by_key)

    def create(self, user: str, role: str, now: float, ip: str = "") -> tuple[str, Session]:
        """A new session; returns (cookie token, session)."""
        token = secrets.token_urlsafe(32)
        key = _digest(token)
        s = Session(user, role, secrets.token_urlsafe(32), now, now, ip, key)
        while len(self._by_key) >= self.max_sessions:
            self._by_key.popitem(last=False)
        self._by_key[key] = s
        return token, s

    def get(self, token: str | None, now: float, touch: bool = True) -> Session | None:
        """The live session of ``token``, or None (expired ones are dropped)."""
        if not token:
            return None
        key = _digest(token)
        s = self._by_key.get(key)
        if s is None:
            return None
        if now - s.created_at > self.max_age_s or now - s.last_seen > self.idle_s:
            del self._by_key[key]
            return None
        if touch:
            s.last_seen = now
        return s

    def alive(self, s: Session, now: float) -> bool:
        return (self._by_key.get(s.key) is s and now - s.created_at <= self.max_age_s
                and now - s.last_seen <= self.idle_s)

    def all(self) -> list[Session]:
        return list(self._by_key.values())

    def end(self, s: Session) -> None:
        self._by_key.pop(s.key, None)

    def end_user(self, user: str) -> int:
        """End every session of ``user`` (password change, role change,
        disabled, deleted).  Returns how many."""
        keys = [k for k, s in self._by_key.items() if s.user == user]
        for k in keys:
            del self._by_key[k]
        return len(keys)

    def sweep(self, now: float) -> None:
        for k, s in list(self._by_key.items()):
            if now - s.created_at > self.max_age_s or now - s.last_seen > self.idle_s:
                del self._by_key[k]


# -- login throttling ------------------------------------------------------------------

# Failed logins counted over this window.
THROTTLE_WINDOW_S = 15 * 60
# Per user name: OWASP's authentication cheat sheet suggests locking after a
# handful of failures; 5 in 15 minutes stops online guessing while an
# operator who mistypes twice is not locked out.
MAX_FAILURES_PER_USER = 5
# Per client address: a centre's seats may share one NAT address, so the
# per-address bound is higher than the per-name one.
MAX_FAILURES_PER_IP = 20
# Keys (names and addresses) tracked at most; a spray over random names
# evicts the oldest keys rather than growing memory.
MAX_THROTTLE_KEYS = 10_000


class LoginThrottle:
    """Sliding-window count of failed logins per user name and per client
    address.  A blocked login is refused before the password is checked."""

    def __init__(self, window_s: float = THROTTLE_WINDOW_S,
                 per_user: int = MAX_FAILURES_PER_USER, per_ip: int = MAX_FAILURES_PER_IP,
                 max_keys: int = MAX_THROTTLE_KEYS):
        self.window_s = window_s
        self.limits = {"user": per_user, "ip": per_ip}
        self.max_keys = max_keys
        self._fails: OrderedDict[tuple[str, str], deque] = OrderedDict()

    def _recent(self, key, now: float) -> deque | None:
        d = self._fails.get(key)
        if d is None:
            return None
        while d and now - d[0] > self.window_s:
            d.popleft()
        if not d:
            del self._fails[key]
            return None
        return d

    def retry_after(self, user: str, ip: str, now: float) -> float:
        """0 when a login may be tried now, else seconds to wait."""
        wait = 0.0
        for kind, value in (("user", user), ("ip", ip)):
            d = self._recent((kind, value), now)
            if d is not None and len(d) >= self.limits[kind]:
                wait = max(wait, d[0] + self.window_s - now)
        return wait

    def failed(self, user: str, ip: str, now: float) -> None:
        for key in (("user", user), ("ip", ip)):
            d = self._recent(key, now)
            if d is None:
                d = self._fails[key] = deque(maxlen=max(self.limits.values()))
                while len(self._fails) > self.max_keys:
                    self._fails.popitem(last=False)
            d.append(now)

    def succeeded(self, user: str) -> None:
        """A correct password clears that name's failures (not the address's:
        one good account must not reset a spray from the same address)."""
        self._fails.pop(("user", user), None)


@dataclass
class Console:
    """The console's state, one per aiohttp app (see receiver.web.setup).

    Handlers go through ``session_store`` (receiver.web.sessions): the user
    store chooses it (in memory over ``sessions`` for SQLite, the shared
    database for PostgreSQL)."""

    receiver: object
    users: object  # receiver.web.users.UserStore
    sessions: Sessions = field(default_factory=Sessions)
    session_store: object = None  # receiver.web.sessions.SessionStore
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    secure_cookie: bool = False
    streams: set = field(default_factory=set)  # open live streams
    routes: list = field(default_factory=list)  # [(method, path, permission)]

    def __post_init__(self):
        if self.session_store is None:
            make = getattr(self.users, "session_store", None)
            if make is not None:
                self.session_store = make(self.sessions)
            else:
                from receiver.web.sessions import MemorySessionStore  # noqa: PLC0415

                self.session_store = MemorySessionStore(self.sessions)

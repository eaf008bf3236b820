"""Sessions, roles, login throttling and the console's other limits (no
I/O, no clock: ``now`` comes in as an argument, so tests drive hours in
microseconds).

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
  first when full.  A login *lock* is never among them: locks live in a
  table of their own (:data:`MAX_LOCKS`, fail closed when full).
- Live streams (:class:`StreamLimits`), throttled-login audit rows
  (:class:`ThrottledLog`) and where a login may send the browser
  (:func:`safe_next`) are decided here, from data passed in.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

# -- roles ---------------------------------------------------------------------------

# A console user's role (receiver.web.users stores it), lowest first.
OPERATOR = "operator"
SUPERVISOR = "supervisor"
ADMINISTRATOR = "administrator"
ROLES = (OPERATOR, SUPERVISOR, ADMINISTRATOR)

# What a role may do:
VIEW = "view"  # alarm queue, sites, panels, history, dispatch, plans
# work alarms: take, take over, release one's own, steps, calls, passcodes,
# acknowledge, resolve; add site notes (and delete one's own)
ALARM_ACT = "alarm.act"
# resolve over open mandatory steps (with a reason), release anyone's claim,
# delete anyone's site note, the supervisor queue
ALARM_OVERRIDE = "alarm.override"
SITES_MANAGE = "sites.manage"  # contacts, passcodes, call lists, a site's time zone
WORKFLOW_MANAGE = "workflow.manage"  # load plans and dispositions (console editor, files)
SECURITY_VIEW = "security.view"  # rejected frames (wrong key, replay, ...)
AUDIT_VIEW = "audit.view"  # console audit log (logins, user changes, actions)
USERS_MANAGE = "users.manage"
PANEL_COMMAND = "panel.command"  # arm, disarm, status of a panel (remote commands)
# the centre's rules (issue 18; receiver.web.rules_api)
TEST_PLACE = "test.place"  # place on test, end a test (a walk test places its own)
SCHEDULE_CHANGE = "schedule.change"  # a temporary change of a day's hours, its cancel
SCHEDULE_MANAGE = "schedule.manage"  # set a partition's schedule
ZONE_RELEASE = "zone.release"  # release a held (runaway) zone
REPORT_VIEW = "report.view"  # the centre's reports

_ALL = frozenset((OPERATOR, SUPERVISOR, ADMINISTRATOR))
_SUPERVISION = frozenset((SUPERVISOR, ADMINISTRATOR))

# PERMISSIONS[permission] -> roles that hold it.  Each role holds what the
# one before it holds: a supervisor stands in for an operator at a busy
# moment, and an administrator is also a supervisor.
PERMISSIONS = {
    VIEW: _ALL,
    ALARM_ACT: _ALL,
    ALARM_OVERRIDE: _SUPERVISION,
    SITES_MANAGE: _SUPERVISION,
    WORKFLOW_MANAGE: frozenset((ADMINISTRATOR,)),
    SECURITY_VIEW: _SUPERVISION,
    AUDIT_VIEW: _SUPERVISION,
    PANEL_COMMAND: _SUPERVISION,
    USERS_MANAGE: frozenset((ADMINISTRATOR,)),
    TEST_PLACE: _ALL,
    SCHEDULE_CHANGE: _ALL,  # an operator takes the branch's call: "we open at 11 today"
    SCHEDULE_MANAGE: frozenset((ADMINISTRATOR,)),
    ZONE_RELEASE: _SUPERVISION,
    REPORT_VIEW: _SUPERVISION,
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
# Keys (names and addresses) counted at most; a spray over random names
# evicts the oldest *counts* rather than growing memory.  A key that
# reached its limit is a lock and lives in a table of its own, which no
# spray can evict (see MAX_LOCKS).
MAX_THROTTLE_KEYS = 10_000
# Locks held at most.  Each lock costs the attacker MAX_FAILURES_PER_USER
# argon2 verifies (or MAX_FAILURES_PER_IP for an address), and at most
# MAX_CONCURRENT_HASHES verifies run at once (~0.1 s each), so a window
# holds a few thousand locks at the very most; this bound is far above
# that.  Were it ever full, every login is refused until locks expire
# (fail closed: a lock is never dropped to make room).
MAX_LOCKS = 100_000


class LoginThrottle:
    """Sliding-window count of failed logins per user name and per client
    address.  A blocked login is refused before the password is checked.

    Two tables: ``_fails`` counts recent failures (bounded, oldest key
    evicted first), ``_locks`` holds the keys that reached their limit
    until their window slides past (never evicted: a spray of fresh names
    must not unlock a name under attack)."""

    def __init__(self, window_s: float = THROTTLE_WINDOW_S,
                 per_user: int = MAX_FAILURES_PER_USER, per_ip: int = MAX_FAILURES_PER_IP,
                 max_keys: int = MAX_THROTTLE_KEYS, max_locks: int = MAX_LOCKS):
        self.window_s = window_s
        self.limits = {"user": per_user, "ip": per_ip}
        self.max_keys = max_keys
        self.max_locks = max_locks
        self._fails: OrderedDict[tuple[str, str], deque] = OrderedDict()
        self._locks: dict[tuple[str, str], float] = {}  # key -> locked until

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

    def _locked_until(self, key, now: float) -> float:
        until = self._locks.get(key)
        if until is None:
            return 0.0
        if until <= now:
            del self._locks[key]
            return 0.0
        return until

    def _expire_locks(self, now: float) -> None:
        for key in [k for k, until in self._locks.items() if until <= now]:
            del self._locks[key]

    def retry_after(self, user: str, ip: str, now: float) -> float:
        """0 when a login may be tried now, else seconds to wait."""
        if len(self._locks) >= self.max_locks:
            self._expire_locks(now)
            if len(self._locks) >= self.max_locks:
                return max(1.0, min(self._locks.values()) - now)
        wait = 0.0
        for kind, value in (("user", user), ("ip", ip)):
            until = self._locked_until((kind, value), now)
            if until:
                wait = max(wait, until - now)
        return wait

    def failed(self, user: str, ip: str, now: float) -> None:
        for kind, value in (("user", user), ("ip", ip)):
            key = (kind, value)
            d = self._recent(key, now)
            if d is None:
                d = self._fails[key] = deque(maxlen=max(self.limits.values()))
                while len(self._fails) > self.max_keys:
                    self._fails.popitem(last=False)
            else:
                self._fails.move_to_end(key)
            d.append(now)
            limit = self.limits[kind]
            if len(d) >= limit:
                # Locked until the oldest of the last `limit` failures
                # leaves the window.
                self._locks[key] = max(self._locks.get(key, 0.0), d[-limit] + self.window_s)

    def succeeded(self, user: str) -> None:
        """A correct password clears that name's failures (not the address's:
        one good account must not reset a spray from the same address).  A
        locked name never gets here: its logins are refused first."""
        self._fails.pop(("user", user), None)


# -- throttled logins in the audit log -------------------------------------------------

# Throttled logins are written to the console audit as one row per client
# address per interval (its count amended when the interval ends), not one
# per request: 709 refused requests a second from one address once added
# 21,337 fsync'd rows in 30 s.
THROTTLED_AUDIT_INTERVAL_S = 60.0
# Addresses that get their own row per interval; past this, a distributed
# flood is summed into one row for "other addresses" (actor "*").
THROTTLED_AUDIT_ADDRESSES = 100
# Distinct names listed in one row (the rest are counted).
THROTTLED_AUDIT_NAMES = 5
OTHER_ADDRESSES = "*"


@dataclass
class ThrottledTally:
    """Refused logins of one address (or of every address past the bound)
    during one interval: what its audit row says."""

    ip: str
    first_at: float
    last_at: float
    attempts: int = 1
    names: list = field(default_factory=list)
    more_names: int = 0
    addresses: int = 1  # for the OTHER_ADDRESSES tally
    row_id: int | None = None  # set by the caller once its row is written
    written: int = 1  # attempts the row already says

    def add_name(self, name: str) -> None:
        if name in self.names:
            return
        if len(self.names) < THROTTLED_AUDIT_NAMES:
            self.names.append(name)
        else:
            self.more_names += 1

    def detail(self) -> str:
        names = ",".join(self.names)
        if self.more_names:
            names += " and %d more" % self.more_names
        text = "attempts=%d over_s=%d names=%s" % (
            self.attempts, round(self.last_at - self.first_at), names)
        if self.ip == OTHER_ADDRESSES:
            text += " addresses=%d" % self.addresses
        return text


class ThrottledLog:
    """Aggregates throttled login attempts (no I/O, explicit time).

    :meth:`note` counts one attempt and returns a tally when it opens a new
    one (write its audit row and log line now); :meth:`due` returns the
    tallies whose interval ended with attempts their row does not say yet
    (amend the row).  The table holds at most THROTTLED_AUDIT_ADDRESSES + 1
    tallies, so neither memory nor the audit table grows with the number
    of requests or addresses."""

    def __init__(self, interval_s: float = THROTTLED_AUDIT_INTERVAL_S,
                 max_addresses: int = THROTTLED_AUDIT_ADDRESSES):
        self.interval_s = interval_s
        self.max_addresses = max_addresses
        self._open: dict[str, ThrottledTally] = {}
        self._closed: list[ThrottledTally] = []

    def _close_expired(self, now: float) -> None:
        for ip in [ip for ip, t in self._open.items()
                   if now - t.first_at >= self.interval_s]:
            self._closed.append(self._open.pop(ip))

    def note(self, ip: str, name: str, now: float) -> ThrottledTally | None:
        self._close_expired(now)
        t = self._open.get(ip)
        if t is None and len(self._open) >= self.max_addresses:
            t = self._open.get(OTHER_ADDRESSES)
            if t is not None:
                t.addresses += 1
            ip = OTHER_ADDRESSES
        if t is None:
            t = self._open[ip] = ThrottledTally(ip, now, now)
            t.add_name(name)
            return t
        t.attempts += 1
        t.last_at = now
        t.add_name(name)
        return None

    def due(self, now: float) -> list[ThrottledTally]:
        self._close_expired(now)
        out = [t for t in self._closed if t.attempts > t.written]
        self._closed = []
        return out


# -- live streams -------------------------------------------------------------------------

# Live streams open at once (each holds one of the receiver's subscriber
# queues, up to receiver.pubsub.SUBSCRIBER_QUEUE messages, and a descriptor).
MAX_STREAMS = 128
# Per session (one browser: its tabs share the cookie).  A browser opens at
# most 6 HTTP/1.1 connections to one host; 4 live pages leave two for the
# pages' own API calls.
MAX_STREAMS_PER_SESSION = 4
# Per user, all sessions: a desk and a wall screen under the same name.
MAX_STREAMS_PER_USER = 8
# Streams kept for each role whatever the others hold: one operator (or
# one compromised account) filling the console cannot take the seats of
# the operators on shift, nor they the supervisors'.  The rest
# (MAX_STREAMS - the reserves) is shared, first come.
STREAM_RESERVE = {OPERATOR: 48, SUPERVISOR: 16, ADMINISTRATOR: 8}


@dataclass(frozen=True)
class StreamLimits:
    total: int = MAX_STREAMS
    per_session: int = MAX_STREAMS_PER_SESSION
    per_user: int = MAX_STREAMS_PER_USER
    reserve: tuple = tuple(sorted(STREAM_RESERVE.items()))

    def refusal(self, open_streams, user: str, key: str, role: str) -> str | None:
        """Why a new live stream for (user, session key, role) is refused,
        in words for the operator, or None when it may open.
        ``open_streams`` are (user, session key, role) of the live ones."""
        by_key = by_user = 0
        by_role: dict[str, int] = {}
        for u, k, r in open_streams:
            by_key += k == key
            by_user += u == user
            by_role[r] = by_role.get(r, 0) + 1
        if by_key >= self.per_session:
            return ("this browser already has %d live console pages open; close one to "
                    "get live updates here" % by_key)
        if by_user >= self.per_user:
            return ("%s already has %d live console pages open (all sessions); close one "
                    "to get live updates here" % (user, by_user))
        reserve = dict(self.reserve)
        if by_role.get(role, 0) < reserve.get(role, 0):
            return None  # a seat kept for this role
        shared = self.total - sum(reserve.values())
        shared_used = sum(max(0, n - reserve.get(r, 0)) for r, n in by_role.items())
        if shared_used >= shared:
            return ("the console has no live-update slot free for the %s role (%d pages "
                    "open)" % (role, sum(by_role.values())))
        return None


# -- where to go after login ----------------------------------------------------------------

# Longest ?next= kept (a console path with its query); longer is dropped.
MAX_NEXT = 2000


def safe_next(value) -> str:
    """Where the browser may go after login: ``value`` when it is a path
    on this console, else ``/``.  Parsed, not pattern-matched: control
    characters and backslashes are refused outright (a browser's URL
    parser drops tab, CR and LF anywhere and reads ``\\`` as ``/``, which
    turned ``/%09/host`` into ``//host``); what is left must parse
    (urllib, RFC 3986) with no scheme and no host, and as a path that is
    absolute but not network-path (``//``).  The page checks the answer
    again with the browser's own parser (WHATWG URL) before it goes."""
    if not isinstance(value, str) or not value or len(value) > MAX_NEXT:
        return "/"
    if any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or c == "\\" for c in value):
        return "/"
    try:
        parts = urlsplit(value)
    except ValueError:
        return "/"
    if parts.scheme or parts.netloc or not parts.path.startswith("/") \
            or parts.path.startswith("//"):
        return "/"
    return urlunsplit(("", "", parts.path, parts.query, parts.fragment))

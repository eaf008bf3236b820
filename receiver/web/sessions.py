"""Where the console keeps its sessions: the small async interface the
handlers use, and its in-memory implementation for a single receiver.

Two backends sit behind :class:`SessionStore`:

- :class:`MemorySessionStore` (SQLite receivers: one process) wraps
  :class:`receiver.web.auth.Sessions`; a restart logs everyone out.
- ``receiver.web.pg_users.PGSessionStore`` (PostgreSQL receivers) keeps
  the sessions in the shared database (table ``console_sessions``), so a
  login on one receiver is valid on every receiver behind the same load
  balancer, and a logout or a user change ends the session everywhere.

Invariants, whichever backend:

- Only the SHA-256 of the cookie token is stored or compared; the token
  itself exists in the browser and in the response that set it.
- ``get`` answers None for an expired session (12 h from login, or idle
  longer than :data:`receiver.web.auth.SESSION_IDLE_S`) and for a session
  whose user was deleted, disabled or given another role.
- ``shared`` tells whether other receivers see the same sessions (then
  the user store ends a changed user's sessions itself, in the same
  transaction as the change, and live streams re-check their session
  against the database).
"""

from __future__ import annotations

import abc

from receiver.web import auth


class SessionStore(abc.ABC):
    """What the console's handlers need from session storage."""

    shared = False
    max_age_s: float = auth.SESSION_MAX_AGE_S
    idle_s: float = auth.SESSION_IDLE_S

    @abc.abstractmethod
    async def create(self, user: str, role: str, now: float,
                     ip: str = "") -> tuple[str, auth.Session]:
        """A new session; returns (cookie token, session)."""

    @abc.abstractmethod
    async def get(self, token: str | None, now: float) -> auth.Session | None:
        """The live session of ``token`` (its idle clock restarted), or None."""

    @abc.abstractmethod
    async def alive(self, s: auth.Session, now: float) -> bool:
        """Is ``s`` (held by a live stream) still valid?  An open stream
        counts as use: it restarts the idle clock."""

    @abc.abstractmethod
    async def end(self, s: auth.Session) -> None: ...

    @abc.abstractmethod
    async def end_user(self, user: str) -> int:
        """End every session of ``user``; returns how many."""

    @abc.abstractmethod
    async def sweep(self, now: float) -> int:
        """Drop expired sessions; returns how many were dropped."""


class MemorySessionStore(SessionStore):
    """The in-memory table of one receiver process (auth.Sessions)."""

    def __init__(self, table: auth.Sessions):
        self.table = table
        self.max_age_s = table.max_age_s
        self.idle_s = table.idle_s

    async def create(self, user, role, now, ip=""):
        return self.table.create(user, role, now, ip)

    async def get(self, token, now):
        return self.table.get(token, now)

    async def alive(self, s, now):
        if not self.table.alive(s, now):
            return False
        s.last_seen = now
        return True

    async def end(self, s):
        self.table.end(s)

    async def end_user(self, user):
        return self.table.end_user(user)

    async def sweep(self, now):
        n = len(self.table)
        self.table.sweep(now)
        return n - len(self.table)

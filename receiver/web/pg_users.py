"""Console users, console audit and console sessions in PostgreSQL: the
backend used when the receiver's store is PostgreSQL (receiver.pg_store),
so several receivers behind one load balancer share one console.

Tables (in the receiver's database, beside the receiver's own schema,
which is never touched): ``console_meta`` (version row),
``console_users``, ``console_audit`` (the same columns and meaning as the
SQLite backend, receiver.web.users) and ``console_sessions``.

Invariants:

- Same password rules as the SQLite backend (argon2id, worker threads,
  dummy verify for unknown names): the hashing code is shared.
- ``console_sessions`` holds the SHA-256 of each cookie token, never the
  token.  A session row is valid while it has not expired (``expires_at``,
  12 h from login), has been used within ``SESSION_IDLE_S``, and its user
  still exists, is enabled and has the role the session was opened with;
  ``get`` checks all of it in one statement, so no receiver trusts a
  cached answer for a request.
- A user change (password, role, disabled, deleted) deletes that user's
  session rows in the same transaction as the change (deleting the user
  cascades), whichever receiver or CLI made it: every receiver sees the
  sessions end at once, without comparing clocks.
- Changes that could remove the last enabled administrator run under a
  transaction-level advisory lock, so two administrators demoting each
  other on two receivers cannot both succeed.
- The schema is migrated under an advisory lock, in one transaction, so
  receivers started together migrate once; a newer schema is refused.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time

import asyncpg

from receiver.store import mask_url
from receiver.web import auth
from receiver.web.sessions import SessionStore
from receiver.web.users import (ADMINISTRATOR, MAX_AUDIT_ROWS, User, UserError, UserStore,
                                change_detail, check_name, check_role, hash_password,
                                needs_rehash, verify_password)

_LOGGER = logging.getLogger(__name__)

# Version of the console's PostgreSQL tables (console_meta 'schema_version').
PG_SCHEMA_VERSION = 1
# Connections the console keeps to the database: a login (argon2 runs
# outside any connection) and a request's session look-up are one short
# statement each; two let one slow statement not queue the other.
POOL_SIZE = 2
# Same bounds as receiver.pg_store: a stalled server turns into an error,
# not a console request that never answers.
CONNECT_TIMEOUT_S = 10  # seconds (asyncpg takes an int here)
COMMAND_TIMEOUT_S = 15.0
# A request restarts its session's idle clock in the database at most this
# often (not on every request: that would be a write per page poll).  The
# idle limit is therefore kept to within this many seconds.
TOUCH_S = 30.0
# An open live stream re-checks its session against the database this
# often, so a logout or user change on another receiver closes it within
# about this long (plus a keepalive interval).
STREAM_RECHECK_S = 15.0
# Arbitrary constant keys of the advisory locks (migration; user changes).
_MIGRATION_LOCK = 0x476C436F6E  # "GlCon"
_USERS_LOCK = 0x476C557372  # "GlUsr"


def _schema_v1() -> list[str]:
    return [
        """CREATE TABLE console_users (
            name TEXT PRIMARY KEY,
            role TEXT NOT NULL CHECK (role IN ('operator', 'supervisor', 'administrator')),
            password_hash TEXT NOT NULL,
            disabled BOOLEAN NOT NULL DEFAULT FALSE,
            created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL,
            last_login_at DOUBLE PRECISION)""",
        """CREATE TABLE console_audit (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            at DOUBLE PRECISION NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT '',
            ip TEXT NOT NULL DEFAULT '')""",
        """CREATE INDEX console_audit_at ON console_audit (at)""",
        # token_hash: hex SHA-256 of the cookie token (auth._digest).
        """CREATE TABLE console_sessions (
            token_hash TEXT PRIMARY KEY CHECK (length(token_hash) = 64),
            user_name TEXT NOT NULL REFERENCES console_users (name) ON DELETE CASCADE,
            role TEXT NOT NULL,
            csrf TEXT NOT NULL,
            ip TEXT NOT NULL DEFAULT '',
            created_at DOUBLE PRECISION NOT NULL,
            last_seen DOUBLE PRECISION NOT NULL,
            expires_at DOUBLE PRECISION NOT NULL)""",
        """CREATE INDEX console_sessions_user ON console_sessions (user_name)""",
        """CREATE INDEX console_sessions_expires ON console_sessions (expires_at)""",
    ]


# _MIGRATIONS[i] brings the console's PostgreSQL tables from version i to i + 1.
_MIGRATIONS = [_schema_v1]
assert len(_MIGRATIONS) == PG_SCHEMA_VERSION


def _user(r) -> User:
    return User(r["name"], r["role"], bool(r["disabled"]), r["created_at"], r["updated_at"],
                r["last_login_at"])


class PGUserStore(UserStore):
    """Console users in the receiver's PostgreSQL database (a small pool
    of its own, so the console never takes the receiver's connections)."""

    def __init__(self, url: str, pool_size: int = POOL_SIZE):
        self.url = url
        self.path = mask_url(url)  # what logs and messages show
        self.pool_size = pool_size
        self.pool: asyncpg.Pool | None = None

    # -- plumbing -----------------------------------------------------------

    async def open(self) -> None:
        conn = await asyncpg.connect(self.url, timeout=CONNECT_TIMEOUT_S,
                                     command_timeout=COMMAND_TIMEOUT_S)
        try:
            await self._migrate(conn)
        finally:
            await conn.close()
        self.pool = await asyncpg.create_pool(
            self.url, min_size=1, max_size=self.pool_size, timeout=CONNECT_TIMEOUT_S,
            command_timeout=COMMAND_TIMEOUT_S,
            server_settings={"application_name": "guardline-console"})

    async def close(self) -> None:
        pool, self.pool = self.pool, None
        if pool is not None:
            await pool.close()

    def open_pool(self) -> asyncpg.Pool:
        """The connection pool (shared with the session store); RuntimeError
        when the store is not open."""
        if self.pool is None:
            raise RuntimeError("console user store %s is not open" % self.path)
        return self.pool

    async def _migrate(self, conn) -> None:
        async with conn.transaction():
            # One receiver migrates; the others wait here, then find it done.
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            await conn.execute("""CREATE TABLE IF NOT EXISTS console_meta (
                key TEXT PRIMARY KEY, value BIGINT NOT NULL)""")
            current = await conn.fetchval(
                "SELECT value FROM console_meta WHERE key = 'schema_version'") or 0
            if current > PG_SCHEMA_VERSION:
                raise RuntimeError("console tables in %s have version %d; this console "
                                   "knows up to %d" % (self.path, current, PG_SCHEMA_VERSION))
            for v in range(current, PG_SCHEMA_VERSION):
                for stmt in _MIGRATIONS[v]():
                    await conn.execute(stmt)
                _LOGGER.info("console tables migrated url=%s schema_version=%d",
                             self.path, v + 1)
            await conn.execute("""INSERT INTO console_meta (key, value)
                                  VALUES ('schema_version', $1)
                                  ON CONFLICT (key) DO UPDATE SET value = excluded.value""",
                               PG_SCHEMA_VERSION)

    async def schema_version(self) -> int:
        return await self.open_pool().fetchval(
            "SELECT value FROM console_meta WHERE key = 'schema_version'")

    def session_store(self, table=None) -> "PGSessionStore":
        return PGSessionStore(self)

    # -- users --------------------------------------------------------------

    async def count(self) -> int:
        return await self.open_pool().fetchval("SELECT COUNT(*) FROM console_users")

    async def list_users(self) -> list[User]:
        return [_user(r) for r in await self.open_pool().fetch(
            "SELECT * FROM console_users ORDER BY name")]

    async def get(self, name: str) -> User | None:
        r = await self.open_pool().fetchrow("SELECT * FROM console_users WHERE name = $1",
                                            name)
        return None if r is None else _user(r)

    async def add(self, name: str, role: str, password: str) -> User:
        check_name(name)
        check_role(role)
        h = await asyncio.to_thread(hash_password, password)
        now = time.time()
        r = await self.open_pool().fetchrow(
            """INSERT INTO console_users (name, role, password_hash, created_at, updated_at)
               VALUES ($1, $2, $3, $4, $4) ON CONFLICT (name) DO NOTHING RETURNING *""",
            name, role, h, now)
        if r is None:
            raise UserError("user %s exists" % name)
        return _user(r)

    async def _last_admin_check(self, c, r, new_role: str, new_dis: bool) -> None:
        if r["role"] == ADMINISTRATOR and not r["disabled"] and (
                new_role != ADMINISTRATOR or new_dis):
            others = await c.fetchval("""SELECT COUNT(*) FROM console_users WHERE
                                         role = 'administrator' AND NOT disabled AND
                                         name != $1""", r["name"])
            if others == 0:
                raise UserError("%s is the last enabled administrator" % r["name"])

    async def _apply_update(self, name, role, disabled, password_hash, actor, ip, action,
                            now) -> User:
        async with self.open_pool().acquire() as c, c.transaction():
            await c.execute("SELECT pg_advisory_xact_lock($1)", _USERS_LOCK)
            r = await c.fetchrow("SELECT * FROM console_users WHERE name = $1 FOR UPDATE", name)
            if r is None:
                raise UserError("no user %s" % name)
            old = _user(r)
            new_role = old.role if role is None else role
            new_dis = old.disabled if disabled is None else disabled
            await self._last_admin_check(c, r, new_role, new_dis)
            r = await c.fetchrow("""UPDATE console_users SET role = $1, disabled = $2,
                                    updated_at = $3,
                                    password_hash = COALESCE($4, password_hash)
                                    WHERE name = $5 RETURNING *""",
                                 new_role, new_dis, now, password_hash, name)
            await c.execute("""INSERT INTO console_audit (at, actor, action, detail, ip)
                               VALUES ($1, $2, $3, $4, $5)""", now, actor, action,
                            change_detail(name, old, role, disabled,
                                          password_hash is not None)[:500], ip)
            # every receiver sees the change at once: the sessions are gone
            await c.execute("DELETE FROM console_sessions WHERE user_name = $1", name)
        return _user(r)

    async def delete(self, name: str) -> None:
        async with self.open_pool().acquire() as c, c.transaction():
            await c.execute("SELECT pg_advisory_xact_lock($1)", _USERS_LOCK)
            r = await c.fetchrow("SELECT * FROM console_users WHERE name = $1 FOR UPDATE", name)
            if r is None:
                raise UserError("no user %s" % name)
            await self._last_admin_check(c, r, "", True)
            # ON DELETE CASCADE ends the user's sessions in this transaction.
            await c.execute("DELETE FROM console_users WHERE name = $1", name)

    async def authenticate(self, name: str, password: str) -> User | None:
        r = None
        if isinstance(name, str):
            r = await self.open_pool().fetchrow("SELECT * FROM console_users WHERE name = $1",
                                            name)
        stored = r["password_hash"] if r is not None else None
        ok = await asyncio.to_thread(verify_password, stored, password)
        if not ok or r is None or stored is None or r["disabled"]:
            return None
        now = time.time()
        new_hash = (await asyncio.to_thread(hash_password, password)
                    if needs_rehash(stored) else None)
        async with self.open_pool().acquire() as c, c.transaction():
            if new_hash is not None:
                # Only if nobody changed the password meanwhile.
                await c.execute("""UPDATE console_users SET password_hash = $1
                                   WHERE name = $2 AND password_hash = $3""",
                                new_hash, name, stored)
            await c.execute("UPDATE console_users SET last_login_at = $1 WHERE name = $2",
                            now, name)
        u = _user(r)
        u.last_login_at = now
        return u

    # -- audit ----------------------------------------------------------------

    async def record(self, actor, action, detail="", ip="", at=None) -> int:
        at = time.time() if at is None else at
        return await self.open_pool().fetchval(
            """INSERT INTO console_audit (at, actor, action, detail, ip)
               VALUES ($1, $2, $3, $4, $5) RETURNING id""", at, actor[:64], action,
            detail[:500], ip[:64])

    async def amend_audit(self, row_id, detail) -> None:
        await self.open_pool().execute("UPDATE console_audit SET detail = $2 WHERE id = $1",
                                   row_id, detail[:500])

    async def prune_audit(self, actions, before, keep, batch) -> int:
        rows = await self.open_pool().fetch(
            """DELETE FROM console_audit WHERE id IN (
                   SELECT id FROM console_audit WHERE action = ANY($1::text[]) AND (
                       at < $2 OR id <= (
                           SELECT id FROM console_audit WHERE action = ANY($1::text[])
                           ORDER BY id DESC LIMIT 1 OFFSET $3))
                   ORDER BY id LIMIT $4) RETURNING 1""", list(actions), before, keep, batch)
        return len(rows)

    async def list_audit(self, since=None, limit=500) -> list[dict]:
        limit = max(1, min(int(limit), MAX_AUDIT_ROWS))
        if since is None:
            rows = await self.open_pool().fetch(
                "SELECT * FROM console_audit ORDER BY id DESC LIMIT $1", limit)
        else:
            rows = await self.open_pool().fetch(
                "SELECT * FROM console_audit WHERE at >= $1 ORDER BY id DESC LIMIT $2",
                float(since), limit)
        return [dict(r) for r in rows]


# A session row is valid when all of this holds ($2: now, $3: idle seconds).
_VALID = """s.expires_at >= $2 AND s.last_seen >= $2 - $3
            AND NOT u.disabled AND u.role = s.role"""


class PGSessionStore(SessionStore):
    """Console sessions in ``console_sessions``, shared by every receiver
    on the database (see the module docstring for what makes one valid)."""

    shared = True

    def __init__(self, users: PGUserStore, max_age_s: float = auth.SESSION_MAX_AGE_S,
                 idle_s: float = auth.SESSION_IDLE_S, max_sessions: int = auth.MAX_SESSIONS):
        self.users = users
        self.max_age_s = max_age_s
        self.idle_s = idle_s
        self.max_sessions = max_sessions

    def _pool(self) -> asyncpg.Pool:
        return self.users.open_pool()

    async def create(self, user, role, now, ip=""):
        token = secrets.token_urlsafe(32)
        key = hashlib.sha256(token.encode()).hexdigest()
        s = auth.Session(user, role, secrets.token_urlsafe(32), now, now, ip, key, now)
        async with self._pool().acquire() as c, c.transaction():
            await c.execute(
                """INSERT INTO console_sessions (token_hash, user_name, role, csrf, ip,
                   created_at, last_seen, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $6, $7)""",
                key, user, role, s.csrf, ip, now, now + self.max_age_s)
            # The table stays bounded, as the in-memory one: the oldest go.
            await c.execute("""DELETE FROM console_sessions WHERE token_hash IN (
                                   SELECT token_hash FROM console_sessions
                                   ORDER BY created_at DESC OFFSET $1)""", self.max_sessions)
        return token, s

    async def get(self, token, now):
        if not token:
            return None
        key = hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()
        r = await self._pool().fetchrow(
            """SELECT s.* FROM console_sessions s JOIN console_users u ON u.name = s.user_name
               WHERE s.token_hash = $1 AND """ + _VALID, key, now, self.idle_s)
        if r is None:
            return None
        if now - r["last_seen"] >= TOUCH_S:
            await self._pool().execute(
                "UPDATE console_sessions SET last_seen = $2 WHERE token_hash = $1 "
                "AND last_seen < $2", key, now)
        return auth.Session(r["user_name"], r["role"], r["csrf"], r["created_at"], now,
                            r["ip"], key, now)

    async def alive(self, s, now):
        if now - s.created_at > self.max_age_s:
            return False
        if now - s.checked_at < STREAM_RECHECK_S:
            s.last_seen = now
            return True
        r = await self._pool().fetchval(
            """UPDATE console_sessions s SET last_seen = $2 FROM console_users u
               WHERE s.token_hash = $1 AND u.name = s.user_name AND """ + _VALID +
            " RETURNING 1", s.key, now, self.idle_s)
        if r is None:
            return False
        s.last_seen = s.checked_at = now
        return True

    async def end(self, s):
        await self._pool().execute("DELETE FROM console_sessions WHERE token_hash = $1", s.key)

    async def end_user(self, user):
        rows = await self._pool().fetch(
            "DELETE FROM console_sessions WHERE user_name = $1 RETURNING 1", user)
        return len(rows)

    async def sweep(self, now):
        rows = await self._pool().fetch(
            """DELETE FROM console_sessions WHERE expires_at < $1 OR last_seen < $1 - $2
               RETURNING 1""", now, self.idle_s)
        return len(rows)

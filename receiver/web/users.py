"""Console users: names, roles and argon2id password hashes, plus the
console's own audit log (logins, failed logins, user changes).

The console keeps its users in the receiver's own database file, in tables
of its own (``console_meta``, ``console_users``, ``console_audit``) with a
version row in ``console_meta``: the receiver's schema
(``receiver.sqlite_store``) is never touched, and the receiver never reads
these tables.

Everything goes through :class:`UserStore`: :class:`SQLiteUserStore` here,
``receiver.web.pg_users.PGUserStore`` for a PostgreSQL receiver (same
tables and meaning, plus the shared ``console_sessions``);
``receiver.web.user_stores`` picks the backend (from the receiver's store,
or from a ``--db`` value for the CLI).

Invariants:

- A password is never stored, logged or returned: only its argon2id hash
  (argon2-cffi's ``PasswordHasher`` defaults, RFC 9106's second recommended
  option: t=3, m=64 MiB, p=4).  Hashing and verifying run off the event loop
  in a worker thread, at most :data:`MAX_CONCURRENT_HASHES` at once (each
  takes 64 MiB), so a login flood cannot stall the receiver's ACKs or
  exhaust memory.
- Looking up a name that does not exist costs the same argon2 verify as a
  wrong password (a dummy hash), so response time does not tell which
  names exist.
- ``role`` is one of :data:`ROLES`; names are short printable identifiers
  (:func:`check_name`), so they can appear in audit rows and log lines
  without escaping.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import re
import sqlite3
import time
from dataclasses import dataclass

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from receiver import hash_slots
from receiver.web.auth import ADMINISTRATOR, OPERATOR, ROLES, SUPERVISOR  # noqa: F401
from receiver.web.sessions import MemorySessionStore

_LOGGER = logging.getLogger(__name__)

# Version of the console's own tables (console_meta 'schema_version').
SCHEMA_VERSION = 1
# NIST SP 800-63B 5.1.1.2: at least 8 characters for a memorized secret;
# this console guards the dispatch of police to banks, so we ask for 10.
# The upper bound keeps argon2's input (and a request body) small.
MIN_PASSWORD_LEN = 10
MAX_PASSWORD_LEN = 256
# Names: what fits in an audit row and a log line without quoting.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
# argon2 work at once: one bound for logins and passcodes (receiver.hash_slots).
MAX_CONCURRENT_HASHES = hash_slots.MAX_CONCURRENT_HASHES
# How long a statement waits for the receiver's writer lock (the
# receiver's own BUSY_TIMEOUT_MS is the same).
BUSY_TIMEOUT_MS = 5000
# Console audit rows returned at most by one query.
MAX_AUDIT_ROWS = 5000

_hasher = argon2.PasswordHasher()
_hash_slots = hash_slots.slots
# Verified against when a name is unknown, so that costs a real verify.
_DUMMY_HASH = _hasher.hash("not a password of anyone's")


class UserError(ValueError):
    """A request about users that cannot be done (unknown name, bad role,
    weak password, name taken); the message is for the person asking."""


@dataclass
class User:
    name: str
    role: str
    disabled: bool = False
    created_at: float = 0.0
    updated_at: float = 0.0
    last_login_at: float | None = None

    def to_dict(self) -> dict:
        return {"name": self.name, "role": self.role, "disabled": self.disabled,
                "created_at": self.created_at, "updated_at": self.updated_at,
                "last_login_at": self.last_login_at}


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise UserError("a user name is 1-64 characters: letters, digits and . _ @ - "
                        "(starting with a letter or digit)")
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise UserError("role must be one of %s" % ", ".join(ROLES))
    return role


def check_password(password: str) -> str:
    if not isinstance(password, str):
        raise UserError("password must be text")
    if len(password) < MIN_PASSWORD_LEN:
        raise UserError("a password needs at least %d characters" % MIN_PASSWORD_LEN)
    if len(password) > MAX_PASSWORD_LEN:
        raise UserError("a password has at most %d characters" % MAX_PASSWORD_LEN)
    return password


def change_detail(name: str, old: "User", role: str | None, disabled: bool | None,
                  password_changed: bool) -> str:
    """The audit row's words for a user change: what was asked, old -> new."""
    parts = ["name=%s" % name]
    if role is not None:
        parts.append("role=%s->%s" % (old.role, role))
    if disabled is not None:
        parts.append("disabled=%s->%s" % (str(old.disabled).lower(), str(disabled).lower()))
    if password_changed:
        parts.append("password=changed")
    return " ".join(parts)


def hash_password(password: str) -> str:
    """argon2id hash (blocking: call from a worker thread)."""
    check_password(password)
    with _hash_slots:
        return _hasher.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """True when ``password`` matches (blocking).  ``stored_hash`` None
    verifies against a dummy hash and returns False (same cost)."""
    if not isinstance(password, str) or len(password) > MAX_PASSWORD_LEN:
        password = ""
    with _hash_slots:
        try:
            ok = _hasher.verify(stored_hash or _DUMMY_HASH, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
    return ok and stored_hash is not None


def needs_rehash(stored_hash: str) -> bool:
    try:
        return _hasher.check_needs_rehash(stored_hash)
    except InvalidHashError:
        return True


class UserStore(abc.ABC):
    """What the console needs from user storage (all coroutines)."""

    @abc.abstractmethod
    async def open(self) -> None:
        """Create or check the console's tables."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def count(self) -> int: ...

    @abc.abstractmethod
    async def list_users(self) -> list[User]: ...

    @abc.abstractmethod
    async def get(self, name: str) -> User | None: ...

    @abc.abstractmethod
    async def add(self, name: str, role: str, password: str) -> User:
        """Raises UserError when the name is taken or a field is bad."""

    async def update(self, name: str, role: str | None = None, disabled: bool | None = None,
                     password: str | None = None, *, actor: str, ip: str = "",
                     action: str = "user.update") -> User:
        """Change a user's role, status and/or password, all or nothing:
        every field is checked (and a new password hashed) before anything
        is written; then one transaction applies the change and its console
        audit row (``action`` by ``actor``), and on a backend with shared
        sessions deletes that user's sessions.  Raises UserError (unknown
        user, bad field, last enabled administrator) with nothing changed."""
        if role is not None:
            check_role(role)
        if disabled is not None and not isinstance(disabled, bool):
            raise UserError("disabled must be true or false")
        if password is not None:
            check_password(password)
        h = None if password is None else await asyncio.to_thread(hash_password, password)
        return await self._apply_update(name, role, disabled, h, actor, ip, action,
                                        time.time())

    async def set_password(self, name: str, password: str, *, actor: str, ip: str = "") -> None:
        await self.update(name, password=password, actor=actor, ip=ip, action="user.passwd")

    @abc.abstractmethod
    async def _apply_update(self, name: str, role: str | None, disabled: bool | None,
                            password_hash: str | None, actor: str, ip: str, action: str,
                            now: float) -> User:
        """One transaction: the checked change, its audit row (detail from
        :func:`change_detail`) and, with shared sessions, the end of the
        user's sessions."""

    @abc.abstractmethod
    async def delete(self, name: str) -> None: ...

    @abc.abstractmethod
    async def authenticate(self, name: str, password: str) -> User | None:
        """The user when the password matches and the account is enabled;
        None otherwise (same cost whether or not the name exists)."""

    @abc.abstractmethod
    async def record(self, actor: str, action: str, detail: str = "", ip: str = "",
                     at: float | None = None) -> int:
        """Append to the console audit log; returns the row's id."""

    @abc.abstractmethod
    async def amend_audit(self, row_id: int, detail: str) -> None:
        """Replace the detail of row ``row_id`` (an aggregated row whose
        count grew: receiver.web.auth.ThrottledLog)."""

    @abc.abstractmethod
    async def prune_audit(self, actions: tuple[str, ...], before: float, keep: int,
                          batch: int) -> int:
        """Delete audit rows with one of ``actions`` older than ``before``
        and all but the newest ``keep`` of them, at most ``batch`` per call;
        returns how many went (receiver.retention)."""

    @abc.abstractmethod
    async def list_audit(self, since: float | None = None, limit: int = 500) -> list[dict]:
        """Console audit rows, newest first."""

    def session_store(self, table):
        """Where this backend keeps console sessions (receiver.web.sessions):
        by default the in-memory ``table`` (an auth.Sessions) of this one
        process."""
        return MemorySessionStore(table)


def _schema_v1() -> list[str]:
    return [
        """CREATE TABLE console_users (
            name TEXT PRIMARY KEY,
            role TEXT NOT NULL CHECK (role IN ('operator', 'supervisor', 'administrator')),
            password_hash TEXT NOT NULL,
            disabled INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            last_login_at REAL)""",
        """CREATE TABLE console_audit (
            id INTEGER PRIMARY KEY,
            at REAL NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT '',
            ip TEXT NOT NULL DEFAULT '')""",
        """CREATE INDEX console_audit_at ON console_audit (at)""",
    ]


# _MIGRATIONS[i] brings the console's tables from version i to i + 1.
_MIGRATIONS = [_schema_v1]
assert len(_MIGRATIONS) == SCHEMA_VERSION


class SQLiteUserStore(UserStore):
    """Console users in an SQLite file (the receiver's database).

    One short-lived connection per call, in a worker thread: user changes
    are rare, and the receiver's writer thread keeps its own connection;
    SQLite's file lock plus ``busy_timeout`` serialises the two."""

    def __init__(self, path: str):
        self.path = str(path)

    # -- plumbing -----------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None,
                               timeout=BUSY_TIMEOUT_MS / 1000)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout=%d" % BUSY_TIMEOUT_MS)
        conn.execute("PRAGMA synchronous=FULL")
        return conn

    def _run(self, fn, *args):
        conn = self._connect()
        try:
            return fn(conn, *args)
        finally:
            conn.close()

    async def _call(self, fn, *args):
        return await asyncio.to_thread(self._run, fn, *args)

    @staticmethod
    def _user(r) -> User:
        return User(r["name"], r["role"], bool(r["disabled"]), r["created_at"],
                    r["updated_at"], r["last_login_at"])

    # -- schema -------------------------------------------------------------

    @staticmethod
    def _migrate(conn) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("""CREATE TABLE IF NOT EXISTS console_meta (
                key TEXT PRIMARY KEY, value INTEGER NOT NULL)""")
            row = conn.execute(
                "SELECT value FROM console_meta WHERE key = 'schema_version'").fetchone()
            current = row[0] if row else 0
            if current > SCHEMA_VERSION:
                raise RuntimeError("console tables have version %d; this console knows up "
                                   "to %d" % (current, SCHEMA_VERSION))
            for v in range(current, SCHEMA_VERSION):
                for stmt in _MIGRATIONS[v]():
                    conn.execute(stmt)
            conn.execute("""INSERT INTO console_meta (key, value) VALUES ('schema_version', ?)
                            ON CONFLICT (key) DO UPDATE SET value = excluded.value""",
                         (SCHEMA_VERSION,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    async def open(self) -> None:
        await self._call(self._migrate)

    async def close(self) -> None:
        pass  # no connection is kept

    def open_sync(self) -> None:
        """For the CLI, which has no event loop of its own here."""
        self._run(self._migrate)

    # -- users --------------------------------------------------------------

    async def count(self) -> int:
        return await self._call(lambda c: c.execute(
            "SELECT COUNT(*) FROM console_users").fetchone()[0])

    async def list_users(self) -> list[User]:
        return await self._call(lambda c: [self._user(r) for r in c.execute(
            "SELECT * FROM console_users ORDER BY name")])

    async def get(self, name: str) -> User | None:
        def job(c):
            r = c.execute("SELECT * FROM console_users WHERE name = ?", (name,)).fetchone()
            return None if r is None else self._user(r)
        return await self._call(job)

    async def add(self, name: str, role: str, password: str) -> User:
        check_name(name)
        check_role(role)
        h = await asyncio.to_thread(hash_password, password)
        now = time.time()

        def job(c):
            try:
                c.execute("""INSERT INTO console_users (name, role, password_hash, created_at,
                             updated_at) VALUES (?, ?, ?, ?, ?)""", (name, role, h, now, now))
            except sqlite3.IntegrityError:
                raise UserError("user %s exists" % name) from None
            return self._user(c.execute("SELECT * FROM console_users WHERE name = ?",
                                        (name,)).fetchone())
        return await self._call(job)

    async def _apply_update(self, name, role, disabled, password_hash, actor, ip, action,
                            now) -> User:
        def job(c):
            c.execute("BEGIN IMMEDIATE")
            try:
                r = c.execute("SELECT * FROM console_users WHERE name = ?", (name,)).fetchone()
                if r is None:
                    raise UserError("no user %s" % name)
                old = self._user(r)
                new_role = old.role if role is None else role
                new_dis = old.disabled if disabled is None else disabled
                if old.role == ADMINISTRATOR and not old.disabled and (
                        new_role != ADMINISTRATOR or new_dis):
                    others = c.execute("""SELECT COUNT(*) FROM console_users WHERE
                                          role = 'administrator' AND disabled = 0 AND
                                          name != ?""", (name,)).fetchone()[0]
                    if others == 0:
                        raise UserError("%s is the last enabled administrator" % name)
                c.execute("""UPDATE console_users SET role = ?, disabled = ?, updated_at = ?,
                             password_hash = COALESCE(?, password_hash) WHERE name = ?""",
                          (new_role, int(new_dis), now, password_hash, name))
                c.execute("""INSERT INTO console_audit (at, actor, action, detail, ip)
                             VALUES (?, ?, ?, ?, ?)""",
                          (now, actor, action, change_detail(
                              name, old, role, disabled, password_hash is not None)[:500], ip))
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
            return self._user(c.execute("SELECT * FROM console_users WHERE name = ?",
                                        (name,)).fetchone())
        return await self._call(job)

    async def delete(self, name: str) -> None:
        def job(c):
            c.execute("BEGIN IMMEDIATE")
            try:
                r = c.execute("SELECT * FROM console_users WHERE name = ?", (name,)).fetchone()
                if r is None:
                    raise UserError("no user %s" % name)
                if r["role"] == ADMINISTRATOR and not r["disabled"]:
                    others = c.execute("""SELECT COUNT(*) FROM console_users WHERE
                                          role = 'administrator' AND disabled = 0 AND
                                          name != ?""", (name,)).fetchone()[0]
                    if others == 0:
                        raise UserError("%s is the last enabled administrator" % name)
                c.execute("DELETE FROM console_users WHERE name = ?", (name,))
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise
        await self._call(job)

    async def authenticate(self, name: str, password: str) -> User | None:
        def lookup(c):
            return c.execute("SELECT * FROM console_users WHERE name = ?", (name,)).fetchone()
        r = await self._call(lookup) if isinstance(name, str) else None
        stored = r["password_hash"] if r is not None else None
        ok = await asyncio.to_thread(verify_password, stored, password)
        if not ok or r is None or stored is None or r["disabled"]:
            return None
        now = time.time()
        rehash = needs_rehash(stored)
        new_hash = await asyncio.to_thread(hash_password, password) if rehash else None

        def stamp(c):
            if new_hash is not None:
                c.execute("UPDATE console_users SET password_hash = ? WHERE name = ?",
                          (new_hash, name))
            c.execute("UPDATE console_users SET last_login_at = ? WHERE name = ?", (now, name))
        await self._call(stamp)
        u = self._user(r)
        u.last_login_at = now
        return u

    # -- audit ----------------------------------------------------------------

    async def record(self, actor, action, detail="", ip="", at=None) -> int:
        at = time.time() if at is None else at
        return await self._call(lambda c: c.execute(
            "INSERT INTO console_audit (at, actor, action, detail, ip) VALUES (?, ?, ?, ?, ?)",
            (at, actor[:64], action, detail[:500], ip[:64])).lastrowid)

    async def amend_audit(self, row_id, detail) -> None:
        await self._call(lambda c: c.execute(
            "UPDATE console_audit SET detail = ? WHERE id = ?", (detail[:500], row_id)))

    async def prune_audit(self, actions, before, keep, batch) -> int:
        marks = ",".join("?" * len(actions))

        def job(c):
            return c.execute(
                """DELETE FROM console_audit WHERE id IN (
                       SELECT id FROM console_audit WHERE action IN (%s) AND (at < ? OR id <= (
                           SELECT id FROM console_audit WHERE action IN (%s)
                           ORDER BY id DESC LIMIT 1 OFFSET ?))
                       ORDER BY id LIMIT ?)""" % (marks, marks),
                (*actions, before, *actions, keep, batch)).rowcount
        return await self._call(job)

    async def list_audit(self, since=None, limit=500) -> list[dict]:
        limit = max(1, min(int(limit), MAX_AUDIT_ROWS))
        sql = "SELECT * FROM console_audit"
        args: list = []
        if since is not None:
            sql += " WHERE at >= ?"
            args.append(since)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(limit)
        return await self._call(lambda c: [dict(r) for r in c.execute(sql, args)])

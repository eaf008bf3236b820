"""The console on PostgreSQL: the receiver starts with ``--web`` on a
``postgresql://`` store, the ``users`` CLI works on such a URL, and two
receivers in one process on one database (each with its own web port, as
behind a load balancer) share console sessions: a login on one is valid on
the other, a logout or a user change on one ends the session on both,
CSRF and "no session, no access" hold on both.

Real PostgreSQL (tests/pg_fixture.py), real sockets; waits have generous
deadlines, nothing asserts how fast."""

import argparse
import asyncio
import contextlib
import hashlib
import io
import sys
import time

import pytest
from yarl import URL

from receiver.config import Config
from receiver.web.testing import PASSWORDS, ROLES, Client, sse_events
from tests.pg_fixture import pg_server, pg_url  # noqa: F401

pytest.importorskip("asyncpg")

from receiver.app import Receiver  # noqa: E402
from receiver import retention  # noqa: E402
from receiver.web import admin, api, auth, pg_users  # noqa: E402
from receiver.web.pg_users import PGUserStore  # noqa: E402


async def seed(url, users=ROLES):
    us = PGUserStore(url)
    await us.open()
    try:
        for name, role in users.items():
            await us.add(name, role, PASSWORDS[name])
    finally:
        await us.close()


@contextlib.asynccontextmanager
async def consoles(url, names):
    """Receivers on ``url``, each serving the console on its own port;
    yields [(receiver, base_url)]."""
    rxs = []
    try:
        for n in names:
            rx = Receiver(Config(db=url, tcp=[("127.0.0.1", 0)], web=("127.0.0.1", 0),
                                 cluster_instance=n))
            await rx.start()
            rxs.append(rx)
        yield [(rx, "http://%s:%d" % rx.addresses["web"]) for rx in rxs]
    finally:
        for rx in reversed(rxs):
            await rx.stop()


def carry(client: Client, other: Client) -> str:
    """Give ``other`` (a browser talking to another receiver) the session
    cookie and CSRF token ``client`` got at login; returns the token."""
    [morsel] = [m for m in client.http.cookie_jar if m.key == api.COOKIE]
    other.http.cookie_jar.update_cookies({api.COOKIE: morsel.value}, URL(other.base))
    other.csrf = client.csrf
    return morsel.value


async def fetch(url, sql, *args):
    import asyncpg
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def test_receiver_starts_with_the_console_on_postgresql(pg_url):
    async with consoles(pg_url, ["rx-a"]) as [(rx, base)], Client(base) as c:
        assert type(rx.store).__name__ == "PGStore"
        async with c.request("GET", "/api/alarms") as r:
            assert r.status == 401  # no users, no session: nothing
        assert (await c.login("olga")).status == 401
    tables = {r["tablename"] for r in await fetch(
        pg_url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"console_meta", "console_users", "console_audit", "console_sessions",
            "events", "alarms"} <= tables
    [v] = await fetch(pg_url, "SELECT value FROM console_meta WHERE key = 'schema_version'")
    assert v["value"] == pg_users.PG_SCHEMA_VERSION
    # A second start finds the tables and the version row as they are.
    await seed(pg_url, {"olga": "operator"})
    async with consoles(pg_url, ["rx-a"]) as [(rx, base)], Client(base) as c:
        assert (await c.login("olga")).status == 200
        assert (await c.json("GET", "/api/me"))["role"] == "operator"
    rows = await fetch(pg_url, "SELECT value FROM console_meta")
    assert [r["value"] for r in rows] == [pg_users.PG_SCHEMA_VERSION]


def test_cli_users_add_list_passwd_on_a_postgresql_url(pg_url):
    parser = argparse.ArgumentParser()
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", default=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True)
    admin.register(sub, common, lambda args: Config(db=args.db))

    def run(argv, stdin=""):
        args = parser.parse_args(["users"] + argv)
        out, err = io.StringIO(), io.StringIO()
        old, sys.stdin = sys.stdin, io.StringIO(stdin)
        try:
            rc = admin.cmd_users(args, Config(db=pg_url), out=out, err=err)
        finally:
            sys.stdin = old
        return rc, out.getvalue(), err.getvalue()

    from receiver.store import StoreMissing
    with pytest.raises(StoreMissing):  # no schema in a new database: not made by a read
        run(["list"])
    rc, out, _ = run(["add", "ada", "--role", "administrator", "--password-stdin"],
                     "a-long-enough-password\n")
    assert rc == 0 and "ada" in out
    rc, _, err = run(["add", "ada", "--role", "operator", "--password-stdin"],
                     "another-long-password\n")
    assert rc == 2 and "exists" in err
    assert run(["add", "bob", "--role", "operator", "--password-stdin"], "short\n")[0] == 2
    rc, out, _ = run(["list"])
    assert rc == 0 and "ada" in out and "administrator" in out and "bob" not in out

    async def open_session():
        us = PGUserStore(pg_url)
        await us.open()
        try:
            token, _ = await us.session_store().create("ada", "administrator", 1e10)
            return token
        finally:
            await us.close()
    token = asyncio.run(open_session())
    rc, out, _ = run(["passwd", "ada", "--password-stdin"], "a-new-long-password\n")
    assert rc == 0 and "end now" in out
    assert run(["passwd", "ghost", "--password-stdin"], "whatever-long-pw\n")[0] == 1

    async def check():
        us = PGUserStore(pg_url)
        await us.open()
        try:
            assert await us.authenticate("ada", "a-long-enough-password") is None
            assert (await us.authenticate("ada", "a-new-long-password")).role == "administrator"
            assert await us.session_store().get(token, 1e10) is None  # ended by passwd
            [h] = await fetch(pg_url, "SELECT password_hash FROM console_users")
            assert h["password_hash"].startswith("$argon2id$")
            return [r["action"] for r in await us.list_audit()]
        finally:
            await us.close()
    assert asyncio.run(check())[:2] == ["user.passwd", "user.add"]


async def test_a_login_on_one_receiver_is_valid_on_the_other(pg_url):
    await seed(pg_url)
    async with consoles(pg_url, ["rx-a", "rx-b"]) as [(a, base_a), (b, base_b)], \
            Client(base_a) as on_a, Client(base_b) as on_b, Client(base_b) as stranger:
        assert (await on_a.login("sam")).status == 200
        token = carry(on_a, on_b)
        me = await on_b.json("GET", "/api/me")
        assert me["name"] == "sam" and me["role"] == "supervisor"
        assert me["csrf"] == on_a.csrf
        await on_b.json("GET", "/api/audit")  # a supervisor's page, on the other receiver
        # Only the token's SHA-256 is in the database.
        rows = await fetch(pg_url, "SELECT * FROM console_sessions")
        assert [r["token_hash"] for r in rows] == [hashlib.sha256(token.encode()).hexdigest()]
        assert not any(token in str(v) for r in rows for v in r.values())
        # No session, a made-up one: nothing, on either receiver.
        async with stranger.request("GET", "/api/alarms") as r:
            assert r.status == 401
        stranger.http.cookie_jar.update_cookies({api.COOKIE: "forged"}, URL(base_b))
        async with stranger.request("GET", "/api/me") as r:
            assert r.status == 401
        async with stranger.request("GET", "/") as r:
            assert r.status == 302
        # A state change on B still needs the session's CSRF token.
        async with on_b.request("POST", "/api/logout", csrf=False) as r:
            assert r.status == 403
        async with on_b.request("POST", "/api/logout", csrf=False,
                                headers={"X-CSRF-Token": "not-the-token"}) as r:
            assert r.status == 403
        await on_a.json("GET", "/api/me")  # refused requests ended nothing
        # Logout on B ends the session on A too.
        await on_b.json("POST", "/api/logout")
        await on_a.json("GET", "/api/me", status=401)
        assert await fetch(pg_url, "SELECT * FROM console_sessions") == []


async def test_user_changes_end_sessions_on_every_receiver(pg_url, monkeypatch):
    await seed(pg_url)
    # Live streams re-check their session on every wake-up, and wake often.
    monkeypatch.setattr(pg_users, "STREAM_RECHECK_S", 0.0)
    monkeypatch.setattr(api, "KEEPALIVE_S", 0.2)
    async with consoles(pg_url, ["rx-a", "rx-b"]) as [(a, base_a), (b, base_b)], \
            Client(base_a) as ada, Client(base_a) as olga_a, Client(base_b) as olga_b, \
            Client(base_b) as sam_b:
        assert (await ada.login("ada")).status == 200
        assert (await olga_a.login("olga")).status == 200
        assert (await olga_b.login("olga")).status == 200
        assert (await sam_b.login("sam")).status == 200
        async with olga_b.request("GET", "/api/stream") as stream:
            events = sse_events(stream)
            assert (await anext(events))[0] == "hello"
            # The password is changed on A: olga's sessions end on A and B.
            await ada.json("POST", "/api/users/olga", json={"password": "olga-second-pw"})
            await olga_a.json("GET", "/api/me", status=401)
            await olga_b.json("GET", "/api/me", status=401)
            kind = None
            while kind != "logout":  # her live page on B is told (keepalives skipped)
                kind, _ = await asyncio.wait_for(anext(events), 20)
        await sam_b.json("GET", "/api/me")  # others keep theirs
        # A role change made on A ends sam's session on B.
        await ada.json("POST", "/api/users/sam", json={"role": "operator"})
        await sam_b.json("GET", "/api/me", status=401)
        assert (await sam_b.login("sam")).status == 200
        assert sam_b.me["role"] == "operator"
        # The CLI, in another process, ends sessions at once too.
        await asyncio.to_thread(admin.set_password, pg_url, "sam", "sam-third-password")
        await sam_b.json("GET", "/api/me", status=401)
        # Disabling and the last-administrator rule hold across receivers.
        assert (await olga_b.login("olga", "olga-second-pw")).status == 200
        await ada.json("POST", "/api/users/olga", json={"disabled": True})
        await olga_b.json("GET", "/api/me", status=401)
        assert (await olga_b.login("olga", "olga-second-pw")).status == 401
        await ada.json("POST", "/api/users/ada", json={"disabled": True}, status=400)
        await ada.json("DELETE", "/api/users/ada", status=400)
        await ada.json("DELETE", "/api/users/olga")
        assert [r["user_name"] for r in await fetch(
            pg_url, "SELECT user_name FROM console_sessions")] == ["ada"]
        actions = [r["action"] for r in await fetch(
            pg_url, "SELECT action FROM console_audit ORDER BY id")]
        assert "user.update" in actions and actions[-1] == "user.delete"


# -- attacks of issue 14, where PostgreSQL has code of its own ---------------------------------


async def test_a_user_change_with_one_bad_field_changes_nothing_on_postgresql(pg_url):
    # Seen (SQLite and PostgreSQL): a role change with an invalid password
    # answered 400 yet applied the role, unaudited, sessions alive.
    await seed(pg_url)
    async with consoles(pg_url, ["rx-a", "rx-b"]) as [(a, base_a), (b, base_b)], \
            Client(base_a) as ada, Client(base_b) as olga:
        assert (await ada.login("ada")).status == 200
        assert (await olga.login("olga")).status == 200
        audit = "SELECT action, actor, detail FROM console_audit WHERE action LIKE 'user.%'"
        for body in ({"role": "administrator", "disabled": True, "password": "short"},
                     {"role": "administrator", "disabled": "yes"}, {}):
            await ada.json("POST", "/api/users/olga", json=body, status=400)
        [u] = await fetch(pg_url, "SELECT role, disabled FROM console_users WHERE name = 'olga'")
        assert (u["role"], u["disabled"]) == ("operator", False)
        assert await fetch(pg_url, audit) == []
        await olga.json("GET", "/api/me")  # nothing changed: her session lives
        await ada.json("POST", "/api/users/olga", json={"role": "supervisor",
                                                       "password": "olga-new-long-password"})
        [row] = await fetch(pg_url, audit)
        assert dict(row) == {"action": "user.update", "actor": "ada",
                             "detail": "name=olga role=operator->supervisor password=changed"}
        assert await fetch(pg_url, "SELECT 1 FROM console_sessions WHERE user_name = 'olga'") \
            == []
        await olga.json("GET", "/api/me", status=401)  # ended on the other receiver too


async def test_a_flood_of_bad_logins_adds_a_bounded_number_of_rows_on_postgresql(pg_url):
    from receiver.web.testing import console_app
    await seed(pg_url)
    flood = 100
    async with consoles(pg_url, ["rx-a"]) as [(rx, _)], console_app(rx) as (console, base), \
            Client(base) as c:
        [before] = await fetch(pg_url, "SELECT COUNT(*) AS n FROM console_audit")
        for i in range(auth.MAX_FAILURES_PER_IP):
            assert (await c.login("name%d" % i, "wrong-password")).status == 401
        for _ in range(flood):
            assert (await c.login("olga", "guess-guess-guess")).status == 429
        await api.flush_throttled(console, time.time() + auth.THROTTLED_AUDIT_INTERVAL_S)
        [after] = await fetch(pg_url, "SELECT COUNT(*) AS n FROM console_audit")
        assert after["n"] - before["n"] == auth.MAX_FAILURES_PER_IP + 1
        [row] = await fetch(pg_url, "SELECT detail FROM console_audit "
                                    "WHERE action = 'login.throttled'")
        assert row["detail"].startswith("attempts=%d " % flood)


async def test_rejected_login_rows_are_pruned_on_postgresql(pg_url):
    us = PGUserStore(pg_url)
    await us.open()
    try:
        ids = []
        for i in range(30):
            ids.append(await us.record("x%d" % i, "login.failed", "", "10.0.0.1", at=1000.0 + i))
            await us.record("ada", "alarm.acknowledge", "alarm=%d" % i, "10.0.0.2",
                            at=1000.0 + i)
        await us.amend_audit(ids[-1], "amended")
        acts = retention.CONSOLE_REJECTED_ACTIONS
        assert await us.prune_audit(acts, 1010.0, 1000, 1000) == 10
        assert await us.prune_audit(acts, 0.0, 5, 3) == 3
        assert await us.prune_audit(acts, 0.0, 5, 1000) == 12
        rows = await us.list_audit(limit=5000)
        rejected = [(r["actor"], r["detail"]) for r in rows if r["action"] in acts]
        assert rejected == [("x29", "amended"), ("x28", ""), ("x27", ""), ("x26", ""),
                            ("x25", "")]
        assert len([r for r in rows if r["action"] == "alarm.acknowledge"]) == 30
    finally:
        await us.close()

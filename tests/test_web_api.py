"""The operator console's HTTP side against a real receiver: real sockets on
127.0.0.1, a real SQLite store in a temp dir, alarms tripped by a simulated
panel over the native protocol.  Access control first (no session, CSRF,
roles, login), then what operators do (ack/resolve with audit, live
stream, panels, site, history CSV, dispatch), then the CLI functions."""

import argparse
import asyncio
import csv
import io
import logging
import secrets

import pytest
from aiohttp import web
from yarl import URL

from receiver.config import Config
from receiver.store import Account
from receiver.testing import running_receiver
from receiver.web import admin, api, auth, setup
from receiver.web.testing import PASSWORDS, Client, console_app, console_receiver, sse_events
from receiver.web.console import add_routes
from receiver.web.users import SQLiteUserStore
from testkit.session_panel import SessionPanel, event_msg
from testkit.wait import wait_until

PUBLIC = {("GET", "/login"), ("POST", "/api/login"), ("GET", "/static/")}


def _fill(path: str) -> str:
    return path.replace("{id}", "1").replace("{number}", "1001").replace("{name}", "olga") \
        .replace("{position}", "1").replace("{kind}", "plans").replace("{account}", "1001") \
        .replace("{partition}", "1").replace("{zone}", "1")


async def trip(rx, account: int, seq: int, code: int, zone: int, partition: int = 1,
               qualifier: int = 1):
    """One event from a simulated panel over real TCP; returns once ACKed."""
    host, port = rx.addresses["tcp"][0]
    p = SessionPanel(account, rx.account(str(account)).key, host, port)
    await p.connect()
    try:
        await p.deliver(seq, event_msg(code, qualifier, partition, zone))
    finally:
        await p.close()


async def open_alarm(rx, account: str, code: int):
    async def find():
        return [a for a in await rx.store.list_alarms() if a.account == account
                and a.code == code]
    [a] = await wait_until(find, what="alarm %s/%d stored" % (account, code))
    return a


# -- access control ----------------------------------------------------------------------


async def test_nothing_but_login_and_static_is_reachable_without_a_session(tmp_path):
    routes = add_routes(web.Application())
    public = {(m, p) for m, p, perm in routes if perm is None}
    assert public == PUBLIC  # a new public route must be a decision, made here
    async with console_receiver(tmp_path) as (rx, base, _), Client(base) as c:
        checked = 0
        for method, path, perm in routes:
            if perm is None:
                continue
            async with c.request(method, _fill(path), json={}) as r:
                if path.startswith("/api/"):
                    assert r.status == 401, (method, path, r.status)
                    assert (await r.json())["error"] == "login required"
                else:
                    assert r.status == 302, (method, path, r.status)
                    assert r.headers["Location"].startswith("/login?next=")
            checked += 1
        assert checked >= 20
        # a made-up or expired cookie is no session either
        c.http.cookie_jar.update_cookies({api.COOKIE: "forged"})
        async with c.request("GET", "/api/alarms") as r:
            assert r.status == 401


async def test_login_page_and_static_files_are_served_with_security_headers(tmp_path):
    async with console_receiver(tmp_path) as (rx, base, _), Client(base) as c:
        async with c.request("GET", "/login") as r:
            assert r.status == 200
            html = await r.text()
            assert 'id="login-form"' in html
            assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
            assert r.headers["X-Content-Type-Options"] == "nosniff"
        async with c.request("GET", "/static/common.js") as r:
            assert r.status == 200
        async with c.request("GET", "/static/../users.py") as r:
            assert r.status in (403, 404)


async def test_wrong_password_and_unknown_user_are_refused_alike(tmp_path):
    async with console_receiver(tmp_path) as (rx, base, _), Client(base) as c:
        r = await c.login("olga", "not-her-password")
        assert r.status == 401
        assert "Set-Cookie" not in r.headers
        wrong = (await r.json())["error"]
        r = await c.login("nobody", "whatever-password")
        assert r.status == 401
        assert (await r.json())["error"] == wrong
        async with c.request("GET", "/api/me") as r:
            assert r.status == 401
        # a cross-site form can post text/plain that looks like JSON: refused
        async with c.request("POST", "/api/login", data='{"name": "olga", "password": "%s"}'
                             % PASSWORDS["olga"], headers={"Content-Type": "text/plain"}) as r:
            assert r.status == 415 and "Set-Cookie" not in r.headers
        r = await c.login("olga")
        assert r.status == 200
        cookie = r.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
        assert (await c.json("GET", "/api/me"))["role"] == "operator"
        rows = await rx_console_audit(tmp_path)
        assert [r["action"] for r in rows if r["actor"] == "olga"][:2] == ["login",
                                                                          "login.failed"]


async def rx_console_audit(tmp_path):
    return await SQLiteUserStore(str(tmp_path / "receiver.db")).list_audit()


async def test_failed_logins_are_throttled_per_user_even_with_the_right_password(tmp_path):
    async with console_receiver(tmp_path) as (rx, base, _), Client(base) as c:
        for _ in range(auth.MAX_FAILURES_PER_USER):
            assert (await c.login("sam", "guess-guess-guess")).status == 401
        r = await c.login("sam")  # right password, but locked for now
        assert r.status == 429
        assert int(r.headers["Retry-After"]) > 0
        assert (await c.login("olga")).status == 200  # others are not locked out


async def test_state_changes_need_the_sessions_csrf_token(tmp_path):
    async with console_receiver(tmp_path) as (rx, base, _):
        await trip(rx, 1001, 1, 130, 3)
        a = await open_alarm(rx, "1001", 130)
        path = "/api/alarms/%d/acknowledge" % a.id
        async with Client(base) as c, Client(base) as other:
            assert (await c.login("olga")).status == 200
            assert (await other.login("sam")).status == 200
            for headers in ({}, {"X-CSRF-Token": "wrong"}, {"X-CSRF-Token": other.csrf}):
                async with c.request("POST", path, csrf=False, headers=headers) as r:
                    assert r.status == 403, headers
                    assert "CSRF" in (await r.json())["error"]
            # the right token from another site's page is refused too
            async with c.request("POST", path, headers={"Origin": "http://evil.example"}) as r:
                assert r.status == 403
            async with c.request("POST", "/api/logout", csrf=False) as r:
                assert r.status == 403
            assert (await rx.store.get_alarm(a.id)).state == "pending"
            await c.json("POST", path)
            assert (await rx.store.get_alarm(a.id)).state == "acknowledged"


async def test_operators_cannot_administer_users_or_see_supervisor_pages(tmp_path):
    async with console_receiver(tmp_path) as (rx, base, _), Client(base) as c:
        assert (await c.login("olga")).status == 200
        for method, path in (("GET", "/api/users"), ("POST", "/api/users"),
                             ("POST", "/api/users/sam"), ("DELETE", "/api/users/sam"),
                             ("GET", "/api/audit"), ("GET", "/api/security-events")):
            async with c.request(method, path, json={"name": "mallory", "role":
                                                     "administrator", "password": "x" * 12}) as r:
                assert r.status == 403, (method, path, r.status)
        for p in ("/users", "/security"):
            async with c.request("GET", p) as r:
                assert r.status == 403
        names = [u.name for u in await SQLiteUserStore(str(tmp_path / "receiver.db"))
                 .list_users()]
        assert "mallory" not in names


async def test_supervisors_see_audit_and_security_events_but_do_not_manage_users(tmp_path):
    async with console_receiver(tmp_path) as (rx, base, _), Client(base) as c:
        # a frame sealed with the wrong key: the receiver records a security event
        host, port = rx.addresses["tcp"][0]
        bad = SessionPanel(1002, secrets.token_bytes(32), host, port, ack_timeout_ms=200)
        await bad.connect()
        task = asyncio.create_task(bad.deliver(1, event_msg(130, 1, 1, 1), deadline_s=30))
        await wait_until(lambda: rx.store.list_security_events(), what="security event")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await bad.close()
        assert (await c.login("sam")).status == 200
        sec = await c.json("GET", "/api/security-events")
        assert sec["security_events"] and sec["security_events"][0]["account"] == "1002"
        audit = await c.json("GET", "/api/audit")
        assert any(r["actor"] == "sam" and r["action"] == "login" for r in audit["audit"])
        await c.json("GET", "/api/users", status=403)
        async with c.request("GET", "/security") as r:
            assert r.status == 200


async def test_logout_ends_the_session_and_its_live_stream(tmp_path):
    async with console_receiver(tmp_path) as (rx, base, _), Client(base) as c:
        assert (await c.login("olga")).status == 200
        cookie = c.http.cookie_jar.filter_cookies(URL(base))[api.COOKIE].value
        async with c.request("GET", "/api/stream") as stream:
            assert stream.status == 200
            events = sse_events(stream)
            assert (await anext(events))[0] == "hello"
            await c.json("POST", "/api/logout")
            assert (await asyncio.wait_for(anext(events), 20))[0] == "logout"
        async with Client(base) as replay:
            replay.http.cookie_jar.update_cookies({api.COOKIE: cookie})
            async with replay.request("GET", "/api/alarms") as r:
                assert r.status == 401
            async with replay.request("GET", "/") as r:
                assert r.status == 302


async def test_cookie_is_secure_with_host_prefix_when_configured(tmp_path):
    async with console_receiver(tmp_path) as (rx, _, _sink), \
            console_app(rx, secure_cookie=True) as (_, base), Client(base) as c:
        r = await c.login("olga")
        assert r.status == 200
        cookie = r.headers["Set-Cookie"]
        assert cookie.startswith("__Host-guardline_session=")
        assert "Secure" in cookie and "HttpOnly" in cookie


async def test_first_run_without_users_says_how_to_create_one(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="receiver.web")
    async with console_receiver(tmp_path, users={}) as (rx, base, _):
        msgs = [r.getMessage() for r in caplog.records if r.name == "receiver.web"]
        assert any("no users" in m and "users add" in m and "administrator" in m for m in msgs)
        async with Client(base) as c:
            assert (await c.login("admin", "admin")).status == 401  # no default account


# -- operator work -------------------------------------------------------------------------


async def test_ack_and_resolve_record_the_actor_and_are_pushed_live(tmp_path):
    async with console_receiver(tmp_path) as (rx, base, sink), \
            Client(base) as olga, Client(base) as sam:
        assert (await olga.login("olga")).status == 200
        assert (await sam.login("sam")).status == 200
        async with olga.request("GET", "/api/stream") as stream:
            events = sse_events(stream)
            assert (await anext(events))[0] == "hello"
            await trip(rx, 1001, 1, 122, 4)  # silent hold-up, teller button
            while True:
                kind, msg = await asyncio.wait_for(anext(events), 20)
                if kind == "alarm":
                    break
            assert msg["state"] == "pending" and msg["event_class"] == "holdup"
            alarm_id = msg["alarm_id"]
            q = await olga.json("GET", "/api/alarms")
            [a] = [x for x in q["alarms"] if x["id"] == alarm_id]
            assert (a["site_name"], a["zone_name"], a["partition_name"]) == (
                "First City Bank, Main St branch", "teller hold-up button", "lobby")
            assert a["contact_id"] == "E122" and "Silent hold-up" in a["description"]
            r = await olga.json("POST", "/api/alarms/%d/acknowledge" % alarm_id)
            assert r["alarm"]["handler"] == "olga"  # acknowledging takes the alarm
            path = "/api/alarms/%d/resolve" % alarm_id
            r = await sam.json("POST", path, json={}, status=400)
            assert "disposition" in r["error"]
            body = {"disposition": "real", "note": "police on site, staff safe"}
            r = await sam.json("POST", path, json=body, status=409)
            assert r["error"].startswith("Being handled by olga")
            rev = (await sam.json("GET", "/api/alarms/%d" % alarm_id))["alarm"]["claim_rev"]
            await sam.json("POST", "/api/alarms/%d/take-over" % alarm_id, json={"seen_rev": rev})
            r = await sam.json("POST", path, json=body, status=409)
            assert "1 mandatory step is still open: 1. Read the alarm" in r["error"]
            await sam.json("POST", "/api/alarms/%d/steps/1" % alarm_id,
                           json={"action": "complete"})
            r = await sam.json("POST", path, json=body)
            assert (r["alarm"]["disposition"], rev) == ("real", 1)
            await olga.json("POST", "/api/alarms/%d/acknowledge" % alarm_id, status=409)
            seen = []
            while len(seen) < 2:
                kind, msg = await asyncio.wait_for(anext(events), 20)
                if kind == "alarm" and msg["alarm_id"] == alarm_id:
                    seen.append((msg["state"], msg["by"]))
            assert seen == [("acknowledged", "olga"), ("resolved", "sam")]
        d = await olga.json("GET", "/api/alarms/%d" % alarm_id)
        trail = [(r["from_state"], r["to_state"], r["actor"], r["note"]) for r in d["audit"]
                 if r["action"] is None or r["action"] == "resolve"]
        assert trail[1:] == [("pending", "acknowledged", "olga", None),
                             ("acknowledged", "resolved", "sam", "police on site, staff safe")]
        assert trail[0][:3] == (None, "pending", "receiver")
        assert [r["text"] for r in d["audit"]][-1] == "Resolved by sam as 'Real alarm'."
        await olga.json("GET", "/api/alarms/99999", status=404)


async def test_queue_is_ordered_by_priority_then_age(tmp_path):
    async with console_receiver(tmp_path) as (rx, base, _), Client(base) as c:
        await trip(rx, 1002, 1, 130, 1)  # burglary first
        await trip(rx, 1003, 1, 137, 1)  # tamper
        await trip(rx, 1001, 1, 121, 4)  # duress last, but most urgent
        await open_alarm(rx, "1001", 121)
        assert (await c.login("olga")).status == 200
        q = await c.json("GET", "/api/alarms")
        classes = [a["event_class"] for a in q["alarms"] if a["account"] != "1004"]
        assert classes == ["holdup", "burglary", "tamper"]
        prios = [a["priority"] for a in q["alarms"]]
        assert prios == sorted(prios)


async def test_panels_overview_filters_and_site_view_state(tmp_path):
    async with console_receiver(tmp_path) as (rx, base, _), Client(base) as c:
        assert (await c.login("olga")).status == 200
        await trip(rx, 1001, 1, 130, 3, partition=2)  # vault door burglary
        await trip(rx, 1001, 2, 401, 7, partition=1, qualifier=3)  # lobby armed by user 7
        await trip(rx, 1001, 3, 301, 0, partition=0)  # AC loss (trouble)

        async def panels(flt):
            d = await c.json("GET", "/api/panels?filter=" + flt)
            return sorted(p["number"] for p in d["panels"])

        # 1004 has a 1 s heartbeat and never reports: its path fails
        await wait_until(lambda: panels("not_heard"), what="1004 not heard")
        assert await panels("not_heard") == ["1004"]
        assert await panels("in_alarm") == ["1001"]
        assert await panels("trouble") == ["1001", "1004"]
        # 1004's failed path and its 350 alarm are one open trouble, not two
        d = {p["number"]: p for p in (await c.json("GET", "/api/panels"))["panels"]}
        assert (d["1004"]["failed_paths"], d["1004"]["open_conditions"]) == ([1], 1)
        assert d["1001"]["open_conditions"] == 1  # AC loss
        assert await panels("") == ["1001", "1002", "1003", "1004"]
        await c.json("GET", "/api/panels?filter=bogus", status=400)
        s = await c.json("GET", "/api/sites/1001")
        zones = {z["zone"]: z for z in s["zones"]}
        assert zones[3]["state"] == "alarm:burglary" and zones[3]["name"] == "vault door"
        assert zones[1]["state"] == "unknown"
        assert 7 not in zones  # 401's zone field is a user number
        parts = {p["partition"]: p["state"] for p in s["partitions"]}
        assert parts == {1: "armed", 2: "unknown"}
        assert [t["code"] for t in s["troubles"]] == [301]
        assert s["supervision"][0]["path_name"] == "primary"
        await trip(rx, 1001, 4, 130, 3, partition=2, qualifier=3)  # restore
        s = await c.json("GET", "/api/sites/1001")
        assert {z["zone"]: z["state"] for z in s["zones"]}[3] == "normal"
        assert s["recent_events"][0]["qualifier"] == 3  # newest first
        await c.json("GET", "/api/sites/424242", status=404)


async def test_history_search_and_csv_export(tmp_path):
    accounts = {
        7: Account("7", secrets.token_bytes(32), site_name="Kiosk",
                   zones={"2": "=HYPERLINK(\"http://x\")"}, supervised=False),
        8: Account("8", secrets.token_bytes(32), site_name="Depot", supervised=False),
    }
    async with console_receiver(tmp_path, accounts=accounts) as (rx, base, _), \
            Client(base) as c:
        await trip(rx, 7, 1, 130, 2)
        await trip(rx, 7, 2, 602, 0, partition=0)  # periodic test
        await trip(rx, 8, 1, 110, 1)
        assert (await c.login("olga")).status == 200
        d = await c.json("GET", "/api/events?account=7")
        assert [e["code"] for e in d["events"]] == [602, 130]  # newest first
        d = await c.json("GET", "/api/events?class=fire")
        assert [(e["account"], e["code"]) for e in d["events"]] == [("8", 110)]
        d = await c.json("GET", "/api/events?code=130")
        assert [e["account"] for e in d["events"]] == ["7"]
        d = await c.json("GET", "/api/events?until=1000")
        assert d["events"] == [] and d["matched"] == 0
        await c.json("GET", "/api/events?class=nonsense", status=400)
        await c.json("GET", "/api/events?since=yesterday", status=400)
        async with c.request("GET", "/api/events.csv?account=7") as r:
            assert r.status == 200
            assert r.headers["Content-Type"].startswith("text/csv")
            assert "attachment" in r.headers["Content-Disposition"]
            rows = list(csv.DictReader(io.StringIO(await r.text())))
        assert [(x["account"], x["code"], x["contact_id"], x["event_class"]) for x in rows] == [
            ("7", "130", "E130", "burglary"), ("7", "602", "E602", "test")]
        assert rows[0]["site_name"] == "Kiosk"
        assert rows[0]["zone_name"] == "'=HYPERLINK(\"http://x\")"  # no formula injection
        assert rows[0]["received_at_utc"].endswith("Z")
        audit = await rx_console_audit(tmp_path)
        assert any(r["action"] == "events.export" and r["actor"] == "olga" for r in audit)


async def test_event_feed_pages_by_id_for_viewers(tmp_path):
    """GET /api/events?after=ID: the event feed (Store.events_after), oldest
    first, for the roles that may view events; the walk test and HIL read
    it instead of the events table."""
    accounts = {n: Account(str(n), secrets.token_bytes(32), supervised=False) for n in (7, 8)}
    async with console_receiver(tmp_path, accounts=accounts) as (rx, base, _), \
            Client(base) as c:
        await c.json("GET", "/api/events?after=0", status=401)  # no session
        await trip(rx, 7, 1, 130, 2)
        await trip(rx, 8, 1, 110, 1)
        await trip(rx, 7, 2, 602, 0, partition=0)
        assert (await c.login("olga")).status == 200
        d = await c.json("GET", "/api/events?after=0")
        assert [(e["account"], e["code"]) for e in d["events"]] == [
            ("7", 130), ("8", 110), ("7", 602)]  # oldest first
        assert d["events"][0]["number_kind"] == "zone" and d["more"] is False
        assert d["next_after"] == d["events"][-1]["id"]
        first = d["events"][0]["id"]
        d = await c.json("GET", "/api/events?account=7&after=%d" % first)
        assert [e["code"] for e in d["events"]] == [602]
        d = await c.json("GET", "/api/events?after=0&limit=2")
        assert len(d["events"]) == 2 and d["more"] is True
        d = await c.json("GET", "/api/events?after=%d" % d["next_after"])
        assert [e["code"] for e in d["events"]] == [602]
        head = await c.json("GET", "/api/events?after=latest")
        assert head["events"] == [] and head["next_after"] == d["events"][0]["id"]
        await trip(rx, 8, 2, 602, 0, partition=0)
        d = await c.json("GET", "/api/events?after=%d" % head["next_after"])
        assert [(e["account"], e["code"]) for e in d["events"]] == [("8", 602)]
        for bad in ("after=-1", "after=x", "after=0&limit=0", "after=0&code=130",
                    "after=0&since=1h"):
            await c.json("GET", "/api/events?" + bad, status=400)


async def test_dispatch_shows_routing_targets_and_forwarding_state(tmp_path):
    async with console_receiver(tmp_path) as (rx, base, sink), Client(base) as c:
        assert (await c.login("olga")).status == 200
        await trip(rx, 1001, 1, 130, 3)  # central burglary: police + district + municipal
        a = await open_alarm(rx, "1001", 130)
        await wait_until(lambda: len(sink.received) >= 2, what="both police deliveries")

        async def delivered():
            d = await c.json("GET", "/api/alarms/%d" % a.id)
            return d["dispatch"] if all(r["state"] in ("delivered", "no output")
                                        for r in d["dispatch"]) else None
        rows = await wait_until(delivered, what="outbox drained")
        got = {(r["level"], r["center_name"], r["state"]) for r in rows}
        assert got == {("police_station", "Central Police Station", "delivered"),
                       ("district_command", "District 1 Command", "delivered"),
                       ("municipal_center", "Municipal Emergency Centre", "no output")}
        await sink.stop()  # the far end goes away: the next alarm waits in the outbox
        await trip(rx, 1003, 1, 122, 1)  # ATM hold-up, central

        async def waiting():
            d = await c.json("GET", "/api/dispatch")
            [b] = [x for x in d["alarms"] if x["account"] == "1003"]
            st = {r["state"] for r in b["dispatch"] if r["output"]}
            return d if st and st <= {"queued", "retrying"} else None
        d = await wait_until(waiting, what="undelivered rows shown")
        [out] = d["outputs"]
        assert out["name"] == "police-feed" and out["pending"] >= 1


async def test_user_administration_ends_changed_users_sessions(tmp_path):
    async with console_receiver(tmp_path) as (rx, base, _), \
            Client(base) as ada, Client(base) as olga:
        assert (await ada.login("ada")).status == 200
        assert (await olga.login("olga")).status == 200
        await ada.json("POST", "/api/users", json={"name": "nina", "role": "operator",
                                                  "password": "short"}, status=400)
        await ada.json("POST", "/api/users", json={"name": "nina", "role": "operator",
                                                  "password": "nina-long-password"}, status=201)
        await ada.json("POST", "/api/users", json={"name": "nina", "role": "operator",
                                                  "password": "nina-long-password"}, status=400)
        await ada.json("POST", "/api/users/olga", json={"role": "supervisor"})
        await olga.json("GET", "/api/me", status=401)  # must log in again, new role
        assert (await olga.login("olga")).status == 200
        assert olga.me["role"] == "supervisor"
        await ada.json("DELETE", "/api/users/ada", status=400)  # the last administrator
        await ada.json("POST", "/api/users/ada", json={"disabled": True}, status=400)
        await ada.json("DELETE", "/api/users/nina")
        await ada.json("DELETE", "/api/users/nina", status=404)
        names = [u["name"] for u in (await ada.json("GET", "/api/users"))["users"]]
        assert names == ["ada", "olga", "sam"]


# -- the CLI functions ------------------------------------------------------------------------


def test_cli_users_add_list_passwd(tmp_path):
    parser = argparse.ArgumentParser()
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", default=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True)
    db = str(tmp_path / "rx.db")
    admin.register(sub, common, lambda args: Config(db=args.db))

    def run(argv, stdin=""):
        args = parser.parse_args(argv)
        out, err = io.StringIO(), io.StringIO()
        import sys
        old = sys.stdin
        sys.stdin = io.StringIO(stdin)
        try:
            rc = admin.cmd_users(args, Config(db=db), out=out, err=err)
        finally:
            sys.stdin = old
        return rc, out.getvalue(), err.getvalue()

    from receiver.store import StoreMissing
    from receiver.store_factory import make_store
    with pytest.raises(StoreMissing):  # the CLI says so (tests/test_cli_bad_input.py)
        run(["users", "list"])

    async def new_store():
        store = make_store(db, create=True)
        await store.open()
        await store.close()
    asyncio.run(new_store())
    assert run(["users", "list"])[1].startswith("no console users")
    rc, out, _ = run(["users", "add", "ada", "--role", "administrator", "--password-stdin"],
                     "a-long-enough-password\n")
    assert rc == 0 and "ada" in out
    rc, _, err = run(["users", "add", "bob", "--role", "operator", "--password-stdin"],
                     "short\n")
    assert rc == 2 and "at least" in err
    rc, _, err = run(["users", "add", "ada", "--role", "operator", "--password-stdin"],
                     "another-long-password\n")
    assert rc == 2 and "exists" in err
    with pytest.raises(SystemExit):
        parser.parse_args(["users", "add", "x", "--role", "root"])
    rc, out, _ = run(["users", "list"])
    assert rc == 0 and "ada" in out and "administrator" in out
    rc, _, _ = run(["users", "passwd", "ada", "--password-stdin"], "a-new-long-password\n")
    assert rc == 0
    assert run(["users", "passwd", "ghost", "--password-stdin"], "whatever-long-pw\n")[0] == 1

    async def check():
        s = SQLiteUserStore(db)
        assert await s.authenticate("ada", "a-long-enough-password") is None
        u = await s.authenticate("ada", "a-new-long-password")
        assert u is not None and u.role == "administrator"
        row = await asyncio.to_thread(s._run, lambda c: c.execute(
            "SELECT password_hash FROM console_users WHERE name = 'ada'").fetchone()[0])
        assert row.startswith("$argon2id$") and "a-new-long-password" not in row
        rows = await s.list_audit()
        assert [r["action"] for r in rows][:2] == ["user.passwd", "user.add"]
    asyncio.run(check())


async def test_console_tables_live_beside_the_receivers_and_keep_a_version(tmp_path):
    db = str(tmp_path / "receiver.db")
    async with running_receiver(Config(db=db, tcp=[("127.0.0.1", 0)],
                                       web=("127.0.0.1", 0))) as rx:
        assert rx.addresses["web"]

    def tables(c):
        return {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    s = SQLiteUserStore(db)
    names = await asyncio.to_thread(s._run, tables)
    assert {"console_users", "console_meta", "console_audit", "events", "alarms"} <= names
    v = await asyncio.to_thread(s._run, lambda c: c.execute(
        "SELECT value FROM console_meta WHERE key='schema_version'").fetchone()[0])
    assert v == 1
    assert PASSWORDS  # seeded users are test-only constants


async def test_receiver_stops_without_waiting_for_open_live_streams(tmp_path):
    # aiohttp waits up to 60 s for running handlers at shutdown; the console
    # ends its streams first, so a wall screen does not hold up a restart.
    async with console_receiver(tmp_path) as (rx, base, _), Client(base) as c:
        assert (await c.login("olga")).status == 200
        async with c.request("GET", "/api/stream") as stream:
            events = sse_events(stream)
            assert (await anext(events))[0] == "hello"
            stopping = asyncio.create_task(rx.stop())
            assert (await asyncio.wait_for(anext(events), 20))[0] == "logout"
            await asyncio.wait_for(stopping, 30)

"""Attacks on the console (issue 14, "Console"), each reproduced against a
real receiver on 127.0.0.1 (real SQLite, real sockets), each failing on
the code before its fix:

- one operator opening live streams until nobody else gets one;
- ``/login?next=/%09/host`` sending the browser off-site (the browser half
  is in tests/test_web_browser.py);
- ``/metrics`` and ``/healthz`` public on the console port, each scrape
  loading every open alarm (issue 13), the ``Server`` header;
- a flood of bad logins growing the audit table and the log per request;
- a user change applied half-way, without audit, sessions surviving;
- a newline in a login name forging a log line;
- the live stream swallowing its task's cancellation (issue 13).

The PostgreSQL variants are in tests/test_web_pg.py."""

import asyncio
import contextlib
import io
import socket
import time

from receiver import http, logfmt, retention
from receiver.config import Config
from receiver.testing import running_receiver
from receiver.web import api, auth
from receiver.web.testing import PASSWORDS, Client, console_app, console_receiver, \
    demo_accounts, sse_events
from receiver.web.users import SQLiteUserStore
from tests.test_web_api import open_alarm, trip
from testkit.wait import wait_until


@contextlib.contextmanager
def receiver_log():
    """The receiver's log as the CLI writes it (logfmt on a stream)."""
    stream = io.StringIO()
    h = logfmt.setup("INFO", stream)
    try:
        yield stream
    finally:
        import logging
        logging.getLogger().removeHandler(h)


async def audit_rows(tmp_path):
    return await SQLiteUserStore(str(tmp_path / "receiver.db")).list_audit(limit=5000)


async def open_stream(c: Client):
    """GET /api/stream and keep it open; returns the response (read past
    'hello' when it was accepted)."""
    r = await c.http.get(c.base + "/api/stream")
    if r.status == 200:
        assert (await anext(sse_events(r)))[0] == "hello"
    return r


def awaits(task, fn) -> bool:
    """Is ``task`` (somewhere down its chain of awaits) running ``fn``?"""
    coro = task.get_coro()
    while coro is not None:
        code = getattr(coro, "cr_code", None) or getattr(coro, "gi_code", None)
        if code is fn.__code__:
            return True
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return False


# -- live streams ------------------------------------------------------------------------


async def test_one_operator_cannot_take_every_live_stream(tmp_path):
    # Seen: one operator opened 63 streams and every other console showed
    # an empty queue.  Now: 4 per browser session, 8 per user, and the
    # other users' streams are there.
    async with console_receiver(tmp_path) as (rx, base, _):
        clients, responses = [], []
        try:
            opened = refused = 0
            last_error = ""
            for _ in range(16):  # 16 sessions of one operator, 4 streams each
                c = Client(base)
                clients.append(c)
                assert (await c.login("olga")).status == 200
                for _ in range(4):
                    r = await open_stream(c)
                    responses.append(r)
                    if r.status == 200:
                        opened += 1
                    else:
                        assert r.status == 429
                        last_error = (await r.json())["error"]
                        refused += 1
            assert opened == auth.MAX_STREAMS_PER_USER and refused == 64 - opened
            assert last_error.startswith("olga already has 8 live console pages open")
            # A fifth stream in one browser is refused in words, too.
            r = await open_stream(clients[0])
            responses.append(r)
            assert r.status == 429 and "this browser already has 4" in (await r.json())["error"]
            # Everyone else still gets a live console.
            for name in ("sam", "ada"):
                c = Client(base)
                clients.append(c)
                assert (await c.login(name)).status == 200
                r = await open_stream(c)
                responses.append(r)
                assert r.status == 200
        finally:
            for r in responses:
                r.close()
            for c in clients:
                await c.http.close()


async def test_a_stream_whose_browser_left_frees_its_slot_at_once(tmp_path, monkeypatch):
    # No keepalive within the test: the slot must free because the
    # connection closed, not because a keepalive write failed.
    monkeypatch.setattr(api, "KEEPALIVE_S", 3600.0)
    async with console_receiver(tmp_path) as (rx, base, _), Client(base) as c:
        assert (await c.login("olga")).status == 200
        streams = [await open_stream(c) for _ in range(auth.MAX_STREAMS_PER_SESSION)]
        assert all(r.status == 200 for r in streams)
        extra = await open_stream(c)
        assert extra.status == 429
        extra.close()
        streams.pop().close()  # the browser closes a tab

        async def reopened():
            r = await open_stream(c)
            if r.status == 200:
                return r
            r.close()
        streams.append(await wait_until(reopened, what="a stream slot freed by a closed tab"))
        for r in streams:
            r.close()


async def test_live_stream_lets_its_cancellation_propagate(tmp_path):
    # Issue 13: the handler caught asyncio.CancelledError and returned, so
    # the task running it never ended as cancelled.
    async with console_receiver(tmp_path) as (rx, base, _), Client(base) as c:
        assert (await c.login("olga")).status == 200
        async with c.request("GET", "/api/stream") as r:
            assert (await anext(sse_events(r)))[0] == "hello"
            [task] = [t for t in asyncio.all_tasks() if awaits(t, api.stream.__wrapped__)]
            task.cancel()
            await wait_until(task.done, what="the stream's task ends")
            assert task.cancelled()


# -- where the browser goes after login --------------------------------------------------------


async def test_login_answers_where_to_go_and_it_is_always_a_console_path(tmp_path):
    async with console_receiver(tmp_path) as (rx, base, _):
        for bad in ("/\t/evil.example", "/\n/evil.example", "/\r/evil.example",
                    "//evil.example", "/\\evil.example", "https://evil.example/x"):
            async with Client(base) as c:
                r = await c.http.post(base + "/api/login", json={
                    "name": "olga", "password": PASSWORDS["olga"], "next": bad})
                assert r.status == 200 and (await r.json())["next"] == "/", bad
        async with Client(base) as c:
            r = await c.http.post(base + "/api/login", json={
                "name": "olga", "password": PASSWORDS["olga"], "next": "/site/1001?x=1"})
            assert (await r.json())["next"] == "/site/1001?x=1"


# -- metrics and health ---------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def metrics_receiver(tmp_path):
    db = str(tmp_path / "receiver.db")
    us = SQLiteUserStore(db)
    await us.open()
    await us.add("olga", "operator", PASSWORDS["olga"])
    cfg = Config(db=db, tcp=[("127.0.0.1", 0)], metrics=("127.0.0.1", 0),
                 web=("127.0.0.1", 0))
    async with running_receiver(cfg, demo_accounts()) as rx:
        yield rx, "http://%s:%d" % rx.addresses["web"], "http://%s:%d" % rx.addresses["metrics"]


async def raw_http(base: str, request: bytes) -> bytes:
    host, port = base[len("http://"):].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(request)
    await writer.drain()
    data = await reader.read(65536)
    writer.close()
    return data


async def test_metrics_and_health_are_served_on_the_metrics_listener_only(tmp_path):
    async with metrics_receiver(tmp_path) as (rx, web_base, metrics_base), \
            Client(web_base) as console, Client(metrics_base) as scraper:
        await trip(rx, 1001, 1, 122, 4)  # a hold-up: its class shows in the counters
        await open_alarm(rx, "1001", 122)
        for path in ("/metrics", "/healthz"):
            async with console.request("GET", path) as r:
                body = await r.text()
                assert r.status == 404, path
                assert "guardline_receiver" not in body and "store_" not in body
        async with scraper.request("GET", "/metrics") as r:
            assert r.status == 200
            assert 'guardline_receiver_alarms_open{state="pending"} 1.0' in await r.text()
        async with scraper.request("GET", "/healthz") as r:
            assert r.status == 200 and (await r.json())["store_healthy"] is True


async def test_no_response_names_the_server_software(tmp_path):
    async with metrics_receiver(tmp_path) as (rx, web_base, metrics_base), \
            Client(web_base) as console, Client(metrics_base) as scraper:
        assert (await console.login("olga")).status == 200
        for c, path in ((console, "/login"), (console, "/api/me"), (console, "/nothing"),
                        (console, "/static/style.css"), (scraper, "/metrics"),
                        (scraper, "/healthz"), (scraper, "/nothing")):
            async with c.request("GET", path) as r:
                assert "Server" not in r.headers, (path, r.headers.get("Server"))
        for base in (web_base, metrics_base):  # aiohttp's own page for a bad request
            reply = await raw_http(base, b"GARBAGE / HTTP/1.1\r\n\r\n")
            head = reply.split(b"\r\n\r\n")[0].lower()
            assert head.startswith(b"http/1.0 400") and b"aiohttp" not in head, head
            assert b"\r\nserver: guardline" in head and b"python" not in head, head


async def test_a_scrape_counts_in_the_database_once_for_concurrent_scrapers(tmp_path,
                                                                           monkeypatch):
    # Seen: each scrape loaded up to 100,000 alarm rows per state to count
    # them, and 16 concurrent scrapers each did it.
    monkeypatch.setattr(http, "SCRAPE_CACHE_S", 3600.0)
    async with metrics_receiver(tmp_path) as (rx, web_base, metrics_base), \
            Client(metrics_base) as scraper:
        for seq, code in ((1, 130), (2, 122), (3, 110)):
            await trip(rx, 1001, seq, code, 1)
        a = await open_alarm(rx, "1001", 110)
        await rx.workflow.acknowledge(a.id, "olga")
        calls = {"list_alarms": 0, "count_alarms": 0}
        for name in calls:
            real = getattr(rx.store, name)

            def spy(*args, _real=real, _name=name, **kw):
                calls[_name] += 1
                return _real(*args, **kw)
            monkeypatch.setattr(rx.store, name, spy)

        async def scrape():
            async with scraper.request("GET", "/metrics") as r:
                assert r.status == 200
                return await r.text()
        bodies = await asyncio.gather(*(scrape() for _ in range(16)))
        assert calls == {"list_alarms": 0, "count_alarms": 1}
        for body in bodies:
            assert 'guardline_receiver_alarms_open{state="pending"} 2.0' in body
            assert 'guardline_receiver_alarms_open{state="acknowledged"} 1.0' in body


async def test_metrics_and_console_cannot_share_an_address(tmp_path):
    from receiver.app import Receiver
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    addr = ("127.0.0.1", port)
    rx = Receiver(Config(db=str(tmp_path / "rx.db"), metrics=addr, web=addr))
    try:
        try:
            await rx.start()
        except http.SharedAddressError as e:
            assert "/metrics and /healthz need no login" in str(e)
        else:
            raise AssertionError("a shared metrics/console address was served")
    finally:
        await rx.stop()


# -- login floods ---------------------------------------------------------------------------------


async def test_a_flood_of_bad_logins_adds_a_bounded_number_of_audit_rows_and_lines(tmp_path):
    # Seen: 709 throttled requests/s from one address added 21,337 fsync'd
    # audit rows and 21,500 log lines in 30 s.  Now the address's failures
    # up to its limit are rows, and the throttled rest is one row (amended
    # with its count when the interval ends) and one line.
    flood = 300
    with receiver_log() as log:
        async with console_receiver(tmp_path) as (rx, _, _sink), \
                console_app(rx) as (console, base), Client(base) as c:
            before = len(await audit_rows(tmp_path))
            for i in range(auth.MAX_FAILURES_PER_IP):
                assert (await c.login("name%d" % i, "wrong-password")).status == 401
            for _ in range(flood):
                assert (await c.login("olga", "guess-guess-guess")).status == 429
            rows = await audit_rows(tmp_path)
            assert len(rows) - before == auth.MAX_FAILURES_PER_IP + 1
            [row] = [r for r in rows if r["action"] == "login.throttled"]
            assert row["detail"].startswith("attempts=1 ") and row["ip"] == "127.0.0.1"
            await api.flush_throttled(console, time.time() + auth.THROTTLED_AUDIT_INTERVAL_S)
            rows = await audit_rows(tmp_path)
            assert len(rows) - before == auth.MAX_FAILURES_PER_IP + 1
            [row] = [r for r in rows if r["action"] == "login.throttled"]
            assert row["detail"].startswith("attempts=%d " % flood)
            assert "names=olga" in row["detail"]
    lines = log.getvalue().splitlines()
    assert len([x for x in lines if 'msg="console login throttled"' in x]) == 1
    assert len([x for x in lines if 'msg="console logins throttled"' in x]) == 1
    assert len([x for x in lines if "attempts=%d" % flood in x]) == 1


async def test_rejected_login_rows_are_pruned_and_other_audit_rows_kept(tmp_path):
    us = SQLiteUserStore(str(tmp_path / "receiver.db"))
    await us.open()
    for i in range(30):
        await us.record("x%d" % i, "login.failed", "", "10.0.0.1", at=1000.0 + i)
        await us.record("ada", "alarm.acknowledge", "alarm=%d" % i, "10.0.0.2", at=1000.0 + i)
    await us.record("x", "login.throttled", "attempts=9", "10.0.0.1", at=2000.0)
    assert await us.prune_audit(retention.CONSOLE_REJECTED_ACTIONS, 1010.0, 1000, 1000) == 10
    assert await us.prune_audit(retention.CONSOLE_REJECTED_ACTIONS, 0.0, 5, 3) == 3
    assert await us.prune_audit(retention.CONSOLE_REJECTED_ACTIONS, 0.0, 5, 1000) == 13
    rows = await us.list_audit(limit=5000)
    rejected = [r for r in rows if r["action"] in retention.CONSOLE_REJECTED_ACTIONS]
    assert [r["actor"] for r in rejected] == ["x", "x29", "x28", "x27", "x26"]
    assert len([r for r in rows if r["action"] == "alarm.acknowledge"]) == 30


async def test_a_newline_in_a_login_name_cannot_forge_a_log_line(tmp_path):
    forged = "olga\nts=2025-01-01T00:00:00.000Z level=error logger=receiver.app msg=forged"
    with receiver_log() as log:
        async with console_receiver(tmp_path) as (rx, base, _), Client(base) as c:
            assert (await c.login(forged, "wrong-password")).status == 401
    lines = log.getvalue().splitlines()
    assert all(x.startswith("ts=") for x in lines)
    assert not any(x.startswith("ts=2025-01-01") for x in lines)
    [failed] = [x for x in lines if 'msg="console login failed"' in x]
    assert 'user="olga\\nts=2025-01-01T00:00:00.000Z level=error' in failed


# -- user changes ---------------------------------------------------------------------------------


async def test_a_user_change_with_one_bad_field_changes_nothing(tmp_path):
    # Seen: a role change with an invalid password answered 400 yet applied
    # the role (and a disable), with no audit row, and the sessions lived.
    async with console_receiver(tmp_path) as (rx, base, _), \
            Client(base) as ada, Client(base) as olga:
        assert (await ada.login("ada")).status == 200
        assert (await olga.login("olga")).status == 200
        before = len(await audit_rows(tmp_path))
        for body in ({"role": "administrator", "disabled": True, "password": "short"},
                     {"role": "administrator", "disabled": "yes"},
                     {"role": "king", "password": "a-long-enough-password"},
                     {"role": "administrator", "colour": "red"}, {}):
            await ada.json("POST", "/api/users/olga", json=body, status=400)
        [u] = [u for u in (await ada.json("GET", "/api/users"))["users"] if u["name"] == "olga"]
        assert (u["role"], u["disabled"]) == ("operator", False)
        assert len(await audit_rows(tmp_path)) == before
        assert (await olga.json("GET", "/api/me"))["role"] == "operator"


async def test_a_user_change_is_audited_and_ends_the_users_sessions_at_once(tmp_path):
    async with console_receiver(tmp_path) as (rx, base, _), \
            Client(base) as ada, Client(base) as olga:
        assert (await ada.login("ada")).status == 200
        assert (await olga.login("olga")).status == 200
        stream = await open_stream(olga)
        await ada.json("POST", "/api/users/olga", json={
            "role": "supervisor", "password": "olga-new-long-password"})
        kind, events = None, sse_events(stream)
        while kind != "logout":  # her live page is told (other events pass by)
            kind, _ = await asyncio.wait_for(anext(events), 20)
        stream.close()
        await olga.json("GET", "/api/me", status=401)
        [row] = [r for r in await audit_rows(tmp_path) if r["action"] == "user.update"]
        assert (row["actor"], row["detail"]) == (
            "ada", "name=olga role=operator->supervisor password=changed")
        assert (await olga.login("olga", "olga-new-long-password")).status == 200
        assert olga.me["role"] == "supervisor"

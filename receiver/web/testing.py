"""Helpers for the console's tests and demos: a receiver with the console
on 127.0.0.1 (port 0), seeded accounts, users and routing; a small HTTP
client that logs in and sends the CSRF token; and a server-sent-events
reader.  Built on ``receiver.testing`` (real receiver, real sockets).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets

import aiohttp

from receiver import routing
from receiver.config import Config
from receiver.store import Account
from receiver.testing import JsonLinesSink, running_receiver
from receiver.web.users import SQLiteUserStore

# Passwords of the seeded users (tests only).
PASSWORDS = {"olga": "olga-operator-pw", "sam": "sam-supervisor-pw",
             "ada": "ada-administrator-pw"}
ROLES = {"olga": "operator", "sam": "supervisor", "ada": "administrator"}


def demo_accounts() -> dict[int, Account]:
    """A bank branch, a jeweller, an ATM and a home, with named zones."""
    def acct(n, **kw):
        return Account(str(n), secrets.token_bytes(32), **kw)
    return {
        1001: acct(1001, site_name="First City Bank, Main St branch",
                   site_address="12 Main St", region="central", panel_kind="bank",
                   zones={"1": "front door", "2": "lobby PIR", "3": "vault door",
                          "4": "teller hold-up button", "5": "server room smoke"},
                   partitions={"1": "lobby", "2": "vault"},
                   contacts=[{"name": "R. Moreau", "role": "branch manager",
                              "phone": "+1 555 0101"}]),
        1002: acct(1002, site_name="Lindqvist Jewellers", site_address="4 Harbour Rd",
                   region="harbour", panel_kind="door",
                   zones={"1": "shop door", "2": "display case", "3": "safe"},
                   partitions={"1": "shop"}),
        1003: acct(1003, site_name="ATM 0417, Station Sq", site_address="Station Sq",
                   region="central", panel_kind="atm", zones={"1": "ATM tamper",
                                                              "2": "ATM vibration"},
                   partitions={"1": "atm"}),
        1004: acct(1004, site_name="Residence Okafor", site_address="88 Elm Ave",
                   region="north", panel_kind="home", zones={"1": "front door",
                                                            "2": "kitchen smoke"},
                   partitions={"1": "house"}, heartbeat_s=1, grace_s=0),
    }


def demo_router(sink_port: int) -> routing.Router:
    return routing.parse({
        "outputs": {"police-feed": {"type": "jsonl", "address": "127.0.0.1:%d" % sink_port,
                                    "timeout_s": 5, "retry_max_s": 1}},
        "centers": {
            "ps-central": {"level": "police_station", "name": "Central Police Station",
                           "outputs": ["police-feed"]},
            "dc-1": {"level": "district_command", "name": "District 1 Command",
                     "outputs": ["police-feed"]},
            "muni": {"level": "municipal_center", "name": "Municipal Emergency Centre",
                     "outputs": []},
        },
        "routes": [
            {"regions": ["central"], "classes": ["holdup", "burglary"],
             "police_station": "ps-central", "district_command": "dc-1",
             "municipal_center": "muni"},
            {"regions": ["*"], "classes": ["fire"], "municipal_center": "muni"},
        ],
    }, known_classes=None)


@contextlib.asynccontextmanager
async def console_receiver(tmp_path, accounts=None, users=ROLES, router=True, configure=None):
    """A running receiver with TCP and the web console on 127.0.0.1:0.
    ``configure(config)`` may change the config first.  Yields (receiver,
    base_url, sink)."""
    db = os.path.join(str(tmp_path), "receiver.db")
    sink = JsonLinesSink()
    await sink.start()
    cfg = Config(db=db, tcp=[("127.0.0.1", 0)], web=("127.0.0.1", 0))
    if router:
        cfg.router = demo_router(sink.port)
    if configure is not None:
        configure(cfg)
    us = SQLiteUserStore(db)
    await us.open()
    for name, role in (users or {}).items():
        await us.add(name, role, PASSWORDS[name])
    try:
        async with running_receiver(cfg, demo_accounts() if accounts is None
                                    else accounts) as rx:
            host, port = rx.addresses["web"]
            yield rx, "http://%s:%d" % (host, port), sink
    finally:
        await sink.stop()


@contextlib.asynccontextmanager
async def console_app(rx, **setup_kw):
    """Another console app on a running receiver, on its own port: the test
    holds its ``Console`` (its state, its clock-driven parts) and may give
    ``setup`` options (``secure_cookie``).  Yields (console, base_url)."""
    from aiohttp import web  # noqa: PLC0415

    from receiver.web.console import setup  # noqa: PLC0415 - imports this package

    app = web.Application()
    console = setup(app, rx, **setup_kw)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]  # as bound
    try:
        yield console, "http://127.0.0.1:%d" % port
    finally:
        await runner.cleanup()


class Client:
    """An HTTP client with its own cookie jar (one browser)."""

    def __init__(self, base: str):
        self.base = base
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.csrf: str | None = None
        self.me: dict | None = None

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.http.close()

    async def login(self, name: str, password: str | None = None) -> aiohttp.ClientResponse:
        r = await self.http.post(self.base + "/api/login", json={
            "name": name, "password": PASSWORDS.get(name) if password is None else password})
        if r.status == 200:
            me = self.me = await r.json()
            self.csrf = me["csrf"]
        return r

    def request(self, method: str, path: str, csrf: bool = True, **kw):
        headers = dict(kw.pop("headers", {}))
        if csrf and method != "GET" and self.csrf:
            headers.setdefault("X-CSRF-Token", self.csrf)
        return self.http.request(method, self.base + path, headers=headers,
                                 allow_redirects=False, **kw)

    async def json(self, method: str, path: str, status: int = 200, **kw):
        async with self.request(method, path, **kw) as r:
            body = await r.text()
            assert r.status == status, "%s %s: %d %s" % (method, path, r.status, body)
            return json.loads(body) if body else None


async def sse_events(resp):
    """Yield (event, data) from a text/event-stream response."""
    event, data = "message", []
    while True:
        line = await resp.content.readline()
        if not line:
            return
        line = line.decode().rstrip("\r\n")
        if line == "":
            if data:
                yield event, json.loads("\n".join(data))
            event, data = "message", []
        elif line.startswith(":"):
            continue
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())

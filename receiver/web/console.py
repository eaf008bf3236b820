"""The console's aiohttp app: :func:`setup` adds the routes, the shared
state (:class:`receiver.web.state.Console`), the security headers and the
background sweep to an aiohttp application (``receiver.http`` calls it for
``--web HOST:PORT``; tests call it for an app of their own).

What it keeps true is the package's (``receiver.web``, docs/console.md
"Security").
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time

from aiohttp import web

from receiver import retention
from receiver.web import api, rules_api, tracks_api, workflow_api
from receiver.web.state import Console
from receiver.web.user_stores import db_path_of, open_user_store
from receiver.web.users import UserStore

# The console's own lines (first run, sessions ended, sweeps) keep the
# package's name, as before setup() had a module of its own.
_LOGGER = logging.getLogger("receiver.web")

# How often expired sessions are dropped (from memory or the database),
# throttled-login tallies amended and old rejected-login rows pruned
# (receiver.retention.PRUNE_EVERY_S).
SWEEP_S = retention.PRUNE_EVERY_S

# Pages load scripts and styles from this origin only; nothing is inlined,
# so no 'unsafe-inline'.  connect-src 'self' covers fetch and EventSource.
# The map's tiles are images from the configured tile server ([map]
# tile_url): its origin, and only it, joins img-src (content_security_policy).
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
       # the reports page shows the printable report (its own CSP: no script)
       "frame-src 'self'")


def content_security_policy(tile_origin: str | None) -> str:
    """The console's CSP, with the tile server's origin in img-src."""
    if not tile_origin:
        return CSP
    return CSP.replace("img-src 'self' data:", "img-src 'self' data: %s" % tile_origin)

SECURE_COOKIE_ENV = "GUARDLINE_WEB_SECURE_COOKIE"


def _secure_cookie_default(receiver) -> bool:
    v = getattr(receiver.config, "web_secure_cookie", None)
    if v is not None:
        return bool(v)
    return os.environ.get(SECURE_COOKIE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


async def _headers(request, response) -> None:
    h = response.headers
    h.setdefault("X-Content-Type-Options", "nosniff")
    h.setdefault("X-Frame-Options", "DENY")
    h.setdefault("Referrer-Policy", "no-referrer")
    h.setdefault("Content-Security-Policy", request.app[api.CONSOLE].csp or CSP)
    if request.path.startswith("/api/"):
        h.setdefault("Cache-Control", "no-store")


def add_routes(app: web.Application) -> list[tuple[str, str, str | None]]:
    """Every route of the console, [(method, path, permission)] (None:
    public): the pages, the API and the live stream (receiver.web.api), the
    centre's rules (receiver.web.rules_api), vehicles and the map
    (receiver.web.tracks_api), the operator's workflow
    (receiver.web.workflow_api)."""
    return (api.add_routes(app) + rules_api.add_routes(app) + tracks_api.add_routes(app)
            + workflow_api.add_routes(app))


def setup(app: web.Application, receiver, *, secure_cookie: bool | None = None,
          user_store: UserStore | None = None) -> Console:
    """Add the console to ``app`` (not yet started).  ``secure_cookie``
    marks the session cookie Secure (default: the receiver config's
    ``web_secure_cookie`` if it has one, else the environment variable
    GUARDLINE_WEB_SECURE_COOKIE=1); set it whenever the console is reached
    over HTTPS (a TLS-terminating proxy in front of it)."""
    if secure_cookie is None:
        secure_cookie = _secure_cookie_default(receiver)
    console = Console(receiver, user_store or open_user_store(receiver),
                      secure_cookie=secure_cookie)
    app[api.CONSOLE] = console
    console.csp = content_security_policy(getattr(getattr(receiver.config, "map", None),
                                                  "tile_origin", None))
    console.routes = add_routes(app)
    app.on_response_prepare.append(_headers)
    sweeper: list[asyncio.Task] = []

    async def startup(app):
        await console.users.open()
        n = await console.users.count()
        if n == 0:
            _LOGGER.warning(
                "console has no users: nobody can log in. Create an administrator with "
                "`guardline-receiver --db %s users add NAME --role administrator` "
                "(there is no default password)", db_path_of(receiver))
        else:
            _LOGGER.info("console ready users=%d secure_cookie=%s shared_sessions=%s", n,
                         secure_cookie, console.session_store.shared)
        sweeper.append(asyncio.create_task(_sweep(console), name="console-sessions"))

    async def shutdown(app):
        # Live streams would otherwise hold the server's shutdown until its
        # timeout: end them first.
        api.close_streams(console, lambda st: True)

    async def cleanup(app):
        for t in sweeper:
            t.cancel()
        await console.users.close()

    app.on_startup.append(startup)
    app.on_shutdown.append(shutdown)
    app.on_cleanup.append(cleanup)
    return console


async def revalidate(console) -> int:
    """End expired sessions, and sessions whose user was deleted, disabled,
    given another role or a new password since they logged in (also when
    that was done with the CLI, in another process).  Returns how many
    sessions were ended for a user change."""
    now = time.time()
    store = console.session_store
    if store.shared:
        # The user store ended a changed user's sessions in the same
        # transaction as the change, on whichever receiver or CLI made it;
        # here only the expired rows go.
        await store.sweep(now)
        return 0
    await store.sweep(now)
    current = {u.name: u for u in await console.users.list_users()}
    ended = 0
    for s in console.sessions.all():
        u = current.get(s.user)
        if u is None or u.disabled or u.role != s.role or u.updated_at > s.created_at:
            await store.end(s)
            api.close_streams(console, lambda st, s=s: st.session is s)
            _LOGGER.info("console session ended user=%s reason=user_changed", s.user)
            ended += 1
    return ended


async def prune_audit(console, now: float) -> int:
    """Keep the audit rows of rejected logins within receiver.retention's
    bounds (rows of authenticated actions are never pruned)."""
    return await retention.prune(
        retention.CONSOLE_REJECTED,
        functools.partial(console.users.prune_audit, retention.CONSOLE_REJECTED_ACTIONS), now)


async def _sweep(console) -> None:
    while True:
        await asyncio.sleep(SWEEP_S)
        now = time.time()
        for what, job in (("session sweep", lambda: revalidate(console)),
                          ("throttled-login audit", lambda: api.flush_throttled(console, now)),
                          ("audit retention", lambda: prune_audit(console, now))):
            try:
                await job()
            except Exception as e:  # noqa: BLE001 - e.g. database locked; next round
                _LOGGER.warning("console %s failed error=%s", what, e)

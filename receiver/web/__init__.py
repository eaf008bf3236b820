"""The operator console: the monitoring centre's web interface, served by
the receiver's own aiohttp app in the receiver's event loop
(``guardline-receiver serve --web HOST:PORT``; ``receiver.http`` calls
:func:`setup`).

    receiver/web/
      __init__.py   setup(app, receiver): state, routes, hooks, headers
      api.py        pages, JSON API (/api/...), live stream (SSE)
      auth.py       sessions, roles (PERMISSIONS table), login throttling
      users.py      console users (argon2id) and console audit log, behind
                    the UserStore interface; SQLite backend
    pg_users.py   PostgreSQL backend of users, audit and shared sessions
    sessions.py   the SessionStore interface; in-memory sessions
      derive.py     zone / partition / trouble state from recent events
      admin.py      `guardline-receiver users ...` (CLI)
      static/       HTML, CSS and plain JavaScript; no build step

What it keeps true (docs/console.md, "Security"):

- Nothing but the login page, the login call and static scripts/styles is
  reachable without a session: pages redirect to /login, the API answers
  401.  Each handler checks the role; each state-changing request needs
  the session's CSRF token and a same-origin Origin.
- The console never slows the event path: it reads through the store's
  reader thread, hashes passwords in worker threads, and its live streams
  read bounded subscriber queues that drop (and tell the page to reload)
  rather than back up into the receiver.  Live streams are limited per
  session, per user and per role (auth.StreamLimits); pages load their
  data over the API first, so a refused stream leaves a page working.
- Nothing an unauthenticated client does grows the disk per request:
  throttled logins are one audit row per address per minute
  (auth.ThrottledLog), rejected-login rows are pruned (receiver.retention),
  log lines are escaped and bounded (receiver.logfmt).
- There is no default account: with no users, :func:`setup` logs how to
  create the first administrator.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time

from aiohttp import web

from receiver import retention
from receiver.web import api, auth, users

_LOGGER = logging.getLogger(__name__)

# How often expired sessions are dropped (from memory or the database),
# throttled-login tallies amended and old rejected-login rows pruned
# (receiver.retention.PRUNE_EVERY_S).
SWEEP_S = retention.PRUNE_EVERY_S

# Pages load scripts and styles from this origin only; nothing is inlined,
# so no 'unsafe-inline'.  connect-src 'self' covers fetch and EventSource.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")

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
    h.setdefault("Content-Security-Policy", CSP)
    if request.path.startswith("/api/"):
        h.setdefault("Cache-Control", "no-store")


def setup(app: web.Application, receiver, *, secure_cookie: bool | None = None,
          user_store: users.UserStore | None = None) -> auth.Console:
    """Add the console to ``app`` (not yet started).  ``secure_cookie``
    marks the session cookie Secure (default: the receiver config's
    ``web_secure_cookie`` if it has one, else the environment variable
    GUARDLINE_WEB_SECURE_COOKIE=1); set it whenever the console is reached
    over HTTPS (a TLS-terminating proxy in front of it)."""
    if secure_cookie is None:
        secure_cookie = _secure_cookie_default(receiver)
    console = auth.Console(receiver, user_store or users.open_user_store(receiver),
                           secure_cookie=secure_cookie)
    app[api.CONSOLE] = console
    console.routes = api.add_routes(app)
    app.on_response_prepare.append(_headers)
    sweeper: list[asyncio.Task] = []

    async def startup(app):
        await console.users.open()
        n = await console.users.count()
        if n == 0:
            _LOGGER.warning(
                "console has no users: nobody can log in. Create an administrator with "
                "`guardline-receiver --db %s users add NAME --role administrator` "
                "(there is no default password)", users.db_path_of(receiver))
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

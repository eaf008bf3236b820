"""The operator console: the monitoring centre's web interface, served by
the receiver's own aiohttp app in the receiver's event loop
(``guardline-receiver serve --web HOST:PORT``; ``receiver.http`` calls
:func:`setup`).

    receiver/web/
      console.py    setup(app, receiver): routes, hooks, headers, the sweep
      api.py        pages, JSON API (/api/...), live stream (SSE)
      admin.py      `guardline-receiver users ...` (CLI)
      state.py      the console's state (Console) and what it reads of the
                    receiver (ConsoleHost)
      user_stores.py  which backend a receiver's console (or the CLI) uses
      pg_users.py   PostgreSQL backend of users, audit and shared sessions
      users.py      console users (argon2id) and console audit log, behind
                    the UserStore interface; SQLite backend
      sessions.py   the SessionStore interface; in-memory sessions
      auth.py       roles (PERMISSIONS table), sessions, login throttling,
                    stream limits (no I/O)
      derive.py     zone / partition / trouble state from recent events
      static/       HTML, CSS and plain JavaScript; no build step

    A module imports only modules listed below it (and the receiver's
    modules under the console, never receiver.app): no import circles
    (tests/test_structure.py).

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

# The package itself imports nothing: ``from receiver.web import setup``
# loads the app (receiver.web.console) when asked, so that a module here
# can import its siblings without importing the whole console.
_EXPORTS = {"setup": "receiver.web.console", "revalidate": "receiver.web.console",
            "prune_audit": "receiver.web.console", "SWEEP_S": "receiver.web.console",
            "CSP": "receiver.web.console"}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError("module 'receiver.web' has no attribute %r" % name)
    import importlib

    return getattr(importlib.import_module(mod), name)

"""The receiver's HTTP side, in the receiver's own event loop (aiohttp).

``--metrics HOST:PORT`` serves ``/metrics`` (Prometheus text format) and
``/healthz`` (200 while the store commits, 503 otherwise).  ``--web
HOST:PORT`` is the hook for the operator console: if the package
``receiver.web`` is there, ``receiver.web.console.setup(app, receiver)``
adds its routes; so does every callable in ``Receiver.web_setup``.  The console uses
``Receiver.subscribe()`` for live updates and the Receiver's alarm methods
for operator actions.

Invariants:

- ``/metrics`` and ``/healthz`` are served on the metrics listener only,
  never on the console's: they need no login and tell who reports what
  (alarm-class counters, open alarms), so they belong on an address only
  the monitoring system and the load balancer reach.  The two listeners
  cannot share an address (:class:`SharedAddressError`).
- A scrape costs the event path almost nothing: open alarms are counted
  by the database (``Store.count_alarms``), and one rendering serves every
  scraper for :data:`SCRAPE_CACHE_S` (concurrent scrapers wait for the one
  in flight rather than each querying the store).
- No response names the server software or its version: application
  responses carry no ``Server`` header at all, and the 400 page aiohttp
  itself writes for a request it cannot parse (no application hook runs
  for it) says only :data:`SERVER_NAME`.
"""

from __future__ import annotations

import asyncio
import logging
import time

import aiohttp.web_response
from aiohttp import web

from receiver.metrics import CONTENT_TYPE

_LOGGER = logging.getLogger(__name__)

# One rendering of /metrics serves every scrape for this long.  Prometheus
# scrapes every 15 s or so; 16 scrapers at once (seen) cost one store
# query instead of 16.
SCRAPE_CACHE_S = 1.0


# What aiohttp's own error pages give as ``Server`` (no version).  aiohttp
# has no option for that header; it takes the value from this module
# global when it writes a response, so it is set once, here.
SERVER_NAME = "Guardline"
aiohttp.web_response.SERVER_SOFTWARE = SERVER_NAME  # pyright: ignore[reportPrivateImportUsage]


class SharedAddressError(OSError):
    """--metrics and --web name the same address."""


class _Http:
    def __init__(self):
        self.runners: list[web.AppRunner] = []
        self.addresses: dict = {}

    async def cleanup(self) -> None:
        for r in self.runners:
            await r.cleanup()


async def _no_server_header(request, response) -> None:
    response.headers.popall("Server", None)


class _Scrape:
    """The latest /metrics body, rendered at most once per SCRAPE_CACHE_S;
    concurrent scrapes share the rendering in flight."""

    def __init__(self, rx, clock=time.monotonic):
        self.rx = rx
        self.clock = clock
        self.body = b""
        self.at = float("-inf")
        self._lock = asyncio.Lock()

    async def get(self) -> bytes:
        async with self._lock:
            if self.clock() - self.at >= SCRAPE_CACHE_S:
                try:
                    await self.rx.refresh_store_gauges()
                except Exception as e:  # noqa: BLE001 - still serve what we have
                    _LOGGER.debug("store gauges unavailable error=%s", e)
                self.rx.refresh_gauges()
                self.body = self.rx.metrics.render()
                self.at = self.clock()
            return self.body


def _metrics_routes(app: web.Application, rx) -> None:
    scrape = _Scrape(rx)

    async def metrics(request):
        return web.Response(body=await scrape.get(), headers={"Content-Type": CONTENT_TYPE})

    async def healthz(request):
        ok = rx.store.healthy
        return web.json_response({"store_healthy": ok,
                                  "store_queue": rx.store.pending_writes},
                                 status=200 if ok else 503)

    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)


def _web_routes(app: web.Application, rx) -> None:
    try:
        from receiver.web.console import setup  # noqa: PLC0415 - optional, comes later
    except ImportError:
        setup = None
    if setup is not None:
        setup(app, rx)
    elif not rx.web_setup:
        _LOGGER.warning("web console not installed (no receiver.web); --web serves nothing")
    for hook in rx.web_setup:
        hook(app, rx)


def _app() -> web.Application:
    app = web.Application()
    app.on_response_prepare.append(_no_server_header)
    return app


async def _serve(app, host, port, reuse_port: bool = False) -> tuple[web.AppRunner, tuple]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_port=reuse_port or None)
    await site.start()
    return runner, tuple(runner.addresses[0][:2])  # as bound (port 0 gets one)


def check_addresses(metrics_addr, web_addr) -> None:
    """Refuse a metrics listener on the console's address (port 0 means
    two ports chosen by the system, so two addresses)."""
    if metrics_addr and web_addr and tuple(metrics_addr) == tuple(web_addr) \
            and metrics_addr[1] != 0:
        raise SharedAddressError(
            "--metrics and --web both name %s:%d: /metrics and /healthz need no login, so "
            "they get an address of their own (one the console's users do not reach)"
            % tuple(metrics_addr))


async def start(rx, metrics_addr, web_addr) -> _Http:
    check_addresses(metrics_addr, web_addr)
    h = _Http()
    try:
        if metrics_addr:
            app = _app()
            _metrics_routes(app, rx)
            runner, addr = await _serve(app, *metrics_addr)
            h.runners.append(runner)
            h.addresses["metrics"] = addr
        if web_addr:
            app = _app()
            _web_routes(app, rx)
            # the workers of `serve --workers N` share the console's port
            runner, addr = await _serve(app, *web_addr, reuse_port=rx.config.reuse_port)
            h.runners.append(runner)
            h.addresses["web"] = addr
    except BaseException:
        await h.cleanup()
        raise
    for k, v in h.addresses.items():
        rx.addresses[k] = v
        _LOGGER.info("listening transport=http role=%s address=%s:%d", k, *v)
    return h

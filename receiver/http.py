"""The receiver's HTTP side, in the receiver's own event loop (aiohttp).

``--metrics HOST:PORT`` serves ``/metrics`` (Prometheus text format) and
``/healthz`` (200 while the store commits, 503 otherwise).  ``--web
HOST:PORT`` is the hook for the operator console: if a module
``receiver.web`` exists, its ``setup(app, receiver)`` is called to add
routes; so is every callable in ``Receiver.web_setup``.  The console uses
``Receiver.subscribe()`` for live updates and the Receiver's alarm methods
for operator actions.  When metrics and web share an address, one app
serves both.
"""

from __future__ import annotations

import logging

from aiohttp import web

from receiver.metrics import CONTENT_TYPE

_LOGGER = logging.getLogger(__name__)


class _Http:
    def __init__(self):
        self.runners: list[web.AppRunner] = []
        self.addresses: dict = {}

    async def cleanup(self) -> None:
        for r in self.runners:
            await r.cleanup()


def _metrics_routes(app: web.Application, rx) -> None:
    async def metrics(request):
        try:
            await rx.refresh_store_gauges()
        except Exception as e:  # noqa: BLE001 - still serve what we have
            _LOGGER.debug("store gauges unavailable error=%s", e)
        rx.refresh_gauges()
        body = rx.metrics.render()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    async def healthz(request):
        ok = rx.store.healthy
        return web.json_response({"store_healthy": ok,
                                  "store_queue": rx.store.pending_writes},
                                 status=200 if ok else 503)

    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)


def _web_routes(app: web.Application, rx) -> None:
    try:
        from receiver import web as console  # noqa: PLC0415 - optional, comes later
    except ImportError:
        console = None
    if console is not None:
        console.setup(app, rx)
    elif not rx.web_setup:
        _LOGGER.warning("web console not installed (no receiver.web); --web serves "
                        "/healthz only")
    for setup in rx.web_setup:
        setup(app, rx)


async def _serve(app, host, port) -> tuple[web.AppRunner, tuple]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    sock = site._server.sockets[0]  # aiohttp has no public accessor for the bound port
    return runner, sock.getsockname()[:2]


async def start(rx, metrics_addr, web_addr) -> _Http:
    h = _Http()
    if metrics_addr and web_addr and tuple(metrics_addr) == tuple(web_addr):
        app = web.Application()
        _metrics_routes(app, rx)
        _web_routes(app, rx)
        runner, addr = await _serve(app, *metrics_addr)
        h.runners.append(runner)
        h.addresses["metrics"] = h.addresses["web"] = addr
    else:
        if metrics_addr:
            app = web.Application()
            _metrics_routes(app, rx)
            runner, addr = await _serve(app, *metrics_addr)
            h.runners.append(runner)
            h.addresses["metrics"] = addr
        if web_addr:
            app = web.Application()
            _metrics_routes(app, rx)
            _web_routes(app, rx)
            runner, addr = await _serve(app, *web_addr)
            h.runners.append(runner)
            h.addresses["web"] = addr
    for k, v in h.addresses.items():
        rx.addresses[k] = v
        _LOGGER.info("listening transport=http role=%s address=%s:%d", k, *v)
    return h

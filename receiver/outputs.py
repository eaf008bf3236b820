"""What every store-and-forward output is (receiver.forwarder delivers
through them): the :class:`Output` base, :class:`StreamOutput` for those
that keep a TCP connection to their far end, :class:`DeliveryError` and
the sentence an operator reads when a delivery fails (:func:`failure_text`).

A module of its own so that the outputs (JSON lines and webhook in
receiver.forwarder, DC-09 in receiver.dc09_output) and the forwarder that
picks one import it, not each other.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from urllib.parse import urlsplit

from receiver.routing import OutputSpec

_LOGGER = logging.getLogger(__name__)

# Longest line a JSON-lines sink may answer with; anything longer is a
# broken peer (an "ACK <id>" line is under 32 bytes).
MAX_SINK_LINE = 1024


class DeliveryError(Exception):
    """The far end did not take the message; retry later.  The message is a
    sentence an operator reads on the dispatch view (:func:`failure_text`),
    never an exception's repr."""


def target_of(spec: OutputSpec) -> str:
    """Where an output delivers, as an operator reads it: HOST:PORT, or the
    URL without user, password or query (they may hold secrets)."""
    if not spec.url:
        return "%s:%d" % (spec.host, spec.port)
    u = urlsplit(spec.url)
    host = u.hostname or ""
    if ":" in host:
        host = "[%s]" % host
    return "%s://%s%s%s" % (u.scheme, host, ":%d" % u.port if u.port else "", u.path)


# errno -> what it means for a far end, in words
_ERRNO_WORDS = {
    errno.ECONNREFUSED: "refused the connection (nothing is listening there)",
    errno.ECONNRESET: "closed the connection",
    errno.EPIPE: "closed the connection",
    errno.ECONNABORTED: "closed the connection",
    errno.EHOSTUNREACH: "cannot be reached (no route to the host)",
    errno.ENETUNREACH: "cannot be reached (network unreachable)",
    errno.ETIMEDOUT: "did not answer (connection timed out)",
}


def failure_text(e: BaseException, target: str, timeout_s: float) -> str:
    """Why a delivery to ``target`` failed, as a sentence without the final
    stop: 'no answer from 10.0.0.5:7000 within 5 s', '10.0.0.5:7000 refused
    the connection (nothing is listening there)'."""
    inner = getattr(e, "os_error", None)  # aiohttp wraps the socket's error
    if isinstance(inner, OSError):
        e = inner
    if isinstance(e, (asyncio.TimeoutError, TimeoutError)):
        return "no answer from %s within %g s" % (target, timeout_s)
    if isinstance(e, socket.gaierror):
        return "%s: the host name is not known" % target
    if isinstance(e, asyncio.LimitOverrunError):
        return "%s answered with a line longer than %d bytes" % (target, MAX_SINK_LINE)
    if isinstance(e, OSError):
        words = None if e.errno is None else _ERRNO_WORDS.get(e.errno)
        if words is None and isinstance(e, ConnectionError):
            words = "closed the connection"
        if words is not None:
            return "%s %s" % (target, words)
        return "%s: %s" % (target, (e.strerror or str(e) or type(e).__name__).lower())
    if isinstance(e, ValueError):
        return "%s sent an answer that could not be read" % target
    return "%s: %s" % (target, str(e) or type(e).__name__)


class Output:
    """One far end.  ``deliver`` returns once the message is confirmed."""

    def __init__(self, spec: OutputSpec):
        self.spec = spec
        self.name = spec.name

    @property
    def target(self) -> str:
        return target_of(self.spec)

    async def deliver(self, outbox_id: int, message: dict) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        pass


class StreamOutput(Output):
    """An output over one TCP connection, opened when a delivery needs it
    and kept for the next one; a failed delivery closes it."""

    # Longest line or frame the far end's answers may hold (asyncio's own
    # default unless an output says less).
    read_limit = 2 ** 16

    def __init__(self, spec: OutputSpec):
        super().__init__(spec)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    def kept(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """The connection kept from an earlier delivery, if any."""
        if self._reader is None or self._writer is None:
            return None
        return self._reader, self._writer

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A new connection, kept; a failure is a :class:`DeliveryError`
        in words."""
        try:
            self._reader, self._writer = await asyncio.wait_for(
                asyncio.open_connection(self.spec.host, self.spec.port, limit=self.read_limit),
                self.spec.timeout_s)
        except (OSError, asyncio.TimeoutError) as e:
            raise DeliveryError(failure_text(e, self.target, self.spec.timeout_s)) from None
        _LOGGER.info("output connected output=%s address=%s:%d", self.name, self.spec.host,
                     self.spec.port)
        return self._reader, self._writer

    async def close(self) -> None:
        w, self._writer, self._reader = self._writer, None, None
        if w is not None:
            w.close()
            try:
                await w.wait_closed()
            except (OSError, asyncio.CancelledError):
                pass

"""Store-and-forward delivery of routed alarms to dispatch centres.

Every delivery starts as a row in the ``outbox`` table, written in the same
transaction as the event that caused it, so nothing is lost when a far end
is down or the receiver restarts.  One :class:`Forwarder` task per output
delivers that output's rows strictly in id order, one at a time; a failed
delivery is retried (same row, head of line) with capped, jittered backoff
until it succeeds.  A row is marked delivered only after the far end
confirmed it.  Delivery is at-least-once: if the receiver dies between the
far end's confirmation and the ``delivered_at`` update, the row goes again
with the same ``id``, so far ends deduplicate on ``id``.

The JSON-lines protocol (``type = "jsonl"``), over one TCP connection that
the receiver opens and keeps:

    receiver -> sink   one JSON object per line (UTF-8, '\\n' terminated),
                       always with an integer "id" (the outbox id) and
                       "type": "alarm"
    sink -> receiver   "ACK <id>\\n" once the sink has taken responsibility
                       for that message (stored or handed to a person)

The receiver sends the next line only after the ACK of the previous one.
Any other line is ignored; no ACK within ``timeout_s``, or the connection
closing, counts as a failure (reconnect, resend).

Webhook (``type = "webhook"``): HTTP POST of the same JSON object with
``Content-Type: application/json`` and ``Idempotency-Key: <id>``; any 2xx
status is delivery, anything else (or no answer within ``timeout_s``) a
failure.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import time
from typing import Awaitable, Callable

from receiver.backoff import Backoff
from receiver.outputs import (MAX_SINK_LINE, DeliveryError, Output, StreamOutput,
                              failure_text)
from receiver.records import OutboxRow
from receiver.routing import OutputSpec
from receiver.store import Store, StoreError

_LOGGER = logging.getLogger(__name__)

# Rows fetched from the outbox per query; delivery stays one at a time.
FETCH_ROWS = 100
# At most this long to look up where an alarm is before it goes without
# (the store slow or failing must not hold an alarm back).
WHERE_TIMEOUT_S = 2.0
# How often an idle forwarder looks at the outbox even without a wake-up
# (rows written by another process, or a wake-up lost in a restart).
IDLE_POLL_S = 5.0


class JsonLinesOutput(StreamOutput):
    read_limit = MAX_SINK_LINE

    async def deliver(self, outbox_id: int, message: dict) -> None:
        reader, writer = self.kept() or await self.connect()
        line = json.dumps(dict(message, id=outbox_id), sort_keys=True,
                          separators=(",", ":")) + "\n"
        want = ("ACK %d" % outbox_id).encode()
        try:
            writer.write(line.encode())
            await asyncio.wait_for(writer.drain(), self.spec.timeout_s)
            deadline = asyncio.get_running_loop().time() + self.spec.timeout_s
            while True:
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    raise asyncio.TimeoutError()
                got = await asyncio.wait_for(reader.readline(), left)
                if not got:
                    raise ConnectionResetError(errno.ECONNRESET, "closed")
                if got.strip() == want:
                    return
                # an ACK of an earlier (resent) id, or chatter: ignore
        except (OSError, asyncio.TimeoutError, ValueError, asyncio.LimitOverrunError) as e:
            await self.close()
            raise DeliveryError(failure_text(e, self.target, self.spec.timeout_s)) from None


class WebhookOutput(Output):
    def __init__(self, spec: OutputSpec):
        super().__init__(spec)
        self._session = None

    async def deliver(self, outbox_id: int, message: dict) -> None:
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.spec.timeout_s))
        try:
            async with self._session.post(
                    self.spec.url, json=dict(message, id=outbox_id),
                    headers={"Idempotency-Key": str(outbox_id)}) as resp:
                if 200 <= resp.status < 300:
                    return
                raise DeliveryError(("%s answered HTTP %d %s" % (
                    self.target, resp.status, resp.reason or "")).rstrip())
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
            raise DeliveryError(failure_text(e, self.target, self.spec.timeout_s)) from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def make_output(spec: OutputSpec) -> Output:
    if spec.type == "dc09":
        from receiver.dc09_output import Dc09Output  # noqa: PLC0415 - imports us

        return Dc09Output(spec)  # SIA DC-09 ADM-CID to automation software
    return JsonLinesOutput(spec) if spec.type == "jsonl" else WebhookOutput(spec)


class Forwarder:
    """Delivers one output's outbox rows in order, for ever."""

    def __init__(self, store: Store, output: Output, metrics=None,
                 backoff: Backoff | None = None, on_change=None,
                 gate: Callable[[str], bool] | None = None,
                 where: Callable[[dict], Awaitable[dict | None]] | None = None):
        self.store = store
        # where(message): where the alarm is, looked up at delivery (the
        # receiver's vehicle service: a van's last known position when its
        # event had no fix); None: messages go as stored
        self.where = where
        # gate(output name): does this receiver deliver the output now?
        # (several receivers on one store: only the holder of the output's
        # shard does, receiver.ownership); None: always.
        self.gate = gate
        self.output = output
        self.metrics = metrics
        # Health, for the console: since when the far end has been failing
        # (None: the last attempt succeeded, or none failed yet), the last
        # failure in words, failed attempts in a row.  ``on_change(self)``
        # is called when it starts or stops failing, or fails differently.
        self.failing_since: float | None = None
        self.last_error: str | None = None
        self.failures = 0
        self.on_change = on_change
        cap = output.spec.retry_max_s
        self.backoff = backoff or Backoff(base_s=min(0.5, cap), cap_s=cap)
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.delivered = 0

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="forwarder-%s" % self.output.name)

    async def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, 5)
            except asyncio.TimeoutError:
                self._task.cancel()
                try:
                    await self._task
                except asyncio.CancelledError:
                    pass
        await self.output.close()

    async def _idle(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
        except asyncio.TimeoutError:
            pass
        self._wake.clear()

    async def _run(self) -> None:
        name = self.output.name
        while not self._stop.is_set():
            if self.gate is not None and not self.gate(name):
                await self._idle(IDLE_POLL_S)
                continue
            try:
                rows = await self.store.outbox_pending(name, FETCH_ROWS)
            except StoreError as e:
                _LOGGER.warning("outbox unreadable output=%s error=%s", name, e)
                if await self.backoff.wait(self._stop):
                    return
                continue
            if not rows:
                await self._idle(IDLE_POLL_S)
                continue
            for row in rows:
                if not await self._deliver_one(row):
                    return  # stopping
        _LOGGER.debug("forwarder stopped output=%s", name)

    def _health(self, error: str | None) -> None:
        was = self.failing_since is not None, self.last_error
        if error is None:
            self.failing_since, self.last_error, self.failures = None, None, 0
        else:
            if self.failing_since is None:
                self.failing_since = time.time()
            self.last_error = error
            self.failures += 1
        if was != (self.failing_since is not None, self.last_error) and self.on_change:
            try:
                self.on_change(self)
            except Exception:  # noqa: BLE001 - a listener must not stop delivery
                _LOGGER.exception("output health listener failed output=%s", self.output.name)

    async def _message(self, row: OutboxRow) -> dict:
        """The row's message as sent: an alarm gets ``where`` (an object, or
        null: nowhere known).  When it cannot be looked up (the store
        failing) the alarm goes without it rather than wait: the far end
        reads a missing ``where`` as not looked up, never as nowhere."""
        if self.where is None or row.payload.get("type") != "alarm":
            return row.payload
        try:
            where = await asyncio.wait_for(self.where(row.payload), WHERE_TIMEOUT_S)
        except Exception as e:  # noqa: BLE001 - the alarm goes anyway
            why = ("no answer within %g s" % WHERE_TIMEOUT_S
                   if isinstance(e, (asyncio.TimeoutError, TimeoutError)) else str(e))
            _LOGGER.warning("alarm forwarded without where output=%s id=%d account=%s "
                            "error=%s", self.output.name, row.id, row.payload.get("account"),
                            why or "the lookup failed")
            return row.payload
        return dict(row.payload, where=where)

    async def _deliver_one(self, row: OutboxRow) -> bool:
        name = self.output.name
        while not self._stop.is_set():
            try:
                await self.output.deliver(row.id, await self._message(row))
            except DeliveryError as e:
                delay_from = self.backoff.failures + 1
                _LOGGER.warning("delivery failed output=%s id=%d account=%s attempt=%d "
                                "error=%s", name, row.id, row.payload.get("account"),
                                row.attempts + delay_from, e)
                if self.metrics is not None:
                    self.metrics.forwarded.labels(name, "failed").inc()
                self._health(str(e))
                try:
                    await self.store.outbox_result(row.id, False, str(e)[:500], time.time())
                except StoreError:
                    pass  # attempts are bookkeeping; the row stays pending anyway
                if await self.backoff.wait(self._stop):
                    return False
                continue
            self.backoff.reset()
            self.delivered += 1
            self._health(None)
            if self.metrics is not None:
                self.metrics.forwarded.labels(name, "delivered").inc()
            _LOGGER.info("delivered output=%s id=%d account=%s", name, row.id,
                         row.payload.get("account"))
            while True:
                try:
                    await self.store.outbox_result(row.id, True, None, time.time())
                    return True
                except StoreError as e:
                    # Delivered but not recorded: keep trying to record it so it
                    # is not sent again (it would be deduplicated on id anyway).
                    _LOGGER.warning("cannot mark delivered output=%s id=%d error=%s",
                                    name, row.id, e)
                    if await self.backoff.wait(self._stop):
                        return False
        return False

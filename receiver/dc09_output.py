"""SIA DC-09 forwarding output: routed alarms to automation software
(central-station software that takes DC-09 from receivers) as ADM-CID
messages over TCP, each one confirmed by the far end's ACK.

Configured as an output of the routing file::

    [outputs.automation]
    type = "dc09"
    address = "10.0.0.5:7710"
    account = "1234"       # optional: report every alarm as this account;
                           # default: the alarm's own account (zero-padded
                           # to 4 digits when shorter than 3)
    key = "..."            # optional AES-128/192/256 key: encrypted messages
    key_format = "hex"     # or "ascii"
    line = "0"             # account prefix (L field), default "0"
    receiver = "1"         # receiver number (R field), optional
    timeout_s = 10
    retry_max_s = 60

Its options are checked with the routing file (``receiver.routing.dc09_options``).
It plugs into the forwarder's store-and-forward (``receiver.forwarder``):
each outbox row is one message, delivered in id order, retried at the head
with capped backoff until the far end ACKs it, across restarts.  Delivery
is at least once; the sequence number is derived from the outbox id
(``(id - 1) % 9999 + 1``), so a message sent again after a restart carries
its first sequence number and the far end can recognise the copy.

The far end's replies (DC-09 5.5.3): ``ACK`` (``*ACK`` for an encrypted
message, checked with the key) with our sequence number = delivered.
``NAK`` = not delivered; its timestamp gives the far end's clock, and the
next attempt's timestamp is corrected by the difference (5.5.3.2).
``DUH`` = not delivered either: the row stays at the head and is retried,
logged with the reason, because dropping an alarm is worse than holding
the queue until someone fixes the far end's configuration.

A far end may keep the connection or close it after each reply; when a
kept connection turns out closed before any reply, the message is sent
once more on a fresh connection in the same attempt.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timedelta, timezone

from protocol import dc09
from receiver.outputs import DeliveryError, StreamOutput, failure_text

_LOGGER = logging.getLogger(__name__)

# Bytes read from the far end per call.
_READ = 4096


def seq_for(outbox_id: int) -> int:
    """DC-09 sequence number (0001..9999) of an outbox row."""
    return (outbox_id - 1) % dc09.SEQ_LAST + 1


def _clamp(v, top: int) -> int:
    try:
        v = int(v or 0)
    except (TypeError, ValueError):
        return 0
    return min(max(v, 0), top)


def message_for(outbox_id: int, payload: dict, opts: dict, now: datetime) -> dc09.Dc09Message:
    """The ADM-CID message of an outbox row.  Never raises for a payload:
    a field out of Contact ID's range is clamped (a row that can never be
    built would block the output for ever)."""
    account = opts["account"]
    if account is None:
        account = str(payload.get("account") or "0")
        if not all(c in "0123456789ABCDEFabcdef" for c in account) or len(account) > 16:
            account = "0000"
        account = account.upper().rjust(4, "0") if len(account) < 3 else account.upper()
    q = payload.get("qualifier")
    event = {"qualifier": q if q in (1, 3, 6) else 1, "code": _clamp(payload.get("code"), 999),
             "partition": _clamp(payload.get("partition"), 99),
             "zone": _clamp(payload.get("zone"), 999)}
    return dc09.Dc09Message(
        msg_id=dc09.ADM_CID, encrypted=opts["key"] is not None, seq=seq_for(outbox_id),
        receiver=opts["receiver"], line=opts["line"], account=account,
        data=dc09.event_to_adm_cid(account, event), extended=_where_blocks(payload),
        timestamp=now.replace(microsecond=0))


def _where_blocks(payload: dict) -> list[tuple[str, str]]:
    """Where the alarm is (the forwarder's ``where``: the event's fix, a
    van's last known position, or the site), as DC-09 extended data X
    (longitude) and Y (latitude), 5.5.1.9; none when not known."""
    where = payload.get("where")
    try:
        lat, lon = float(where["lat"]), float(where["lon"])  # type: ignore[index]
    except (TypeError, KeyError, ValueError):
        return []
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return []
    return [("X", "%s%.6f" % ("W" if lon < 0 else "E", abs(lon))),
            ("Y", "%s%.6f" % ("S" if lat < 0 else "N", abs(lat)))]


class Dc09Output(StreamOutput):
    def __init__(self, spec):
        super().__init__(spec)
        if spec.dc09 is None:
            raise ValueError("output %s is not a DC-09 output" % spec.name)
        self.opts: dict = spec.dc09
        self.skew = timedelta(0)  # far end's clock minus ours, from its NAKs
        self.naks = 0
        self.duhs = 0

    async def deliver(self, outbox_id: int, message: dict) -> None:
        kept = self.kept()
        reader, writer = kept or await self.connect()
        try:
            got = await self._attempt(reader, writer, outbox_id, message)
            if got is None and kept is not None:
                # the far end closed the kept connection (some close after
                # every reply): once more on a fresh one
                await self.close()
                reader, writer = await self.connect()
                got = await self._attempt(reader, writer, outbox_id, message)
        except (OSError, asyncio.TimeoutError) as e:
            await self.close()
            raise DeliveryError(failure_text(e, self.target, self.spec.timeout_s)) from None
        if got is None:
            await self.close()
            raise DeliveryError("%s closed the connection before it answered" % self.target)
        if got.msg_id == dc09.ACK:
            return
        if got.msg_id == dc09.NAK:
            self.naks += 1
            if got.timestamp is not None:
                self.skew = got.timestamp - datetime.now(timezone.utc)
            raise DeliveryError("%s refused the message (DC-09 NAK%s); sent again with its "
                                "time" % (self.target, ", its clock reads %s" % (
                                    got.timestamp.strftime("%Y-%m-%d %H:%M:%S UTC"))
                                    if got.timestamp else ""))
        self.duhs += 1
        raise DeliveryError("%s cannot process messages for account %s (DC-09 DUH)"
                            % (self.target, got.account))

    async def _attempt(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       outbox_id: int, payload: dict):
        """Send the row's message; the matching reply, or None if the
        connection closed before one."""
        msg = message_for(outbox_id, payload, self.opts,
                          datetime.now(timezone.utc) + self.skew)
        key = self.opts["key"]
        writer.write(dc09.build(msg, key))
        await asyncio.wait_for(writer.drain(), self.spec.timeout_s)
        frames = dc09.Dc09Reader()
        deadline = time.monotonic() + self.spec.timeout_s
        while True:
            while True:
                try:
                    frame = frames.next_frame()
                except dc09.Dc09OversizeError:
                    continue
                if frame is dc09.NEED_DATA:
                    break
                try:
                    reply = dc09.parse(frame, key_lookup=lambda _a: key)
                except dc09.Dc09Error as e:
                    _LOGGER.warning("output reply refused output=%s id=%d error=%s",
                                    self.name, outbox_id, e)
                    continue
                if reply.msg_id == dc09.NAK:
                    return reply  # NAK carries 0000 and no account (5.5.3.2)
                if reply.msg_id not in (dc09.ACK, dc09.DUH) or reply.seq != msg.seq:
                    continue  # a late reply to an earlier attempt, or chatter
                if reply.msg_id == dc09.ACK and reply.encrypted != msg.encrypted:
                    # 5.5.3.1: the ACK to an encrypted message is encrypted;
                    # a clear one could come from anybody on the path.
                    _LOGGER.warning("output ACK refused output=%s id=%d: %s ACK", self.name,
                                    outbox_id, "encrypted" if reply.encrypted else "clear")
                    continue
                return reply
            left = deadline - time.monotonic()
            if left <= 0:
                raise asyncio.TimeoutError()
            data = await asyncio.wait_for(reader.read(_READ), left)
            if not data:
                return None
            frames.receive_data(data)

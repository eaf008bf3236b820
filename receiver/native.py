"""The native protocol's glue between the session core and the receiver:
what happens to each frame the core judged (``protocol.session``), once
the listeners (``receiver.listeners``) have read it.

    service.handle(result, link)    # Accepted or Rejected, from any native link

Accepted EVENT   -> supervision heard it -> NAK busy, or store it
                    (``Receiver.queue_records``) and ACK after the commit;
                    the events of one turn of the event loop (every read
                    it handled) are queued together, one request each,
                    into one group commit, and ACKed by one task
Accepted POSITION -> supervision heard it -> NAK busy (the store is behind,
                    or track points fill their share of its queue), or
                    store the track point (``Receiver.ingest_track``) and
                    ACK after the commit; a copy of a stored point (same
                    content, any sequence) is ACKed and stored once
Accepted HEARTBEAT / HELLO / REPLY -> supervision heard it -> ACK at once
                    (with several receivers: once the hearing is stored);
                    a REPLY goes to the command waiting for it
Accepted duplicate EVENT -> ACK again (the store has it)
Rejected         -> the shared link policy (receiver.link_policy): NAK or
                    silence, a security event for forgeries and replays

Invariants:

- An ACK for an event or a track point leaves only after it is durable
  (``record_stored``, ``ingest_track`` returned); one that cannot be
  stored gets NAK busy and the panel retries.  An EVENT's position (v1.1
  ext bit 2) is stored with it, and in the track, in the same commit.
- Nothing a peer sends raises out of :meth:`NativeService.handle`; a bug
  in a commit is logged, unanswered (the panel retries), never fatal.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Protocol

from protocol.lean import glwire as w
from protocol.session import Accepted, Rejected, ReceiverCore
from receiver.accounts import Accounts
from receiver.commands import RemoteCommands
from receiver.link_policy import Busy, LinkPolicy
from receiver.metrics import Metrics
from receiver.records import (EventRecord, IngestOutcome, Position, TrackOutcome,
                              TrackRecord)

if TYPE_CHECKING:
    from receiver.ownership import Cluster

_LOGGER = logging.getLogger(__name__)


class NativeHost(Protocol):
    """What the native glue needs of the receiver."""

    core: ReceiverCore
    metrics: Metrics
    link_policy: LinkPolicy
    cluster: Cluster | None
    accounts: Accounts
    commands: RemoteCommands

    def heard(self, account: str, path: int, now: float) -> None: ...

    def spawn(self, coro, inflight: bool = False) -> asyncio.Task: ...

    def make_record(self, event: dict) -> EventRecord: ...

    def queue_records(self, recs: list[EventRecord]) -> list[asyncio.Future]: ...

    async def record_stored(self, rec: EventRecord, fut: asyncio.Future) -> IngestOutcome: ...

    def track_busy_reason(self) -> str | None: ...

    async def ingest_track(self, rec: TrackRecord) -> TrackOutcome: ...


class NativeService:
    def __init__(self, rx: NativeHost):
        self.rx = rx
        # events accepted in this turn of the loop, not yet queued to the store
        self._turn: list = []

    def handle(self, result: Accepted | Rejected, link) -> None:
        """A judged frame from a listener's link.  Never raises for anything
        a peer can send (listeners also guard the call)."""
        if isinstance(result, Rejected):
            self._rejected(result, link)
            return
        rx = self.rx
        acc = result
        now = time.time()
        rx.link_policy.accepted(link)
        if acc.restarted_from is not None:
            rx.link_policy.security_event(
                acc.account, acc.seq, "sequence_restart",
                "sequence space spent up to %d (past %d, where only a key holder's jumps "
                "take an account); restarted at the panel's %d: re-key the account"
                % (acc.restarted_from, w.MAX_NEXT_SEQ, acc.seq), link, count=False)
        rx.heard(str(acc.account), acc.path, now)
        rx.accounts.mark_dirty(acc.account)
        mtype = acc.msg["type"]
        if mtype == w.MSG_EVENT:
            self._event(acc, link, now)
        elif mtype == w.MSG_POSITION:
            self._position(acc, link, now)
        elif mtype in (w.MSG_HEARTBEAT, w.MSG_HELLO, w.MSG_REPLY):
            self._hearing(acc, link, now)
        else:
            # ACK, NAK, TIME, COMMAND are the receiver's messages.
            rx.metrics.naks.labels("unsupported").inc()
            link.send(rx.core.nak(acc.account, acc.seq, w.NAK_UNSUPPORTED, now))

    def _event(self, acc: Accepted, link, now: float) -> None:
        rx = self.rx
        if acc.duplicate:
            rx.metrics.duplicates.inc()
            link.send(rx.core.ack(acc, now))
            return
        reason = rx.link_policy.refusal(link)
        if reason is not None:
            self._nak_busy(acc, link, reason)
            return
        rec = self._record(acc, link, now)
        link.inflight += 1
        self._turn.append((acc, rec, link))
        if len(self._turn) == 1:
            # the first event of this turn of the loop: one task stores and
            # ACKs every event the turn's reads bring (it starts after them)
            rx.spawn(self._store_and_ack_turn(), inflight=True)

    def _position(self, acc: Accepted, link, now: float) -> None:
        """A vehicle unit's track point: stored, then ACKed."""
        rx = self.rx
        if acc.duplicate:
            link.send(rx.core.ack(acc, now))
            return
        reason = rx.link_policy.refusal(link) or rx.track_busy_reason()
        if reason is not None:
            self._nak_busy(acc, link, reason)
            return
        m = acc.msg
        # keyed by content, not sequence: the unit takes a new sequence each
        # time it offers a point again (after giving way to an event, a
        # path change or a restart), and the fix time in it tells points
        # apart (firmware/device/reporter.py)
        rec = TrackRecord(str(acc.account), "native:" + acc.digest, now,
                          Position.from_wire(m["position"]), reason=m["reason"],
                          path=acc.path, peer=link.peer)
        link.inflight += 1
        rx.spawn(self._store_and_ack(acc, lambda: rx.ingest_track(rec), link,
                                     time.perf_counter()), inflight=True)

    def _hearing(self, acc: Accepted, link, now: float) -> None:
        """A heartbeat, a HELLO or a REPLY: nothing to store but the hearing."""
        rx = self.rx
        m = acc.msg
        if m["type"] == w.MSG_REPLY:
            rx.commands.reply_received(acc)
        elif m["type"] == w.MSG_HELLO:
            _LOGGER.info("panel hello account=%s fw=%d.%d.%d kind=%d zones=%d "
                         "heartbeat_s=%d peer=%s", acc.account, m["fw_major"], m["fw_minor"],
                         m["fw_patch"], m["panel_kind"], m["zones"], m["heartbeat_s"],
                         link.peer)
        if rx.cluster is not None:
            # Several receivers: ACK once the hearing is committed, so a
            # receiver that dies takes no ACKed hearing with it.
            rx.spawn(self._ack_when_heard(acc, link, now), inflight=True)
            return
        link.send(rx.core.ack(acc, now))

    def _record(self, acc: Accepted, link, now: float) -> EventRecord:
        m = acc.msg
        rec = self.rx.make_record({
            "account": str(acc.account), "protocol": "native",
            # sequence + content: a retransmission dedupes, a new event that
            # reuses a sequence after a panel's counter reset does not
            "dedupe_key": "native:%d:%s" % (acc.seq, acc.digest), "seq": acc.seq,
            "qualifier": m["qualifier"], "code": m["code"], "partition": m["partition"],
            "zone": m["zone"], "text": m.get("text"), "value": m.get("value"),
            "event_time": m["event_time"] or None, "received_at": now, "path": acc.path,
            "peer": link.peer, "position": Position.from_wire(m["position"])
            if m.get("position") is not None else None})
        st = self.rx.core.state(acc.account)
        if st is not None:
            rec.tx_seq = st.tx_seq + 1  # the ACK about to be sealed
        return rec

    async def _store_and_ack(self, acc: Accepted, store, link, t0: float) -> None:
        """``await store()`` (a track point's ingest, or an event's queued
        write), then the ACK; NAK busy when it must be retried."""
        rx = self.rx
        try:
            await store()
        except Busy as e:
            self._nak_busy(acc, link, e.reason)
            return
        except Exception:  # noqa: BLE001 - a bug: no ACK, the panel retries
            _LOGGER.exception("ingest failed account=%d seq=%d", acc.account, acc.seq)
            return
        finally:
            link.inflight -= 1
        link.send(rx.core.ack(acc, time.time()))
        rx.metrics.ack_seconds.observe(time.perf_counter() - t0)

    async def _store_and_ack_turn(self) -> None:
        """The events accepted in one turn of the event loop, on any link,
        [(Accepted, EventRecord, link)], each counted in its
        ``link.inflight``: queued at once, each its own store request, into
        one group commit (so each gets its own answer), then ACKed each once
        durable, or NAKed busy, in arrival order."""
        rx = self.rx
        events, self._turn = self._turn, []
        t0 = time.perf_counter()
        try:
            futs = rx.queue_records([rec for _, rec, _ in events])
        except Busy as e:
            for acc, _, link in events:
                link.inflight -= 1
                self._nak_busy(acc, link, e.reason)
            return
        except Exception:  # noqa: BLE001 - a bug: no ACK, the panels retry
            for _, _, link in events:
                link.inflight -= 1
            _LOGGER.exception("ingest failed events=%s", ", ".join(
                "%d/%d" % (acc.account, acc.seq) for acc, _, _ in events))
            return
        for (acc, rec, link), fut in zip(events, futs):
            await self._store_and_ack(acc, lambda: rx.record_stored(rec, fut), link, t0)

    async def _ack_when_heard(self, acc: Accepted, link, now: float) -> None:
        rx = self.rx
        if rx.cluster is None:  # a lone receiver ACKs at once (_hearing)
            return
        try:
            await rx.cluster.heard_durable(str(acc.account), acc.path, now)
        except Exception as e:  # noqa: BLE001 - the store failing: the panel retries
            self._nak_busy(acc, link, "hearing not stored: %s" % e)
            return
        link.send(rx.core.ack(acc, time.time()))

    def _nak_busy(self, acc: Accepted, link, reason: str) -> None:
        self.rx.link_policy.nak_busy(acc.account, str(acc.seq), link, reason)
        link.send(self.rx.core.nak(acc.account, acc.seq, w.NAK_BUSY, time.time()))

    def _rejected(self, rej: Rejected, link) -> None:
        if rej.reply is not None:
            if rej.account is not None:
                self.rx.accounts.mark_dirty(rej.account)  # the NAK advanced our sequence
            link.send(rej.reply)
        self.rx.link_policy.rejected(link, rej.reason_name, rej.account, rej.seq, rej.detail,
                                     security=rej.security, nak=rej.reply is not None)

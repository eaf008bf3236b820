"""Receiver-side session core of the native protocol (sans-I/O).

The receiver's asyncio, UDP and serial adapters feed bytes in and send the
bytes this core returns; it does no I/O and reads no clock (``now`` is a
Unix time in seconds, passed in).  One :class:`ReceiverCore` is shared by
every connection because replay state belongs to the *account*, not to a
connection: a panel may report over TCP, then UDP, then a serial trunk.

Checks, in order (docs/protocol.md, "Receiver checks"):

1. header CRC, frame CRC (FrameReader)  -> BadFrame: NAK bad_crc only on a
   stream that has had a frame of that account accepted, else silence
   (the answer must not tell a prober which accounts exist)
2. account known                        -> silence, security event
3. MAC                                  -> silence, security event
4. version, flag bits, direction        -> NAK unsupported/malformed, or
                                           silence for a reflected frame
5. exact copy of a recent frame         -> silence, security event (replay)
6. timestamp inside the window          -> NAK time with our clock
7. sequence                             -> new / duplicate / NAK replay /
                                           silence, security event (a jump
                                           beyond MAX_SEQ_JUMP)
8. payload decodes                      -> NAK malformed

Invariants:

- A sequence is marked *committed* only when the application calls
  :meth:`ReceiverCore.ack`, which it does after the event is durably
  stored.  A frame whose store failed is therefore processed again when the
  panel retransmits it; the store's unique (account, seq) key keeps it
  single.
- ``Accepted.duplicate`` is true only for a sequence already committed
  *with the same content*: the application re-ACKs it and stores nothing.
  A panel whose counter was reset (flash wiped) reuses old sequences for
  new events; their content differs, so they are never taken for
  retransmissions (``Accepted.digest`` goes into the store's dedupe key).
- Per-account state is bounded: the set of committed sequences covers the
  reorder window only, and the recent-MAC set holds at most
  ``RECENT_MACS`` entries.
- No frame raises: whatever sequence, timestamp or payload an authentic
  frame carries, :meth:`ReceiverCore.handle` returns a verdict, and a NAK
  never asks a panel to continue above ``MAX_NEXT_SEQ``
  (tests/test_rx_sequence.py drives it with hypothesis).
- Sequences only move forward, by at most ``MAX_SEQ_JUMP`` per accepted
  frame.  Only a key holder can push the highest committed sequence past
  ``MAX_NEXT_SEQ``; the account then restarts its sequence at the next
  fresh, authentic frame from behind (``Accepted.restarted_from``, a
  security event) instead of asking the panel for a sequence it could not
  use: the genuine panel is never locked out.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable

from protocol.errors import LocalProtocolError
from protocol.lean import glwire as w

_LOGGER = logging.getLogger(__name__)

# How far a sender's timestamp may be from ours.  EN 50136-2 asks for
# substitution/replay protection without fixing a window; SIA DC-09 uses
# -40 s / +20 s for its own timestamps (5.5.1.8).  We take +-60 s: wide enough for a
# panel whose clock was set by our last ACK a day ago (crystal drift is a
# few s/day), narrow enough that a recorded frame is useless a minute on.
TIME_WINDOW_S = 60
# Sequences below the highest committed one that are still accepted (UDP
# reorders; two paths deliver out of order).  As IPsec's anti-replay window.
REORDER_WINDOW = 64
# Recent frame MACs remembered per account to reject exact copies.  A
# genuine sender re-seals each transmission, so only a recorder repeats a
# MAC.  Heartbeats at 20 s, events in bursts: 64 covers the time window.
RECENT_MACS = 64
# Sequence bounds (protocol.lean.glwire, docs/protocol.md section 9): how
# far one frame may jump past the highest committed sequence, and the
# highest sequence a NAK replay asks a panel to continue from.
MAX_SEQ_JUMP = w.MAX_SEQ_JUMP
MAX_NEXT_SEQ = w.MAX_NEXT_SEQ
# Accounts a stream connection remembers as having had a frame accepted on
# it (a serial trunk carries a few dozen panels): a NAK bad_crc goes only to
# those, so a prober learns nothing from it.
VOUCHED_PER_CONNECTION = 256


@dataclass
class AccountState:
    """What the core keeps per account (small: ~1 KB)."""

    keys: w.Keys
    highest_seq: int = 0  # highest committed sequence from the panel
    tx_seq: int = 0  # our own sequence towards the panel
    committed: dict = field(default_factory=dict)  # seq -> digest, reorder window
    recent_macs: OrderedDict = field(default_factory=OrderedDict)


@dataclass
class Accepted:
    """An authenticated, fresh frame.  Store it (if an EVENT and not a
    duplicate), then call ``core.ack(accepted, now)`` and send the bytes."""

    account: int
    seq: int
    timestamp: int
    flags: int
    msg: dict
    duplicate: bool
    digest: str = ""  # content digest: with seq, what identifies this event
    # Set when this frame restarted the account's spent sequence space: the
    # highest committed sequence abandoned (record a security event).
    restarted_from: int | None = None

    @property
    def path(self) -> int:
        """1 = primary, 2 = backup (as the panel reported it)."""
        return 2 if self.flags & w.FLAG_BACKUP_PATH else 1

    @property
    def clock_unset(self) -> bool:
        return bool(self.flags & w.FLAG_CLOCK_UNSET)


@dataclass
class Rejected:
    """A frame we refuse.  Send ``reply`` if not None; log it; when
    ``security`` is true record a security event (possible attack)."""

    account: int | None
    seq: int | None
    reason: int  # glwire.NAK_* code
    detail: str
    security: bool
    reply: bytes | None = None
    name: str = ""  # a finer reason than the NAK code (security events, metrics)

    @property
    def reason_name(self) -> str:
        return self.name or w.NAK_NAMES.get(self.reason, str(self.reason))


# keyring(account) -> (master_key, highest_seq, tx_seq) or None
Keyring = Callable[[int], "tuple[bytes, int, int] | None"]


class ReceiverCore:
    def __init__(self, keyring: Keyring, time_window_s: int = TIME_WINDOW_S,
                 reorder_window: int = REORDER_WINDOW):
        self._keyring = keyring
        self.time_window_s = time_window_s
        self.reorder_window = reorder_window
        self._accounts: dict[int, AccountState] = {}

    # -- accounts -----------------------------------------------------------

    def state(self, account: int) -> AccountState | None:
        st = self._accounts.get(account)
        if st is None:
            found = self._keyring(account)
            if found is None:
                return None
            key, highest, tx = found
            st = AccountState(w.Keys(key), highest_seq=highest, tx_seq=tx)
            self._accounts[account] = st
        return st

    def _known(self, account: int) -> AccountState:
        """The state of an account we are about to seal a frame for: one
        without a key is our own mistake (a caller acking, NAKing or
        commanding an account it never judged), not the peer's."""
        st = self.state(account)
        if st is None:
            raise LocalProtocolError("account %d has no key: nothing to seal with" % account)
        return st

    def forget(self, account: int) -> None:
        """Drop cached state (after a key change or account removal)."""
        self._accounts.pop(account, None)

    # -- incoming -----------------------------------------------------------

    def handle(self, frame, now: float, vouched=()) -> Accepted | Rejected:
        """Judge one frame from FrameReader or decode_datagram.  ``vouched``:
        accounts that had a frame accepted on the same stream (a NAK bad_crc
        goes only to those)."""
        now_i = int(now)
        if isinstance(frame, w.BadFrame):
            # Line noise.  Answer only on a stream that this account has
            # already used: an answer for known accounts alone (sealed with
            # their key) would tell a prober which accounts exist.  Anyone
            # else's panel resends after its ACK timeout, as for a lost frame.
            st = self.state(frame.account) if frame.account in vouched else None
            reply = None
            if st is not None:
                reply = self._nak(frame.account, st, frame.seq, w.NAK_BAD_CRC, now_i)
            return Rejected(frame.account, frame.seq, w.NAK_BAD_CRC,
                            "bad frame CRC (line noise)", False, reply)
        acct = frame.account
        st = self.state(acct)
        if st is None:
            # Answering would confirm which accounts exist: stay silent.
            return Rejected(acct, frame.seq, w.NAK_UNKNOWN_ACCOUNT,
                            "unknown account %d" % acct, True)
        if frame.flags & w.FLAG_FROM_RECEIVER:
            return Rejected(acct, frame.seq, w.NAK_BAD_MAC,
                            "frame carries the receiver direction flag (reflected)", True)
        try:
            msg = w.open_frame(st.keys, frame)
        except w.WireError as e:
            if e.reason == w.NAK_BAD_MAC:
                return Rejected(acct, frame.seq, w.NAK_BAD_MAC, "bad MAC", True)
            # Authentic but not understood: tell the panel why.
            return Rejected(acct, frame.seq, e.reason, str(e), False,
                            self._nak(acct, st, frame.seq, e.reason, now_i))
        mac = bytes(frame.mac())
        if mac in st.recent_macs:
            return Rejected(acct, frame.seq, w.NAK_REPLAY,
                            "exact copy of an earlier frame (replay)", True)
        if abs(frame.timestamp - now_i) > self.time_window_s:
            return Rejected(acct, frame.seq, w.NAK_TIME,
                            "timestamp %d outside +-%d s of %d" % (
                                frame.timestamp, self.time_window_s, now_i),
                            False, self._nak(acct, st, frame.seq, w.NAK_TIME, now_i))
        seq = frame.seq
        highest = st.highest_seq
        if seq > highest and seq - highest > MAX_SEQ_JUMP:
            # Not a panel's counter (docs/protocol.md section 9): a key
            # holder, or a corrupt counter.  Accepting it would move the
            # account where the real panel could never follow.
            return Rejected(acct, seq, w.NAK_REPLAY,
                            "sequence %d is %d ahead of the highest accepted %d "
                            "(a panel moves at most %d ahead)" % (
                                seq, seq - highest, highest, MAX_SEQ_JUMP),
                            True, name="sequence_jump")
        self._remember_mac(st, mac)
        digest = content_digest(msg)
        if st.committed.get(seq) == digest:
            return Accepted(acct, seq, frame.timestamp, frame.flags, msg, True, digest)
        restarted = None
        if seq <= highest - self.reorder_window or seq == 0:
            # Fresh timestamp and a valid MAC but a sequence far behind: the
            # panel's counter was reset.  Tell it where to continue, unless
            # that is past what a panel may be asked for: only a key holder's
            # jumps get the account there, and the genuine panel must not be
            # locked out by them, so its sequence space restarts here.
            if highest < MAX_NEXT_SEQ or seq == 0:
                nxt = highest + 1 if highest < MAX_NEXT_SEQ else 1
                return Rejected(acct, seq, w.NAK_REPLAY,
                                "sequence %d behind %d" % (seq, highest), False,
                                self._nak(acct, st, seq, w.NAK_REPLAY, now_i, next_seq=nxt))
            restarted = highest
            st.highest_seq = seq - 1
            st.committed = {}
        return Accepted(acct, seq, frame.timestamp, frame.flags, msg, False, digest,
                        restarted_from=restarted)

    def _remember_mac(self, st: AccountState, mac: bytes) -> None:
        st.recent_macs[mac] = None
        while len(st.recent_macs) > RECENT_MACS:
            st.recent_macs.popitem(last=False)

    # -- outgoing -----------------------------------------------------------

    def _seal(self, account: int, st: AccountState, msg: dict, now: int) -> bytes:
        st.tx_seq = (st.tx_seq + 1) & 0xFFFFFFFF
        return w.seal(st.keys, msg, account, st.tx_seq, now, w.FLAG_FROM_RECEIVER)

    def _nak(self, account, st, seq, reason, now, next_seq=0) -> bytes:
        return self._seal(account, st, {"type": w.MSG_NAK, "nak_seq": seq, "reason": reason,
                                         "receiver_time": now, "next_seq": next_seq}, now)

    def ack(self, accepted: Accepted, now: float) -> bytes:
        """Mark the sequence committed and return the ACK frame.  Call only
        once the event is durably stored (or, for non-events, handled)."""
        st = self._known(accepted.account)
        seq = accepted.seq
        if seq > st.highest_seq:
            old_floor = st.highest_seq - self.reorder_window
            st.highest_seq = seq
            floor = seq - self.reorder_window
            c = st.committed
            if floor - old_floor <= 8 and len(c) <= 2 * self.reorder_window:
                # the usual step (the next sequence): drop what fell out of
                # the window, not rebuild the window
                for s in range(old_floor + 1, floor + 1):
                    c.pop(s, None)
            else:  # a jump, or stragglers ACKed below the window piled up
                st.committed = {s: d for s, d in c.items() if s > floor}
        st.committed[seq] = accepted.digest or content_digest(accepted.msg)
        return self._seal(accepted.account, st, {"type": w.MSG_ACK, "ack_seq": seq}, int(now))

    def nak(self, account: int, seq: int, reason: int, now: float) -> bytes:
        """A NAK the application decides on (busy: the store is behind)."""
        st = self._known(account)
        return self._nak(account, st, seq, reason, int(now))

    def time_sync(self, account: int, ref_seq: int, now: float,
                  utc_offset_min: int = 0) -> bytes:
        st = self._known(account)
        return self._seal(account, st, {"type": w.MSG_TIME, "ref_seq": ref_seq,
                                        "receiver_time": int(now),
                                        "utc_offset_min": utc_offset_min}, int(now))

    def command(self, account: int, command: int, partition: int, now: float,
                arg: int = 0, user: int = 0) -> tuple[int, bytes]:
        """Seal a COMMAND; returns (our sequence, frame).  Persist tx_seq
        (``state(account).tx_seq``) before sending: the panel refuses any
        command sequence it has seen."""
        st = self._known(account)
        frame = self._seal(account, st, {"type": w.MSG_COMMAND, "command": command,
                                         "partition": partition, "arg": arg, "user": user},
                           int(now))
        return st.tx_seq, frame


class ReceiverConnection:
    """One stream connection (TCP or a serial line): a FrameReader in front
    of the shared core.  Feed bytes with ``receive_data`` and call
    ``next_event(now)`` until it returns ``NEED_DATA``."""

    def __init__(self, core: ReceiverCore):
        self.core = core
        self._reader = w.FrameReader()
        self.authenticated = False  # set once a frame was accepted
        self.account: int | None = None
        # accounts accepted on this stream, oldest first (bounded)
        self.vouched: OrderedDict = OrderedDict()

    def receive_data(self, data) -> None:
        self._reader.receive_data(data)

    @property
    def discarded(self) -> int:
        return self._reader.discarded

    def next_event(self, now: float):
        f = self._reader.next_frame()
        if f is w.NEED_DATA:
            return f
        out = self.core.handle(f, now, self.vouched)
        if isinstance(out, Accepted):
            self.authenticated = True
            self.account = out.account
            self.vouched[out.account] = None
            self.vouched.move_to_end(out.account)
            if len(self.vouched) > VOUCHED_PER_CONNECTION:
                self.vouched.popitem(last=False)
        return out


NEED_DATA = w.NEED_DATA


def content_digest(msg: dict) -> str:
    """A short digest of a message's payload.  A retransmission carries the
    same payload (the panel re-seals the queued record); a new event that
    reuses a sequence after a counter reset does not."""
    return hashlib.sha256(w.encode_payload(msg)).hexdigest()[:16]


def handle_datagram(core: ReceiverCore, data: bytes, now: float) -> Accepted | Rejected:
    """One UDP datagram (exactly one frame)."""
    try:
        frame = w.decode_datagram(data)
    except w.WireError as e:
        return Rejected(None, None, e.reason or w.NAK_MALFORMED, str(e), False)
    return core.handle(frame, now)

# The persistent event queue: a ring of fixed-size slots in one flash file.
#
# Every event the panel reports is written here first and leaves only when
# the receiver has ACKed it (glpanel.Acked), so a power loss loses nothing
# that was committed.  Each record keeps the sequence number given when it
# was queued: a retransmission after a reboot carries the same sequence and
# the receiver de-duplicates it.
#
# Slot layout (64 bytes, big-endian):
#   0     1   magic 0x51 ('Q')
#   1     1   state: 'P' written, not committed / 'C' committed / 'D' done
#   2     4   sequence
#   6     1   qualifier        (glwire EVENT fields)
#   7     2   event code
#   9     1   partition
#   10    2   zone or user
#   12    4   event time (Unix s, 0 = clock unset)
#   16    1   text length (0..32)
#   17    32  text (UTF-8)
#   49    11  zero
#   60    4   CRC-32 over bytes 0 and 2..59 (not the state byte)
#
# Write protocol: the whole slot is written with state 'P' and flushed,
# then the single state byte is set to 'C' and flushed ("write, then
# commit").  ACK sets it to 'D'.  At boot a slot counts only if its magic,
# state 'C' and CRC are all good; anything else (a torn write, a record
# never committed, a file cut short by power loss) is a free slot.  This
# relies on one write() landing in order or not at all for bytes past the
# tear, which holds on littlefs (copy-on-write, commit on flush) and on
# POSIX files; the single-byte state writes are atomic on both.
#
# The ring is bounded (`slots`, 128 by default = 8 KB of flash, and the
# renumbering journal below: one slot more).  When it
# is full the oldest record that is not kept is dropped (then the oldest
# of all), and `dropped` counts it: a panel cut off for days keeps its
# alarms rather than its restores and supervision reports.  Kept are the
# alarms (Contact ID 1xx, new) and the 624 "event log overflow" report
# itself, which the panel queues when this happens (app.py) so that a
# drop is never silent.
#
# Renumbering (glpanel.Resequence, the reporter's fall-back) rewrites a
# record in its own slot, so it never needs a free one and never evicts:
# the queue keeps every record, once, in its slot.  A power loss must not
# tear the one copy, so the new image goes first to a journal slot after
# the ring (slot `slots`, magic 0x52 'R', bytes 49..50 = the slot it is
# for), written and committed like a record; then the record's slot is
# rewritten and committed; then the journal is marked done.  At boot a
# committed journal is replayed (the slot rewritten again) before the
# scan, so a cut at any byte leaves the record whole, old number or new.

import struct
import binascii
from array import array
from fwutil import const

SLOT = const(64)
_MAGIC = const(0x51)
_ST_WRITTEN = const(0x50)  # 'P'
_ST_COMMITTED = const(0x43)  # 'C'
_ST_DONE = const(0x44)  # 'D'
_JOURNAL = const(0x52)  # 'R': magic of the renumbering journal (slot n)
_FOR_OFF = const(49)  # journal: the slot its image is for (u16)
_CRC_OFF = const(60)
_TEXT_MAX = const(32)
DEFAULT_SLOTS = const(128)


def _crc(buf):
    c = binascii.crc32(memoryview(buf)[0:1])
    return binascii.crc32(memoryview(buf)[2:_CRC_OFF], c) & 0xFFFFFFFF


def _keep(q, code):
    """Evicted last: alarms, and the report that events were dropped."""
    return q == 1 and (100 <= code < 200 or code == 624)


class PersistentQueue:
    def __init__(self, path, slots=DEFAULT_SLOTS, opener=open):
        self.path = path
        self.n = slots
        self.dropped = 0
        self.torn = 0  # slots found written but not committed, at boot
        self._buf = bytearray(SLOT)
        self._seq = array("I", [0] * slots)  # 0 = free slot
        self._alarm = bytearray(slots)  # 1: a record _keep() protects
        self._cursor = 0
        self.depth = 0  # records queued (kept as it changes: len() is hot)
        # head(), read once per change of the queue: the reporters ask
        # for it on every poll (50 a second), and a read makes a dict
        self._head = None
        try:
            self._f = opener(path, "r+b")
        except OSError:
            self._f = opener(path, "w+b")
        self._replay()
        self._scan()

    def _replay(self):
        """A renumbering cut by a power loss after its journal was
        committed: write the record's new image to its slot again."""
        f = self._f
        buf = self._buf
        f.seek(self.n * SLOT)
        if f.readinto(buf) != SLOT or buf[0] != _JOURNAL or buf[1] != _ST_COMMITTED:
            return
        if struct.unpack_from(">I", buf, _CRC_OFF)[0] != _crc(buf):
            return
        i = struct.unpack_from(">H", buf, _FOR_OFF)[0]
        if i < self.n:
            self._rewrite(i)
        self._state(self.n, _ST_DONE)

    def _scan(self):
        f = self._f
        buf = self._buf
        last = -1
        hi = 0
        for i in range(self.n):
            f.seek(i * SLOT)
            got = f.readinto(buf)
            if not got:
                break
            if got < SLOT or buf[0] != _MAGIC:
                continue
            st = buf[1]
            if st == _ST_WRITTEN:
                self.torn += 1
                continue
            if st != _ST_COMMITTED:
                continue
            if struct.unpack_from(">I", buf, _CRC_OFF)[0] != _crc(buf):
                self.torn += 1
                continue
            seq = struct.unpack_from(">I", buf, 2)[0]
            if seq == 0:
                continue
            self._seq[i] = seq
            self._alarm[i] = _keep(buf[6], struct.unpack_from(">H", buf, 7)[0])
            self.depth += 1
            if seq > hi:
                hi = seq
                last = i
        self._cursor = (last + 1) % self.n

    # -- queries ------------------------------------------------------------

    def __len__(self):
        return self.depth

    def max_seq(self):
        m = 0
        for s in self._seq:
            if s > m:
                m = s
        return m

    def _head_slot(self):
        best = -1
        lo = 0
        for i in range(self.n):
            s = self._seq[i]
            if s and (best < 0 or s < lo):
                best = i
                lo = s
        return best

    def head(self):
        """(seq, message dict) of the oldest record, or None.  The same
        objects until the queue changes: a caller must not change them."""
        if self._head is None and self.depth:
            i = self._head_slot()
            self._head = (self._seq[i], self.read(i))
        return self._head

    def seqs(self):
        """Queued sequence numbers, oldest first."""
        out = [s for s in self._seq if s]
        out.sort()
        return out

    def read(self, i):
        f = self._f
        buf = self._buf
        f.seek(i * SLOT)
        f.readinto(buf)
        q, code, part, zone, t, tl = struct.unpack_from(">BHBHIB", buf, 6)
        text = None
        if tl:
            try:
                text = bytes(buf[17:17 + tl]).decode()
            except UnicodeError:  # a cut multi-byte character: keep the event
                text = None
        return {"type": 0x02, "qualifier": q, "code": code, "partition": part,
                "zone": zone, "event_time": t, "text": text, "value": None}

    def find(self, seq):
        for i in range(self.n):
            if self._seq[i] == seq:
                return i
        return -1

    # -- changes ------------------------------------------------------------------

    def _free_slot(self):
        n = self.n
        for k in range(n):
            i = (self._cursor + k) % n
            if not self._seq[i]:
                return i
        # full: drop the oldest non-alarm record, else the oldest record
        victim = -1
        lo = 0
        for i in range(n):
            s = self._seq[i]
            if not self._alarm[i] and (victim < 0 or s < lo):
                victim = i
                lo = s
        if victim < 0:
            victim = self._head_slot()
        self._mark(victim, _ST_DONE)
        self.dropped += 1
        return victim

    def _state(self, i, state):
        self._head = None  # every change of the queue writes a state byte
        f = self._f
        f.seek(i * SLOT + 1)
        f.write(bytes((state,)))
        f.flush()

    def _mark(self, i, state):
        self._state(i, state)
        if state == _ST_DONE:
            if self._seq[i]:
                self.depth -= 1
            self._seq[i] = 0
            self._alarm[i] = 0

    def append(self, seq, q, code, part, zone, event_time, text=None):
        """Write and commit one record.  Returns its slot."""
        if not seq:
            raise ValueError("sequence 0 is reserved")
        i = self._free_slot()
        buf = self._buf
        for k in range(SLOT):
            buf[k] = 0
        buf[0] = _MAGIC
        buf[1] = _ST_WRITTEN
        tb = text.encode() if text else b""
        if len(tb) > _TEXT_MAX:
            tb = b""  # config limits names to 32 bytes; never cut UTF-8
        struct.pack_into(">IBHBHIB", buf, 2, seq, q, code, part, zone, event_time, len(tb))
        buf[17:17 + len(tb)] = tb
        struct.pack_into(">I", buf, _CRC_OFF, _crc(buf))
        f = self._f
        f.seek(i * SLOT)
        f.write(buf)
        f.flush()
        self._mark(i, _ST_COMMITTED)  # the commit point
        self._seq[i] = seq
        self.depth += 1
        self._alarm[i] = _keep(q, code)
        self._cursor = (i + 1) % self.n
        return i

    def ack(self, seq):
        """The receiver has it: free its slot.  False if not queued."""
        i = self.find(seq)
        if i < 0:
            return False
        self._mark(i, _ST_DONE)
        return True

    def renumber(self, seq, new_seq):
        """Give a queued record a new sequence (glpanel.Resequence), in its
        own slot: nothing is evicted, and a power loss at any byte leaves
        it whole, with the old number or the new (the journal above)."""
        if not new_seq:
            raise ValueError("sequence 0 is reserved")
        i = self.find(seq)
        if i < 0:
            return False
        f = self._f
        buf = self._buf
        f.seek(i * SLOT)
        f.readinto(buf)
        buf[0] = _JOURNAL
        buf[1] = _ST_WRITTEN
        struct.pack_into(">I", buf, 2, new_seq)
        struct.pack_into(">H", buf, _FOR_OFF, i)
        struct.pack_into(">I", buf, _CRC_OFF, _crc(buf))
        f.seek(self.n * SLOT)
        f.write(buf)
        f.flush()
        self._state(self.n, _ST_COMMITTED)  # the commit point
        self._rewrite(i)
        self._state(self.n, _ST_DONE)
        self._seq[i] = new_seq
        return True

    def _rewrite(self, i):
        """The journal image in _buf, as a record, written and committed
        to slot i."""
        buf = self._buf
        buf[0] = _MAGIC
        buf[1] = _ST_WRITTEN
        buf[_FOR_OFF] = 0
        buf[_FOR_OFF + 1] = 0
        struct.pack_into(">I", buf, _CRC_OFF, _crc(buf))
        f = self._f
        f.seek(i * SLOT)
        f.write(buf)
        f.flush()
        self._state(i, _ST_COMMITTED)

    def close(self):
        self._f.close()

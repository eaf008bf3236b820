# The persistent event queue: a ring of fixed-size slots in one flash file.
#
# Every event the panel reports is written here first and leaves only when
# the receiver has ACKed it (glpanel.Acked), so a power loss loses nothing
# that was committed.  Each record keeps the sequence number given when it
# was queued: a retransmission after a reboot carries the same sequence and
# the receiver de-duplicates it.
#
# Slot layout (64 bytes, big-endian):
#   0     1   magic: 0x51 ('Q') an event, 0x45 ('E') an event with a position
#   1     1   state: 'P' written, not committed / 'C' committed / 'D' done
#   2     4   sequence
#   6     1   qualifier        (glwire EVENT fields)
#   7     2   event code
#   9     1   partition
#   10    2   zone or user
#   12    4   event time (Unix s, 0 = clock unset)
#   16    1   text length (0..32; 0..20 with a position)
#   'Q':
#   17    32  text (UTF-8)
#   49    11  zero
#   'E' (a vehicle unit's event: where it was when it happened, docs/mobile.md):
#   17    20  position (POS_FMT: glwire's position record without its format byte)
#   37    20  text (UTF-8; a longer text is cut at a character boundary)
#   57    3   zero
#   60    4   CRC-32 over bytes 0 and 2..59 (not the state byte)
# A file of 'Q' slots (every panel before vehicle units) reads as before.
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
# the ring (slot `slots`, magic 0x52 'R', bytes 57..58 = the slot it is
# for, byte 59 = the record's own magic, 'Q' or 'E': bytes both layouts
# leave zero), written and committed like a record; then the record's
# slot is rewritten and committed; then the journal is marked done.  At
# boot a committed journal is replayed (the slot rewritten again) before
# the scan, so a cut at any byte leaves the record whole, old number or new.

import struct
import binascii
from array import array
from fwutil import const

SLOT = const(64)
_MAGIC = const(0x51)  # 'Q': an event
_MAGIC_POS = const(0x45)  # 'E': an event with a position
_ST_WRITTEN = const(0x50)  # 'P'
_ST_COMMITTED = const(0x43)  # 'C'
_ST_DONE = const(0x44)  # 'D'
_JOURNAL = const(0x52)  # 'R': magic of the renumbering journal (slot n)
_FOR_OFF = const(57)  # journal: the slot its image is for (u16)
_WAS_OFF = const(59)  # journal: the record's own magic
_CRC_OFF = const(60)
_TEXT_MAX = const(32)
_POS_OFF = const(17)
_POS_TEXT_OFF = const(37)
_POS_TEXT_MAX = const(20)
DEFAULT_SLOTS = const(128)

# A position in flash (here and in trackq.py): glwire's position record
# (EVENT ext bit 2, POSITION) without its format byte: lat, lon (s32
# micro-degrees), speed (0.1 km/h), course (0.1 degree), fix quality,
# satellites, HDOP (0.1), fix time (Unix s, 0 unknown), flags (POS_*).
POS_FMT = ">iiHHBBBIB"
POS_LEN = const(20)


def pack_pos(buf, off, p):
    """A position tuple (lat, lon, speed, course, quality, sats, hdop,
    fix_time, flags) into buf[off:off + POS_LEN]."""
    struct.pack_into(POS_FMT, buf, off, p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8])


def read_pos(buf, off):
    """The position at buf[off:] as glwire's position dict."""
    lat, lon, sp, co, q, n, hd, ft, fl = struct.unpack_from(POS_FMT, buf, off)
    return {"lat": lat, "lon": lon, "speed": sp, "course": co, "quality": q, "sats": n,
            "hdop": hd, "fix_time": ft, "flags": fl}


def text_bytes(text, room):
    """UTF-8 of `text` in at most `room` bytes, cut at a character
    boundary (never half a character)."""
    tb = text.encode() if text else b""
    if len(tb) > room:
        k = room
        while k and tb[k] & 0xC0 == 0x80:  # a continuation byte: back to its start
            k -= 1
        tb = tb[:k]
    return tb


def slot_crc(buf, end=_CRC_OFF):
    """A slot's CRC-32: over its magic byte and bytes 2..end-1 (the state
    byte changes after the write).  trackq.py's slots use it too."""
    c = binascii.crc32(memoryview(buf)[0:1])
    return binascii.crc32(memoryview(buf)[2:end], c) & 0xFFFFFFFF


def lowest(keys):
    """The index of the smallest non-zero entry of `keys` (0 marks a free
    slot), -1 if there is none: the oldest record of a ring."""
    best = -1
    lo = 0
    for i in range(len(keys)):
        k = keys[i]
        if k and (best < 0 or k < lo):
            best = i
            lo = k
    return best


def index_of(keys, k):
    """The index of entry k in `keys` (a ring's slot keys), -1 if none."""
    for i in range(len(keys)):
        if keys[i] == k:
            return i
    return -1


def _keep(q, code):
    """Evicted last: alarms, and the report that events were dropped."""
    return q == 1 and (100 <= code < 200 or code == 624)


class SlotFile:
    """A ring of fixed-size slots in one file, each with a magic byte, a
    state byte and a CRC, written by the protocol above: the whole slot as
    'P' and flushed, then its state byte 'C' (the commit point); 'D' frees
    it.  The event queue (64-byte slots, below) and a vehicle's track ring
    (trackq.py, 32-byte slots) are two.  Each slot holding a record has
    its key in `_keys` (the queue's sequence, the ring's order; 0: free),
    the oldest the lowest; the subclass reads a slot into its message
    (read(i)) and keeps `depth`."""

    def __init__(self, path, n, size, crc_off, opener):
        self.n = n
        self.torn = 0  # slots found written but not committed, or bad, at boot
        self.depth = 0  # records held (kept as it changes: len() is hot)
        self._keys = array("I", [0] * n)  # 0 = free slot
        # head(), read once per change: the reporters ask for it on every
        # poll (50 a second), and a read makes a dict
        self._head = None
        self._size = size
        self._crc_off = crc_off
        self._buf = bytearray(size)
        try:
            self._f = opener(path, "r+b")
        except OSError:
            self._f = opener(path, "w+b")

    def _committed(self, magic, other=-1):
        """For the scan at boot: the index of each slot of that magic (or
        `other`) committed and intact, with the slot in _buf; torn and
        uncommitted slots are counted and skipped (they are free)."""
        f = self._f
        buf = self._buf
        size = self._size
        for i in range(self.n):
            f.seek(i * size)
            got = f.readinto(buf)
            if not got:
                return
            if got < size or (buf[0] != magic and buf[0] != other):
                continue
            st = buf[1]
            if st == _ST_WRITTEN:
                self.torn += 1
                continue
            if st != _ST_COMMITTED:
                continue
            if struct.unpack_from(">I", buf, self._crc_off)[0] != slot_crc(buf, self._crc_off):
                self.torn += 1
                continue
            yield i

    def _load(self, i):
        """Slot i into _buf."""
        self._f.seek(i * self._size)
        self._f.readinto(self._buf)

    def __len__(self):
        return self.depth

    def head(self):
        """(key, message dict) of the oldest record, or None.  The same
        objects until the ring changes: a caller must not change them."""
        if self._head is None and self.depth:
            i = lowest(self._keys)
            self._head = (self._keys[i], self.read(i))
        return self._head

    def keys(self):
        """The records' keys, oldest first."""
        out = [k for k in self._keys if k]
        out.sort()
        return out

    def find(self, k):
        """The slot of the record with key k, -1 if none."""
        return index_of(self._keys, k)

    def read(self, i):
        """Slot i's record as its message dict (the subclass's layout)."""
        raise NotImplementedError

    def _set_state(self, i, state):
        self._head = None  # every change of the ring writes a state byte
        f = self._f
        f.seek(i * self._size + 1)
        f.write(bytes((state,)))
        f.flush()

    def _write(self, i):
        """The slot in _buf to slot i: written as 'P', then committed."""
        buf = self._buf
        buf[1] = _ST_WRITTEN
        struct.pack_into(">I", buf, self._crc_off, slot_crc(buf, self._crc_off))
        f = self._f
        f.seek(i * self._size)
        f.write(buf)
        f.flush()
        self._set_state(i, _ST_COMMITTED)  # the commit point

    def close(self):
        self._f.close()


class PersistentQueue(SlotFile):
    def __init__(self, path, slots=DEFAULT_SLOTS, opener=open):
        SlotFile.__init__(self, path, slots, SLOT, _CRC_OFF, opener)
        self.path = path
        self.dropped = 0
        self._seq = self._keys  # the records' sequence numbers
        self._alarm = bytearray(slots)  # 1: a record _keep() protects
        self._cursor = 0
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
        if struct.unpack_from(">I", buf, _CRC_OFF)[0] != slot_crc(buf):
            return
        i = struct.unpack_from(">H", buf, _FOR_OFF)[0]
        if i < self.n and (buf[_WAS_OFF] == _MAGIC or buf[_WAS_OFF] == _MAGIC_POS):
            self._rewrite(i)
        self._set_state(self.n, _ST_DONE)

    def _scan(self):
        buf = self._buf
        last = -1
        hi = 0
        for i in self._committed(_MAGIC, _MAGIC_POS):
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

    seqs = SlotFile.keys  # queued sequence numbers, oldest first

    def max_seq(self):
        m = 0
        for s in self._seq:
            if s > m:
                m = s
        return m

    def _head_slot(self):
        return lowest(self._seq)

    def read(self, i):
        buf = self._buf
        self._load(i)
        q, code, part, zone, t, tl = struct.unpack_from(">BHBHIB", buf, 6)
        pos = None
        off = 17
        if buf[0] == _MAGIC_POS:
            pos = read_pos(buf, _POS_OFF)
            off = _POS_TEXT_OFF
        text = None
        if tl:
            try:
                text = bytes(buf[off:off + tl]).decode()
            except UnicodeError:  # a cut multi-byte character: keep the event
                text = None
        return {"type": 0x02, "qualifier": q, "code": code, "partition": part,
                "zone": zone, "event_time": t, "text": text, "value": None, "position": pos}

    # -- changes ------------------------------------------------------------------

    def _free_slot(self):
        """A free slot; when the ring is full, the oldest record that is
        not kept is dropped for it (else the oldest of all)."""
        n = self.n
        for k in range(n):
            i = (self._cursor + k) % n
            if not self._seq[i]:
                return i
        victim = -1
        lo = 0
        for kept in (0, 1):  # first the records _keep() does not protect
            for i in range(n):
                s = self._seq[i]
                if self._alarm[i] <= kept and (victim < 0 or s < lo):
                    victim = i
                    lo = s
            if victim >= 0:
                break
        self._mark(victim, _ST_DONE)
        self.dropped += 1
        return victim

    def _mark(self, i, state):
        self._set_state(i, state)
        if state == _ST_DONE:
            if self._seq[i]:
                self.depth -= 1
            self._seq[i] = 0
            self._alarm[i] = 0

    def append(self, seq, q, code, part, zone, event_time, text=None, pos=None):
        """Write and commit one record; `pos`: the position tuple of a
        vehicle unit (pack_pos), or None.  Returns its slot."""
        if not seq:
            raise ValueError("sequence 0 is reserved")
        i = self._free_slot()
        buf = self._buf
        for k in range(SLOT):
            buf[k] = 0
        buf[0] = _MAGIC
        off = 17
        if pos is not None:
            buf[0] = _MAGIC_POS
            pack_pos(buf, _POS_OFF, pos)
            off = _POS_TEXT_OFF
            tb = text_bytes(text, _POS_TEXT_MAX)
        else:
            tb = text.encode() if text else b""
            if len(tb) > _TEXT_MAX:
                tb = b""  # config limits names to 32 bytes; never cut UTF-8
        struct.pack_into(">IBHBHIB", buf, 2, seq, q, code, part, zone, event_time, len(tb))
        buf[off:off + len(tb)] = tb
        self._put(i, seq, _keep(q, code))
        return i

    def _put(self, i, seq, keep):
        """Write the slot in _buf (sequence `seq`) to slot i, then commit it."""
        self._write(i)
        self._seq[i] = seq
        self.depth += 1
        self._alarm[i] = keep
        self._cursor = (i + 1) % self.n

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
        buf = self._buf
        self._load(i)
        buf[_WAS_OFF] = buf[0]
        buf[0] = _JOURNAL
        struct.pack_into(">I", buf, 2, new_seq)
        struct.pack_into(">H", buf, _FOR_OFF, i)
        self._write(self.n)  # the journal committed: the commit point
        self._rewrite(i)
        self._set_state(self.n, _ST_DONE)
        self._seq[i] = new_seq
        return True

    def _rewrite(self, i):
        """The journal image in _buf, as the record it holds, written and
        committed to slot i."""
        buf = self._buf
        buf[0] = buf[_WAS_OFF]
        buf[_FOR_OFF] = 0
        buf[_FOR_OFF + 1] = 0
        buf[_WAS_OFF] = 0
        self._write(i)

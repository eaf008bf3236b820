# The track ring: a vehicle unit's track points (POSITION messages) waiting
# for the link, in a small ring of CRC'd slots in their own flash file.
#
# Why a ring of their own: track points never take a slot of the event
# queue (pqueue.py), so no alarm is ever dropped, nor its slot taken, for
# a track point, however long the unit drives without a link.  The
# reporter offers a track point only while no event is queued (events,
# alarms first among them, go ahead of track points: reporter.py), and
# the points go out oldest first.
#
# When the ring is full a new point coalesces the track: the interior
# point whose neighbours are closest together in arrival order is dropped
# (ties: the oldest), so a van cut off for hours keeps an evenly thinned
# track of the whole time, its first and its latest point included,
# rather than only its last hour.  `coalesced` counts the points dropped.
#
# Slot layout (32 bytes, big-endian):
#   0   1   magic 0x54 ('T')
#   1   1   state: 'P' written, not committed / 'C' committed / 'D' done
#   2   4   order: arrival number from 1 (the oldest point has the lowest)
#   6   1   reason: why the point was due (vehicle.P_*, the POSITION reason)
#   7   20  position (pqueue.POS_FMT)
#   27  1   zero
#   28  4   CRC-32 over bytes 0 and 2..27 (not the state byte)
# The write protocol is pqueue.py's (SlotFile): the slot is written as 'P'
# and flushed, then its state byte set to 'C' (the commit point); done is 'D'.
# A torn write, an uncommitted slot or a bad CRC is a free slot at boot.
# A power loss while a full ring coalesces can lose the point dropped and
# the new one (never anything else): track points only.
#
# Invariants (tests/test_fw_trackq.py, with the reporter and the event
# queue in a hypothesis state machine): the ring never holds more than
# `slots` points; head() is the point with the lowest order; a point
# leaves only by ack() or by coalescing, and coalescing never drops the
# oldest or the newest point.

import struct
from fwutil import const
from pqueue import SlotFile, lowest, pack_pos, read_pos

SLOT = const(32)
_MAGIC = const(0x54)  # 'T'
_ST_DONE = const(0x44)  # 'D' (pqueue.py's states)
_POS_OFF = const(7)
_CRC_OFF = const(28)
MSG_POSITION = const(0x04)  # glwire.MSG_POSITION (a DC-09 unit never loads glwire)


class TrackRing(SlotFile):
    """`slots`: the config's vehicle.report.track_points (vehicle_config.py)."""

    def __init__(self, path, slots, opener=open):
        SlotFile.__init__(self, path, slots, SLOT, _CRC_OFF, opener)
        self.coalesced = 0  # points dropped to make room
        self._order = self._keys  # the points' orders (arrival)
        self._next = 1  # the next point's order
        for i in self._committed(_MAGIC):
            o = struct.unpack_from(">I", self._buf, 2)[0]
            if o:
                self._order[i] = o
                self.depth += 1
                if o >= self._next:
                    self._next = o + 1

    # -- queries -----------------------------------------------------------------

    orders = SlotFile.keys  # queued points' orders, oldest first; head(): the oldest

    def read(self, i):
        self._load(i)
        buf = self._buf
        return {"type": MSG_POSITION, "reason": buf[6], "position": read_pos(buf, _POS_OFF)}

    # -- changes ---------------------------------------------------------------------

    def _victim(self):
        """The point to drop from a full ring: of the interior points, the
        one whose neighbours are closest together in arrival order."""
        ords = self.orders()
        best = 1
        gap = 0
        for k in range(1, len(ords) - 1):
            g = ords[k + 1] - ords[k - 1]
            if k == 1 or g < gap:
                best = k
                gap = g
        return self.find(ords[best])

    def _free_slot(self):
        for i in range(self.n):
            if not self._order[i]:
                return i
        i = self._victim() if self.n > 2 else lowest(self._order)
        self._drop(i)
        self.coalesced += 1
        return i

    def _drop(self, i):
        self._set_state(i, _ST_DONE)
        if self._order[i]:
            self.depth -= 1
        self._order[i] = 0

    def append(self, reason, pos):
        """Write and commit a track point: `reason` (vehicle.P_*), `pos`
        the position tuple (pqueue.pack_pos).  Returns its order."""
        i = self._free_slot()
        o = self._next
        buf = self._buf
        for k in range(SLOT):
            buf[k] = 0
        buf[0] = _MAGIC
        struct.pack_into(">IB", buf, 2, o, reason)
        pack_pos(buf, _POS_OFF, pos)
        self._write(i)
        self._order[i] = o
        self.depth += 1
        self._next = o + 1
        return o

    def ack(self, order):
        """The receiver has it (or refused it for good): free its slot.
        False if not queued."""
        i = self.find(order)
        if i < 0:
            return False
        self._drop(i)
        return True

# The panel's sequence counter and other small persistent state.
#
# Sequences must never be reused (glwire: per sender, strictly increasing),
# across reboots too, but a flash write per event would wear the flash and
# slow every report.  So the counter is persisted in reserved blocks: the
# file holds a bound B, every sequence handed out is below B, and only when
# the counter reaches B is B += RESERVE written.  At boot the counter
# starts at the stored bound (at most RESERVE - 1 numbers are skipped per
# reboot) and a new bound is written at once.  The receiver only needs
# sequences to increase, not to be dense.
#
# The same file carries the receiver's last COMMAND sequence (glpanel
# replay rule), the partitions' arming modes (a panel that loses power
# comes back armed), their alarm memory (which zones alarmed since the last
# arming: the user who comes back after a power cut still sees them) and a
# few panel flags (panel.py, F_*: conditions reported as "new" whose
# restore is still owed), each written only when it changes.
#
# A receiver's resequence (NAK replay, next_seq) moves the counter up;
# where it was before the first such jump is kept (`undo`) until the jump
# is undone: a jump no receiver follows (a key holder's, past the genuine
# receiver's MAX_SEQ_JUMP) leaves every path silent, and the reporter then
# calls fall_back() to count on from where the panel was (reporter.py).
#
# A resequence renumbers every queued record below next_seq, oldest first,
# one flash write each (pqueue.renumber): a power cut in the middle would
# leave the oldest records with new, high numbers and the rest with their
# old, low ones, out of the order they happened (a restore numbered before
# its alarm, a cancel before what it cancels: the receiver reads sequence
# order).  So next_seq is kept in the file (`renumbering`) while the
# renumbering runs, and the reporter finishes it at boot, in order, before
# it sends anything (reporter.py, docs/firmware.md).
#
# File (format 4): b"G4" + bound u32 + last_command_seq u32 + flags u8 +
# n u8 + n mode bytes + m u8 + m alarm-memory entries (partition index u8,
# zone id u16) + undo u32 + renumbering u32 + CRC-32 of everything before
# it, big-endian.  Format 3 (b"G3", the same without renumbering), format 2
# (b"G2", without undo either) and format 1 (b"GS" + bound +
# last_command_seq + n + modes + CRC, before alarm memory and flags) are
# still read.  Written to a temporary name and renamed over
# the old file (rename is atomic on littlefs and POSIX), so a power loss
# leaves the old or the new file, never a torn one.

import struct
import binascii
import os
from fwutil import const

RESERVE = const(256)
# The highest sequence the panel takes from anybody: a receiver's
# resequence (NAK replay, next_seq) above it is refused, and so is a bound
# above it found in the file (written by firmware before this rule).  Half
# the u32 space leaves 2**31 numbers: at one a second, 68 years; sequences
# past the end of a u32 cannot be sent at all (glwire, pqueue: u32).
SEQ_LIMIT = 0x80000000  # plain ints: beyond a small int on 32-bit ports
# A bound above this in the file cannot come from counting (2**31 more
# numbers after the highest jump honoured), only from a jump older
# firmware honoured; continuing from it would run past the u32 and crash
# at every boot, so it is ignored (the counter restarts from the queue;
# the receiver then asks for a jump, which is refused and reported).
SEQ_END = 0xF0000000


def _crc_ok(d, end):
    return struct.unpack_from(">I", d, end)[0] == binascii.crc32(d[:end]) & 0xFFFFFFFF


class SeqStore:
    def __init__(self, path, floor=1):
        """`floor`: the lowest sequence we may hand out (queue max + 1)."""
        self.path = path
        self.writes = 0
        self.last_command_seq = 0
        self.modes = b""
        self.memory = b""  # 3 bytes per entry: partition index, zone id (u16)
        self.flags = 0
        self.undo = 0  # the counter before a resequence not undone (0: none)
        self.renumbering = 0  # next_seq of a renumbering not finished (0: none)
        bound = self._load()
        self.insane = 0  # a bound above SEQ_END found in the file (ignored)
        if bound > SEQ_END:
            self.insane = bound
            bound = 1
        self.next = max(bound, min(floor, SEQ_END), 1)
        if self.undo >= self.next:
            self.undo = 0  # not below the counter: nothing to undo
        self.bound = 0
        self._persist(self.next + RESERVE)

    def _load(self):
        """The stored bound (1 if there is no good file); sets the rest."""
        try:
            with open(self.path, "rb") as f:
                d = f.read()
        except OSError:
            return 1
        if len(d) >= 15 and d[:2] == b"GS":  # format 1
            n = d[10]
            if len(d) != 15 + n or not _crc_ok(d, 11 + n):
                return 1
            self.modes = bytes(d[11:11 + n])
        elif len(d) >= 17 and d[:2] in (b"G2", b"G3", b"G4"):
            n = d[11]
            if len(d) < 17 + n:
                return 1
            m = d[12 + n]
            end = 13 + n + 3 * m
            u = 8 if d[:2] == b"G4" else 4 if d[:2] == b"G3" else 0  # undo, renumbering
            if len(d) != end + u + 4 or not _crc_ok(d, end + u):
                return 1
            self.flags = d[10]
            self.modes = bytes(d[12:12 + n])
            self.memory = bytes(d[13 + n:end])
            if u:
                self.undo = struct.unpack_from(">I", d, end)[0]
            if u == 8:
                self.renumbering = struct.unpack_from(">I", d, end + 4)[0]
        else:
            return 1
        b, self.last_command_seq = struct.unpack_from(">II", d, 2)
        return b

    def _persist(self, bound):
        m = self.modes
        d = b"G4" + struct.pack(">IIBB", bound, self.last_command_seq, self.flags, len(m)) + \
            bytes(m) + bytes((len(self.memory) // 3,)) + self.memory + \
            struct.pack(">II", self.undo, self.renumbering)
        d += struct.pack(">I", binascii.crc32(d) & 0xFFFFFFFF)
        tmp = self.path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(d)
        os.rename(tmp, self.path)
        self.bound = bound
        self.writes += 1

    def take(self):
        """The next sequence number."""
        s = self.next
        if s + 1 >= self.bound:
            self._persist(s + 1 + RESERVE)
        self.next = s + 1
        return s

    def raise_to(self, n):
        """The receiver has seen up to n - 1 (glpanel.Resequence), and the
        caller renumbers the records below n now: until renumbered(), the
        file says so (a power cut in between: the reporter finishes it at
        boot).  False, and nothing changed, if n is beyond SEQ_LIMIT: a
        jump the panel cannot honour (the caller refuses it and reports)."""
        if n > SEQ_LIMIT:
            return False
        self.renumbering = n
        if n > self.next:
            if not self.undo:
                self.undo = self.next
            self.next = n
            self._persist(max(n + RESERVE, self.bound))
        else:
            self._persist(self.bound)
        return True

    def renumbered(self):
        """The records below the last raise_to() all have their new numbers."""
        if self.renumbering:
            self.renumbering = 0
            self._persist(self.bound)

    def fall_back(self, n):
        """Undo the resequences since the last fall-back: the counter
        goes back to where it was before the first of them, and counts on
        from there (numbers from there up to the jump were never handed
        out).  False, and nothing changed, if there was none.  `n`: the
        numbers the caller takes now (the queue, renumbered).  Until
        forget_undo() the file keeps an undo point past those n: a power
        loss in between boots at the queue's floor, above the jump, and
        the next fall-back finishes the job without reusing them."""
        if not self.undo:
            return False
        self.next = self.undo
        self.undo += n
        self._persist(self.undo + RESERVE)
        return True

    def forget_undo(self):
        self.undo = 0
        self._persist(self.bound)

    def set_last_command(self, seq):
        self.last_command_seq = seq
        self._persist(self.bound)

    def set_modes(self, modes):
        self.set_state(modes, self.memory, self.flags)

    def set_state(self, modes, memory, flags):
        """Arming modes, alarm memory (panel.memory_bytes()) and panel
        flags; one write, and only if something changed."""
        if bytes(modes) != self.modes or bytes(memory) != self.memory or flags != self.flags:
            if len(memory) > 765:  # 255 entries: the count is a byte
                raise ValueError("alarm memory too long")
            self.modes = bytes(modes)
            self.memory = bytes(memory)
            self.flags = flags
            self._persist(self.bound)

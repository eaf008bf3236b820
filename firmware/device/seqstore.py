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
# replay rule) and the partitions' arming modes (a panel that loses power
# comes back armed), each written only when it changes.
#
# File: b"GS" + bound u32 + last_command_seq u32 + n u8 + n mode bytes +
# CRC-32, written to a temporary name and renamed over the old file (rename
# is atomic on littlefs and POSIX), so a power loss leaves the old or the
# new file, never a torn one.

import struct
import binascii
import os
from fwutil import const

RESERVE = const(256)


class SeqStore:
    def __init__(self, path, floor=1):
        """`floor`: the lowest sequence we may hand out (queue max + 1)."""
        self.path = path
        self.writes = 0
        bound, self.last_command_seq, self.modes = self._load()
        self.next = max(bound, floor, 1)
        self.bound = 0
        self._persist(self.next + RESERVE)

    def _load(self):
        try:
            with open(self.path, "rb") as f:
                d = f.read()
        except OSError:
            return 1, 0, b""
        if len(d) < 15 or d[:2] != b"GS":
            return 1, 0, b""
        n = d[10]
        if len(d) != 15 + n or \
                struct.unpack_from(">I", d, 11 + n)[0] != binascii.crc32(d[:11 + n]) & 0xFFFFFFFF:
            return 1, 0, b""
        b, c = struct.unpack_from(">II", d, 2)
        return b, c, bytes(d[11:11 + n])

    def _persist(self, bound):
        m = self.modes
        d = b"GS" + struct.pack(">IIB", bound, self.last_command_seq, len(m)) + bytes(m)
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
        """The receiver has seen up to n - 1 (glpanel.Resequence)."""
        if n > self.next:
            self.next = n
            if n >= self.bound:
                self._persist(n + RESERVE)

    def set_last_command(self, seq):
        self.last_command_seq = seq
        self._persist(self.bound)

    def set_modes(self, modes):
        if bytes(modes) != self.modes:
            self.modes = bytes(modes)
            self._persist(self.bound)

# The anti-theft door controller ("kind": "door", docs/firmware.md): the
# lock output, forced entry (423), door held open (426) and bolt not
# thrown (432).  panel.py imports it only for a panel that has a door
# zone, so a bank panel never loads it.
#
# Sans-I/O like the panel: it works on the panel's zone tables, reports
# through panel.emit and takes `now_ms`.  The panel calls opened/closed
# for the door zone's contact, tick every scan and unlock for a code
# that grants access.
#
# Invariants:
# - The lock is released only by a grant (unlock) and re-engages when the
#   door shuts again, or when the grant runs out with the door unopened.
# - The door opening without a grant is forced entry, whatever the
#   arming state; armed, it is also the partition's alarm.

from fwutil import const, ticks_diff, ticks_add, due
import arming as A
import cid
import eol

_Q_NEW = const(1)  # glwire qualifiers (panel.py keeps the proven copies)
_Q_RESTORE = const(3)


class Door:
    def __init__(self, panel, door, bolt, tim, now_ms):
        self.p = panel
        self.door = door  # zone index of the door contact
        self.bolt = bolt  # zone index of the bolt sensor, -1: none
        self.held_ms = tim["door_held_open_s"] * 1000
        self.unlock_ms = tim["unlock_s"] * 1000
        self.bolt_ms = tim["bolt_timeout_s"] * 1000
        self.grant_due = None  # unlocked until (ticks), None = locked
        self.open_since = None
        self.held = False
        self.relock_at = now_ms
        self.lock_fail = False

    def opened(self, now_ms):
        """The door contact opened.  True if that was forced entry (the
        alarm is raised here); False for a granted opening, which then
        goes into the arming table like any entry/exit zone."""
        p = self.p
        i = self.door
        self.open_since = now_ms
        self.held = False
        if self.grant_due is None:
            p.log("door forced")
            part = p.parts[p.zpart[i]]
            if A.is_armed(part.state):
                p._trip(i, A.TRIP_INSTANT, now_ms, cid.FORCED, True)
            else:
                p._alarm(part, i, cid.FORCED, True, now_ms)
            return True
        self.grant_due = now_ms  # stays unlocked until the door closes
        return False

    def closed(self, now_ms):
        if self.held:
            self._report(_Q_RESTORE, cid.PROPPED, self.door)
        self.held = False
        self.open_since = None
        if self.grant_due is not None:
            self.grant_due = None  # door shut: relock
            self.relock_at = now_ms

    def unlock(self, now_ms):
        self.grant_due = ticks_add(now_ms, self.unlock_ms)

    # tick() and _bolt() run every scan: small frames, what they report
    # goes through _report() (fwutil.py: nothing allocates in a scan)
    def tick(self, now_ms):
        if self.grant_due is not None and self.open_since is None and due(now_ms, self.grant_due):
            self.grant_due = None  # nobody opened the door: relock
            self.relock_at = now_ms
        if self.open_since is not None and not self.held and \
                ticks_diff(now_ms, self.open_since) >= self.held_ms:
            self.held = True
            self._report(_Q_NEW, cid.PROPPED, self.door)
        if self.bolt >= 0:
            self._bolt(now_ms)

    def _bolt(self, now_ms):
        b = self.bolt
        bad = self.grant_due is None and self.open_since is None and \
            self.p.zstate[b] != eol.NORMAL and ticks_diff(now_ms, self.relock_at) >= self.bolt_ms
        if bad != self.lock_fail:
            self.lock_fail = bad
            self._report(_Q_NEW if bad else _Q_RESTORE, cid.LOCK_FAIL, b)

    def _report(self, q, code, i):
        """Report `code` for zone index i (its partition and zone id)."""
        p = self.p
        p.emit(q, code, p.parts[p.zpart[i]].id, p.zid[i])

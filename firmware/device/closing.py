# Scheduled closing (partitions[].closing, docs/firmware.md "CP-01"):
# at the closing time on its days, a disarmed partition's keypad warns for
# closing_warn_s; then the panel arms it away by itself ("auto_arm": true:
# 403 closing at the end of the exit delay, 455 if a zone prevents it) or,
# prompt only ("auto_arm": false), leaves the keypad saying so: reporting a
# partition that did not close is the receiver's schedule's job (454 at its
# deadline, receiver/rules/schedules.py), so the panel does not send a
# second report of its own.  A valid code entered to disarm the partition
# during the warning postpones it for the day (464, zone = the user).
# panel.py imports it only for a panel with a schedule.
#
# Time source: the panel's wall clock (panel.wall(): local day, weekday,
# minute), which is unknown (day 0) unless the clock is known and trusted
# (app.py).  Unknown, nothing is scheduled:
# arming on a wrong clock could arm people in (fail safe); the receiver's
# own schedule reports a partition that did not close, and the panel
# reports its clock (626).
#
# Invariants:
# - At most one closing per partition and local day, and only on a
#   scheduled day at or after its time.
# - The panel never arms a partition the warning did not announce for
#   closing_warn_s, nor one a user is disarming.

from fwutil import const, ticks_add, due
import arming as A
import cid

_Q_NEW = const(1)  # glwire qualifier (panel.py keeps the proven copies)


class Closing:
    def __init__(self, panel, parts, tim):
        self.p = panel
        self.warn_ms = tim["closing_warn_s"] * 1000
        # per scheduled partition: [partition, schedule, warning deadline
        # (ticks) or None, the local day whose closing was handled]
        self.sched = []
        for k in range(len(parts)):
            if parts[k].get("closing") is not None:
                self.sched.append([panel.parts[k], parts[k]["closing"], None, -1])

    def warning(self, p):
        """Is partition p's keypad warning running?"""
        for s in self.sched:
            if s[0] is p:
                return s[2] is not None
        return False

    # tick() and _check() run every scan: small frames, the work of a
    # closing goes into helpers called then (fwutil.py)
    def tick(self, now_ms):
        """The schedules at `now_ms`, on the panel's wall clock
        (panel.wall(): day 0 when the clock is unknown or not trusted)."""
        for k in range(len(self.sched)):
            self._check(self.sched[k], now_ms)

    def _check(self, s, now_ms):
        if s[2] is not None:
            self._warning(s, now_ms)
            return
        P = self.p
        if not P.wday:
            return  # no trusted clock: nothing is scheduled (fail safe)
        if P.wday == s[3] or P.wdow not in s[1]["days"] or P.wmin < s[1]["at"]:
            return
        s[3] = P.wday
        if s[0].state == A.DISARMED:  # else already closed
            self._warn(s, now_ms)

    def _warning(self, s, now_ms):
        if s[0].state != A.DISARMED:
            s[2] = None  # armed (by a user) during the warning
        elif due(now_ms, s[2]):
            s[2] = None
            self._close(s[0], s[1], now_ms)

    def _close(self, p, c, now_ms):
        """The warning ran out: arm partition p, or ask for it."""
        if c["auto_arm"]:
            if not self.p.auto_arm(p, now_ms):
                p.note = "closing: not ready, not armed (455 sent)"
        else:
            p.note = "closing: late, please arm"
            self.p.log("partition %d: late to close" % p.id)

    def _warn(self, s, now_ms):
        """Closing time: the keypad warning starts."""
        p = s[0]
        s[2] = ticks_add(now_ms, self.warn_ms)
        n = self.warn_ms // 1000
        if s[1]["auto_arm"]:
            p.note = "closing: arming in %d s (a code postpones)" % n
        else:
            p.note = "closing: please arm (%d s)" % n
        self.p.log("partition %d: closing time, keypad warning for %d s" % (p.id, n))

    def disarmed(self, p, user):
        """A valid code disarmed partition p: during the warning, that
        postpones the closing for the day."""
        for s in self.sched:
            if s[0] is p and s[2] is not None:
                s[2] = None
                self.p.emit(_Q_NEW, cid.AUTO_ARM_EXTENDED, p.id, user.id)
                p.note = "closing: postponed by user %d" % user.id
                self.p.log("partition %d: closing postponed by user %d" % (p.id, user.id))

# Scheduled closing (partitions[].closing, docs/firmware.md "CP-01"):
# at the closing time on its days, a disarmed partition's keypad warns for
# closing_warn_s; then the panel arms it away by itself ("auto_arm": true:
# 403 closing at the end of the exit delay, 455 if a zone prevents it) or,
# prompt only, reports 452 "late to close".  A valid code entered to
# disarm the partition during the warning postpones it for the day (464,
# zone = the user).  panel.py imports it only for a panel with a schedule.
#
# Time source: the `unix` the panel's tick gets, which is 0 unless the
# clock is known and trusted (app.py).  Unknown, nothing is scheduled:
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
    def __init__(self, panel, tim):
        self.p = panel
        self.warn_ms = tim["closing_warn_s"] * 1000

    def tick(self, now_ms, unix):
        P = self.p
        for p in P.parts:
            c = p.closing
            if c is None:
                continue
            if p.warn_due is not None:
                if p.state != A.DISARMED:
                    p.warn_due = None  # armed (by a user) during the warning
                elif due(now_ms, p.warn_due):
                    p.warn_due = None
                    if c["auto_arm"]:
                        if not P.auto_arm(p, now_ms):
                            p.note = "closing: not ready, not armed (455 sent)"
                    else:
                        P.emit(_Q_NEW, cid.LATE_TO_CLOSE, p.id, 0)
                        p.note = "closing: late to close (reported)"
                        P.log("partition %d: late to close" % p.id)
                continue
            if not unix:
                continue  # no trusted clock: nothing is scheduled (fail safe)
            day, wd, mins = P.local(unix)
            if day == p.closing_day or wd not in c["days"] or mins < c["at"]:
                continue
            p.closing_day = day
            if p.state != A.DISARMED:
                continue  # already closed
            p.warn_due = ticks_add(now_ms, self.warn_ms)
            s = self.warn_ms // 1000
            if c["auto_arm"]:
                p.note = "closing: arming in %d s (a code postpones)" % s
            else:
                p.note = "closing: arm now (late to close in %d s)" % s
            P.log("partition %d: closing time, keypad warning for %d s" % (p.id, s))

    def disarmed(self, p, user):
        """A valid code disarmed partition p: during the warning, that
        postpones the closing for the day."""
        if p.warn_due is None:
            return
        p.warn_due = None
        self.p.emit(_Q_NEW, cid.AUTO_ARM_EXTENDED, p.id, user.id)
        p.note = "closing: postponed by user %d" % user.id
        self.p.log("partition %d: closing postponed by user %d" % (p.id, user.id))

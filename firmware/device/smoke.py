# Fire alarm verification for smoke detectors (zones with "verify": true,
# docs/firmware.md "CP-01"): NFPA 72 "alarm verification", the
# retard-reset-restart cycle.  panel.py imports it only for a panel that
# has such a zone, like door.py.
#
# A verified zone's first trip is not an alarm: the panel cuts the
# resettable detector supply for fire_reset_s (a latched smoke detector
# forgets its alarm), waits _SETTLE_MS for the detectors to power up, and
# then, for fire_verify_s, any verified zone that reads alarm is the fire
# alarm.  One supply feeds them all, so one cycle runs at a time for the
# panel.  While the supply is off or settling, verified zones are masked:
# what they read is kept (a cut supply reads as an open loop, not a
# trouble) and given to the panel again when the mask ends; a detector
# still in alarm after its reset is the alarm.
#
# Invariants:
# - Only zones marked "verify" (fire type, config.py) are ever held here;
#   a fire zone without it, and every other 24-hour zone, alarm at once.
# - A verified zone that trips again (or stays in alarm) before the
#   verification window ends always raises the fire alarm.
# - The supply is off only during the reset (`supply()`).

from fwutil import const, ticks_add, due
import eol

_IDLE = const(0)
_RESET = const(1)  # supply off
_SETTLE = const(2)  # supply on, detectors powering up: still masked
_VERIFY = const(3)  # an alarm now is the fire alarm
# A smoke detector needs a second or two after power-up before its output
# means anything (manufacturers give 1-2 s; NFPA 72 counts it in the
# 60 s retard-reset-restart budget, with fire_reset_s).
_SETTLE_MS = const(3000)


class Verifier:
    def __init__(self, panel, zones, tim):
        self.p = panel
        self.zones = zones  # zone indexes with "verify"
        self.reset_ms = tim["fire_reset_s"] * 1000
        self.verify_ms = tim["fire_verify_s"] * 1000
        self.state = _IDLE
        self.due = None
        self.seen = bytearray(len(zones))  # eol.* read while masked, per verified zone

    def supply(self):
        """The resettable detector supply: off while resetting."""
        return self.state != _RESET

    def masked(self, i, st):
        """Zone i (verified) read `st`: kept, not acted on, while the
        detectors are reset or powering up."""
        if self.state != _RESET and self.state != _SETTLE:
            return False
        self.seen[self.zones.index(i)] = st
        return True

    def verified(self, i, now_ms):
        """Zone i (verified) reads alarm: is that the fire alarm?  The
        first trip starts the reset and is not."""
        p = self.p
        if self.state == _VERIFY:
            self.state = _IDLE
            self.due = None
            p.log("fire zone %d (%s): verified, FIRE ALARM" % (p.zid[i], p.zname[i]))
            return True
        for k in range(len(self.zones)):
            self.seen[k] = p.zstate[self.zones[k]]
        p.zstate[i] = eol.NORMAL  # being reset; what it reads after is kept in seen
        self.state = _RESET
        self.due = ticks_add(now_ms, self.reset_ms)
        p.log("fire zone %d (%s): first trip, resetting the smoke detectors (verification)"
              % (p.zid[i], p.zname[i]))
        return False

    def tick(self, now_ms):
        if self.due is None or not due(now_ms, self.due):
            return
        p = self.p
        if self.state == _RESET:
            self.state = _SETTLE
            self.due = ticks_add(now_ms, _SETTLE_MS)
        elif self.state == _SETTLE:
            self.state = _VERIFY
            self.due = ticks_add(now_ms, self.verify_ms)
            # the mask ends: what the detectors read now counts
            for k in range(len(self.zones)):
                p.zone_change(self.zones[k], self.seen[k], now_ms)
        else:
            self.state = _IDLE
            self.due = None
            p.log("fire verification: no second trip, no alarm")

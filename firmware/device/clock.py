# The panel's wall clock: Unix seconds, set only from the receiver (an
# authenticated ACK, NAK(time) or TIME: glpanel.TimeSet; on the sim or in
# console test mode also by the control protocol's "clock"), kept between
# settings with the tick counter.  0 means "not set": frames then carry
# FLAG_CLOCK_UNSET and the panel shows T_CLOCK_UNSET.
#
# ticks_diff is only valid over half the tick period (~6 days at 2**30
# ms), so now() moves the anchor forward on every call; the panel calls it
# many times a second.

from fwutil import ticks_diff, ticks_add


class Clock:
    def __init__(self):
        self.base = 0  # Unix seconds at anchor_ms; 0 = unset
        self.anchor_ms = 0
        self.utc_offset_min = 0

    def set(self, unix, now_ms, utc_offset_min=None):
        self.base = unix
        self.anchor_ms = now_ms
        if utc_offset_min is not None:
            self.utc_offset_min = utc_offset_min

    def skew(self, seconds, now_ms):
        """Move the clock by `seconds` (tests: the panel's own drift,
        control.py "clock"); never to 0, which means unset."""
        self.base = max(1, self.now(now_ms) + seconds)

    def now(self, now_ms):
        if not self.base:
            return 0
        d = ticks_diff(now_ms, self.anchor_ms)
        if d >= 1000:
            s = d // 1000
            self.base += s
            # ticks are plain ints here; the stubs type ticks_add() for opaque _Ticks only
            self.anchor_ms = ticks_add(self.anchor_ms, s * 1000)  # pyright: ignore[reportArgumentType]
        return self.base

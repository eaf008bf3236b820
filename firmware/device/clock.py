# The panel's wall clock: Unix seconds, kept between settings with the
# tick counter.  0 means "not set": native frames then carry
# FLAG_CLOCK_UNSET and the panel shows T_CLOCK_UNSET.
#
# Who may set it (docs/protocol.md and docs/dc09.md, "Clock trust"):
# - an authenticated source: the native protocol's ACK timestamp,
#   NAK(time) and TIME (sealed with the account key, bound to our frame:
#   glpanel.TimeSet), a DC-09 *ACK that decrypts with our key and answers
#   the message we sent, and on the sim or in console test mode the
#   control protocol's "clock".  `set(..., trusted=True)`.
# - an unauthenticated one, a clear DC-09 NAK or ACK: `correct()`.  It may
#   set an unset clock, or move a set one by at most STEP_S; either way the
#   clock is then not trusted until an authenticated source sets it.
# Nobody may set it outside [MIN_UNIX, MAX_UNIX): a time there is refused
# (set() and correct() return False), so the clock never runs into a
# value a wire field cannot carry (u32 seconds; DC-09's four-digit year).
#
# Only a trusted clock opens a time lock (`trusted_now()`, 0 otherwise:
# panel.in_window() then counts the window as closed).
#
# ticks_diff is only valid over half the tick period (~6 days at 2**30
# ms), so every reading moves the anchor forward; the panel reads the
# clock many times a second.
#
# Two forms of the same time, kept in step:
# - `base`, Unix seconds: what goes on the wire and into the queue
#   (now()).  On a 32-bit port a small int is 31-bit, so from 2004 on
#   this is a long integer: every change of it allocates.
# - `day` (UTC days since 1970-01-01) and `sec` (seconds into that day),
#   small ints on every port until the year 2.9 million: what the scan
#   reads every 50 ms (advance(); the panel's schedules: time lock,
#   closing).  advance() moves these only, and owes `base` the seconds it
#   moved (`lag`), which now() settles: so the scan never allocates for
#   the clock (tests/test_fw_alloc_vm.py), whatever the year.

from fwutil import const, ticks_diff, ticks_add

# Sane bounds.  No panel runs this firmware before 2024; 2100 keeps every
# value inside a u32 (2106) and DC-09's four-digit year with decades to
# spare.  Plain ints: they are beyond a small int on 32-bit ports.
MIN_UNIX = 1704067200  # 2024-01-01 00:00:00 UTC
MAX_UNIX = 4102444800  # 2100-01-01 00:00:00 UTC
# The most an unauthenticated time may move a set clock.  Ticks drift a
# few seconds a day; two minutes covers a month of that, and moving a
# clock two minutes opens no time lock (an unauthenticated move also
# leaves the clock untrusted).
STEP_S = const(120)


def sane(unix):
    """Is `unix` a time the panel may take from anybody?"""
    return isinstance(unix, int) and MIN_UNIX <= unix < MAX_UNIX


class Clock:
    def __init__(self):
        self.base = 0  # Unix seconds at anchor_ms, less `lag`; 0 = unset
        self.day = 0  # UTC days since 1970-01-01 at anchor_ms; 0 = unset
        self.sec = 0  # seconds into that day
        self.lag = 0  # seconds advance() moved day/sec and base still owes
        self.anchor_ms = 0
        self.utc_offset_min = 0
        self.trusted = False  # set by an authenticated source
        self.refused = 0  # times refused (insane, or too big a step)

    def _put(self, unix, now_ms):
        self.base = unix
        # not divmod(): on a 32-bit port it hands back long integers even
        # for small results, where // and % give small ints
        self.day = unix // 86400
        self.sec = unix % 86400
        self.lag = 0
        self.anchor_ms = now_ms

    def set(self, unix, now_ms, utc_offset_min=None, trusted=True):
        """Set the clock from an authenticated source (or, trusted=False,
        from one that may set it whole: see correct()).  False, and the
        clock untouched, if `unix` is not sane."""
        if not sane(unix):
            self.refused += 1
            return False
        self._put(unix, now_ms)
        self.trusted = trusted
        if utc_offset_min is not None:
            self.utc_offset_min = utc_offset_min
        return True

    def correct(self, unix, now_ms):
        """An unauthenticated time (a clear DC-09 reply to the message we
        just sent): sets an unset clock, moves a set one by at most STEP_S.
        The clock is then untrusted.  False if refused."""
        now = self.now(now_ms)
        if now and sane(unix) and abs(unix - now) > STEP_S:
            self.refused += 1
            return False
        return self.set(unix, now_ms, None, False)

    def skew(self, seconds, now_ms):
        """Move the clock by `seconds` (tests: the panel's own drift,
        control.py "clock"); never to 0, which means unset, nor outside
        the sane bounds."""
        t = self.now(now_ms) + seconds
        self._put(min(max(t, MIN_UNIX), MAX_UNIX - 1), now_ms)

    def advance(self, now_ms):
        """Bring day and sec up to `now_ms` (ticks), in small ints only:
        the scan's reading (see the header).  The clock must be set."""
        d = ticks_diff(now_ms, self.anchor_ms)
        if d >= 1000:
            s = d // 1000
            # ticks are plain ints here; the stubs type ticks_add() for opaque _Ticks only
            self.anchor_ms = ticks_add(self.anchor_ms, s * 1000)  # pyright: ignore[reportArgumentType]
            self.lag += s
            s += self.sec
            if s >= 86400:
                self.day += s // 86400
                s %= 86400
            self.sec = s

    def now(self, now_ms):
        """Unix seconds, 0 if unset."""
        if not self.day:
            return 0
        self.advance(now_ms)
        if self.lag:
            self.base += self.lag  # a long on a 32-bit port: reporting, not the scan
            self.lag = 0
        return self.base

    def trusted_now(self, now_ms):
        """The time for decisions that must not rest on a forgeable clock
        (the time lock): now() if an authenticated source set it, else 0."""
        return self.now(now_ms) if self.trusted else 0

    def trusted_day(self, now_ms):
        """trusted_now() as the scan reads it: the UTC day (0: unset or
        not trusted) after advance(); the second of that day is `sec`."""
        if not self.day or not self.trusted:
            return 0
        self.advance(now_ms)
        return self.day

# Small shims so the panel logic runs unchanged on MicroPython and CPython.
#
# The logic modules take `now_ms` as an argument (tests drive time); only
# the edges (app.py, boards) read the clock.  Intervals are always
# ticks_diff(new, old): MicroPython's ticks wrap (at 2**30 ms on most
# ports), so a plain subtraction is wrong after ~12 days of uptime.

# What runs every scan (app.App.scan_steps and what it calls in the steady
# state) allocates nothing, so a garbage collection never starts inside a
# zone scan (tests/test_fw_alloc_vm.py counts every byte).  Two rules of
# the VM make that so:
# - A function whose locals plus its deepest expression need more than 11
#   slots gets its frame from the heap on every call (MicroPython's
#   VM_MAX_STATE_ON_STACK; unix, ESP32 and RP2 ports alike).  A function
#   called every scan stays small: the work of a rare branch (a report, a
#   deadline) goes into a helper it calls then.  A generator's frame is
#   allocated once, when it is made: the scan loop is one.
# - On a 32-bit port a small int is 31-bit: a Unix time (past 2004) or a
#   product past 2**30 is a long integer, a heap object per result (and
#   divmod() of one returns long integers even for small results; // and
#   % do not).  The scan reads the clock as a day number and a second of
#   the day (clock.py), never as Unix seconds.
#
# The CPython fallbacks below are deliberate, hence the pyright ignores: the
# board stubs type const() generically and ticks as opaque _Ticks values,
# where the firmware (and its CPython tests) uses ticks as plain ints.
try:
    from micropython import const  # pyright: ignore[reportAssignmentType]
except ImportError:  # CPython
    def const(x):
        return x

try:
    from time import ticks_ms, ticks_diff, ticks_add  # pyright: ignore[reportAssignmentType]
except ImportError:  # CPython: monotonic ms, no wrap
    import time as _t

    def ticks_ms():  # type: () -> int
        return int(_t.monotonic() * 1000)  # pyright: ignore[reportAttributeAccessIssue]  (CPython only)

    def ticks_diff(new, old):  # type: (int, int) -> int
        return new - old

    def ticks_add(t, delta):  # type: (int, int) -> int
        return t + delta


try:
    from gc import mem_free, mem_alloc  # pyright: ignore[reportAttributeAccessIssue]
except ImportError:  # CPython (the test kit's in-process panel): no heap to measure
    def mem_free():  # type: () -> int
        return 0

    def mem_alloc():  # type: () -> int
        return 0


def due(now_ms, deadline_ms):
    """Has `deadline_ms` (a ticks value) been reached?"""
    return ticks_diff(now_ms, deadline_ms) >= 0

# Small shims so the panel logic runs unchanged on MicroPython and CPython.
#
# The logic modules take `now_ms` as an argument (tests drive time); only
# the edges (app.py, boards) read the clock.  Intervals are always
# ticks_diff(new, old): MicroPython's ticks wrap (at 2**30 ms on most
# ports), so a plain subtraction is wrong after ~12 days of uptime.

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

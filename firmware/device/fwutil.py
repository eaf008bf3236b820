# Small shims so the panel logic runs unchanged on MicroPython and CPython.
#
# The logic modules take `now_ms` as an argument (tests drive time); only
# the edges (app.py, boards) read the clock.  Intervals are always
# ticks_diff(new, old): MicroPython's ticks wrap (at 2**30 ms on most
# ports), so a plain subtraction is wrong after ~12 days of uptime.

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

try:
    from time import ticks_ms, ticks_diff, ticks_add
except ImportError:  # CPython: monotonic ms, no wrap
    import time as _t

    def ticks_ms():
        return int(_t.monotonic() * 1000)

    def ticks_diff(new, old):
        return new - old

    def ticks_add(t, delta):
        return t + delta


def due(now_ms, deadline_ms):
    """Has `deadline_ms` (a ticks value) been reached?"""
    return ticks_diff(now_ms, deadline_ms) >= 0

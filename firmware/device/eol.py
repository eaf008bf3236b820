# Double end-of-line (DEOL) zone supervision, read through an ADC.
#
# Wiring (per zone): the panel's pull-up R_p to the ADC reference, the loop
# to ground.  In the loop the detector contact is in series with R_eol and a
# second resistor R_alm is across the contact, so the loop reads
#     contact closed (normal)        R_eol            (2k2 default)
#     contact open (alarm)           R_eol + R_alm    (4k4 default)
#     wire cut / loop open           infinite         -> TAMPER
#     loop shorted                   ~0 ohm           -> SHORT
# and the ADC sees raw = 65535 * R / (R + R_p) (read_u16 scale).
#
# The four bands are split half-way between the nominal values (geometric
# bands would be tighter; half-way tolerates 10 % resistors and a long
# cable).  Thresholds are computed once, in raw ADC units, so a scan is
# three integer compares per zone and allocates nothing.
#
# Debounce: a new state is accepted only after it has been read without a
# break for `debounce_ms` (EN 50131-3 asks panels to ignore loop changes
# shorter than ~200 ms and to accept those over 400 ms).

from fwutil import const, ticks_diff

NORMAL = const(0)
ALARM = const(1)
TAMPER = const(2)  # open circuit / cut wire
SHORT = const(3)

NAMES = ("normal", "alarm", "tamper", "short")
FULL_SCALE = const(65535)


def raw_for_ohms(ohms, pullup):
    """The ADC reading a loop of `ohms` gives (-1 = open circuit)."""
    if ohms < 0:
        return FULL_SCALE
    return FULL_SCALE * ohms // (ohms + pullup)


class Classifier:
    def __init__(self, normal_ohms, alarm_ohms, pullup_ohms):
        # normal_ohms / alarm_ohms: the whole loop at rest / in alarm
        # (2k2 and 2k2 + 2k2 by default; config "eol")
        self.th_short = raw_for_ohms(normal_ohms // 2, pullup_ohms)
        self.th_normal = raw_for_ohms((normal_ohms + alarm_ohms) // 2, pullup_ohms)
        self.th_alarm = raw_for_ohms(alarm_ohms * 2, pullup_ohms)

    def classify(self, raw):
        if raw < self.th_short:
            return SHORT
        if raw < self.th_normal:
            return NORMAL
        if raw < self.th_alarm:
            return ALARM
        return TAMPER


class Debouncer:
    """Per-zone debounce.  update() returns the newly accepted state, or
    -1 when the accepted state did not change."""

    def __init__(self, n, debounce_ms, now_ms):
        self.debounce_ms = debounce_ms
        self.stable = bytearray(n)  # all NORMAL until proven otherwise
        self.cand = bytearray(n)
        self.since = [now_ms] * n  # type: list[int]

    def update(self, i, state, now_ms):
        if state != self.cand[i]:
            self.cand[i] = state
            self.since[i] = now_ms
        if state != self.stable[i] and \
                ticks_diff(now_ms, self.since[i]) >= self.debounce_ms:
            self.stable[i] = state
            return state
        return -1

# NMEA 0183 from a GNSS receiver on a UART: GGA, RMC and VTG into one Fix.
#
# The vehicle profile (docs/mobile.md) reads its position from a GPS/GNSS
# receiver that talks NMEA 0183 at 1..10 Hz.  This module is sans-I/O: the
# UART edge hands it bytes (`NmeaReader.feed`), it assembles lines in a
# bounded buffer, verifies each sentence's checksum and parses the three
# sentences the rules need into a preallocated `Fix`:
#
#   GGA  time, latitude, longitude, fix quality, satellites, HDOP, altitude
#   RMC  time, status (A valid / V void), position, speed (knots), course, date
#   VTG  course, speed (km/h)
#
# from the talkers GP (GPS), GL (GLONASS), GA (Galileo), BD/GB (BeiDou) and
# GN (combined).  Other sentences and talkers are counted and ignored.
#
# Units (all integers, so that a parse allocates nothing: MicroPython boxes
# every float on the heap, and a 32-bit port keeps ints below 2**30 unboxed):
#   lat, lon     micro-degrees, + north / + east (0.11 m at the equator)
#   speed        0.1 km/h      (RMC knots x 1.852, or VTG km/h)
#   course       0.1 degree true
#   hdop         0.1
#   alt          decimetres above mean sea level (GGA)
#   day          days since 1970-01-01 UTC (RMC date), -1 until known
#   ms           milliseconds since midnight UTC of the last time field
#
# Invariants (tests/test_nmea.py proves them against pynmea2 with
# hypothesis, under CPython and the MicroPython VM):
# - A sentence without a checksum, or whose checksum is wrong, changes
#   nothing and is counted (`bad_checksum`); so is one whose structure or a
#   field is out of format or range (`bad_format`, `bad_field`).  A rejected
#   sentence never changes the Fix: fields are parsed into scratch values
#   and stored only when the whole sentence is good.
# - No input makes `feed` or `parse` raise: they return codes.
# - A line longer than MAX_LINE is dropped whole (`overlong`), never parsed
#   as a truncated sentence, and the reader resynchronises on the next '$'.
# - Once the reader exists, parsing a sentence allocates no heap memory
#   (the VM test measures gc.mem_alloc() across thousands of sentences).

from fwutil import const

# what parse() returns: the sentence kind (> 0), IGNORED, or a rejection (< 0)
GGA = const(1)
RMC = const(2)
VTG = const(3)
IGNORED = const(0)  # good checksum, a sentence or talker we do not read
E_FORMAT = const(-1)  # not a sentence: no '$', bad characters, no fields
E_CHECKSUM = const(-2)  # checksum missing or wrong
E_FIELD = const(-3)  # a field out of its format or range
KIND_NAMES = ("ignored", "GGA", "RMC", "VTG")

# feed() returns a bit per kind parsed in that chunk
GOT_GGA = const(1)
GOT_RMC = const(2)
GOT_VTG = const(4)

# NMEA 0183 sec. 5.3: at most 82 characters from '$' to <CR><LF>.  Some
# receivers exceed it with high-precision positions; 96 leaves room and is
# what the line buffer costs.
MAX_LINE = const(96)
MAX_FIELDS = const(24)  # GGA has 14 data fields, RMC 13, VTG 9; more is junk

_NONE = const(-0x40000000)  # an empty field (the smallest unboxed int)
_BAD = const(-0x3FFFFFFF)  # a field that is not what it must be

_DOLLAR = const(0x24)
_STAR = const(0x2A)
_COMMA = const(0x2C)
_DOT = const(0x2E)
_MINUS = const(0x2D)
_CR = const(0x0D)
_LF = const(0x0A)

# talkers (two letters as one int: first << 8 | second)
_TALKERS = (0x4750, 0x474E, 0x474C, 0x4741, 0x4244, 0x4742)  # GP GN GL GA BD GB
_T_GGA = const(0x474741)
_T_RMC = const(0x524D43)
_T_VTG = const(0x565447)


class Fix:
    """The receiver's latest solution.  `valid` says whether the position is
    a measured fix now, by the last GGA or RMC: GGA quality 1..5, or RMC
    status A with no mode or mode A/D/F/P/R.  When it is not, the other
    fields keep their last good values (`has_position` says there are any)."""

    def __init__(self):
        self.valid = False
        self.lat = 0
        self.lon = 0
        self.quality = 0  # GGA: 0 none, 1 GPS, 2 DGPS, 3 PPS, 4 RTK, 5 float RTK, 6 estimated
        self.sats = 0
        self.hdop = 0
        self.alt = 0
        self.speed = 0
        self.course = 0
        self.day = -1
        self.ms = -1
        self.has_position = False  # a position was ever parsed

    def unix_time(self):
        """Unix seconds UTC of the last fix time, or -1 before RMC gave a
        date.  (A 32-bit port boxes this int: call it when reporting, not
        per sentence.)"""
        if self.day < 0 or self.ms < 0:
            return -1
        return self.day * 86400 + self.ms // 1000


def _hexval(c):
    if 0x30 <= c <= 0x39:
        return c - 0x30
    if 0x41 <= c <= 0x46:
        return c - 0x37
    if 0x61 <= c <= 0x66:  # lower case: not in the standard, sent by some
        return c - 0x57
    return -1


def _digits(line, a, b):
    """The decimal integer line[a:b] (digits only), _NONE when empty."""
    if a >= b:
        return _NONE
    v = 0
    for i in range(a, b):
        c = line[i] - 0x30
        if c < 0 or c > 9:
            return _BAD
        v = v * 10 + c
    return v


def _fixed(line, a, b, places, rnd=True):
    """The decimal number line[a:b] ("-12.345"), scaled by 10**places and
    rounded half away from zero on the first dropped digit (truncated when
    not `rnd`); _NONE when empty, _BAD when not a number.  At most 7
    integer digits."""
    if a >= b:
        return _NONE
    neg = False
    if line[a] == _MINUS:
        neg = True
        a += 1
        if a >= b:
            return _BAD
    v = 0
    n_int = 0
    frac = -1  # digits seen after the point; -1 = no point yet
    up = False
    for i in range(a, b):
        c = line[i]
        if c == _DOT:
            if frac >= 0:
                return _BAD
            frac = 0
            continue
        c -= 0x30
        if c < 0 or c > 9:
            return _BAD
        if frac < 0:
            n_int += 1
            if n_int > 7:
                return _BAD
            v = v * 10 + c
        elif frac < places:
            v = v * 10 + c
            frac += 1
        else:
            if frac == places and rnd:
                up = c >= 5
            frac += 1
    if n_int == 0 or frac == 0:  # ".5" or "5." are not NMEA numbers
        return _BAD
    if frac < 0:
        frac = 0
    while frac < places:
        v *= 10
        frac += 1
    if up:
        v += 1
    return -v if neg else v


def _coord(line, a, b, deg_digits, limit):
    """ddmm.mmmm (latitude, deg_digits 2) or dddmm.mmmm (longitude, 3) ->
    micro-degrees, unsigned; _NONE when empty, _BAD otherwise."""
    if a >= b:
        return _NONE
    if b - a < deg_digits + 2:
        return _BAD
    d = _digits(line, a, a + deg_digits)
    if d < 0:
        return _BAD
    # minutes in 1e-6 minute; more digits than six are dropped (1.7e-8 deg)
    m = _fixed(line, a + deg_digits, b, 6)
    if m < 0 or m >= 60000000:
        return _BAD
    v = d * 1000000 + (2 * m + 60) // 120  # m / 60, rounded half up
    if v > limit:
        return _BAD
    return v


def _time_ms(line, a, b):
    """hhmmss[.sss] -> ms since midnight."""
    if a >= b:
        return _NONE
    if b - a < 6 or (b - a > 6 and line[a + 6] != _DOT):
        return _BAD
    h = _digits(line, a, a + 2)
    mi = _digits(line, a + 2, a + 4)
    s = _fixed(line, a + 4, b, 3, False)  # truncated: 59.9996 s is still 59
    if h < 0 or mi < 0 or s < 0 or line[a + 4] == _MINUS:
        return _BAD
    if h > 23 or mi > 59 or s >= 60000:  # a leap second (60) is not taken
        return _BAD
    return (h * 60 + mi) * 60000 + s


_MDAYS = b"\x1f\x1c\x1f\x1e\x1f\x1e\x1f\x1f\x1e\x1f\x1e\x1f"


def days_from_civil(y, m, d):
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
    algorithm, integers only)."""
    if m <= 2:
        y -= 1
    era = y // 400
    yoe = y - era * 400
    mp = m - 3 if m > 2 else m + 9
    doy = (153 * mp + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _date(line, a, b):
    """ddmmyy -> days since 1970-01-01.  yy 69..99 is 1969..1999, 00..68 is
    2000..2068 (the POSIX %y pivot; pynmea2 reads it the same way)."""
    if a >= b:
        return _NONE
    if b - a != 6:
        return _BAD
    d = _digits(line, a, a + 2)
    m = _digits(line, a + 2, a + 4)
    y = _digits(line, a + 4, a + 6)
    if d < 0 or m < 0 or y < 0 or m < 1 or m > 12 or d < 1:
        return _BAD
    y += 1900 if y >= 69 else 2000
    dim = _MDAYS[m - 1]
    if m == 2 and y % 4 == 0 and (y % 100 != 0 or y % 400 == 0):
        dim = 29
    if d > dim:
        return _BAD
    return days_from_civil(y, m, d)


def _one_of(line, a, b, c1, c2):
    """A one-letter field that must be c1 or c2: returns which (1, 2), 0
    when empty, -1 otherwise."""
    if a >= b:
        return 0
    if b - a != 1:
        return -1
    c = line[a]
    if c == c1:
        return 1
    if c == c2:
        return 2
    return -1


class NmeaReader:
    """Assemble lines from UART bytes and parse them into `self.fix`.

    feed(data, count=-1) -> GOT_* bits for the sentences parsed from this
    chunk, data[0:count] (all of it when count < 0: a UART read into a
    reused buffer passes the count it read).
    parse(line, n) -> the kind (GGA/RMC/VTG), IGNORED or a rejection E_*,
    for one sentence in line[0:n] (bytes, bytearray or memoryview; n = -1
    for the whole of it).  Counters: ok, ignored, bad_checksum, bad_format,
    bad_field, overlong."""

    def __init__(self, fix=None):
        self.fix = fix if fix is not None else Fix()
        self._buf = bytearray(MAX_LINE)
        self._n = 0
        self._skip = False  # inside an overlong line: drop to its end
        self._pos = bytearray(MAX_FIELDS + 1)  # start of each field, then the '*'
        self._lat = 0  # scratch: a position is stored only if its sentence is good
        self._lon = 0
        self.ok = 0
        self.ignored = 0
        self.bad_checksum = 0
        self.bad_format = 0
        self.bad_field = 0
        self.overlong = 0

    def feed(self, data, count=-1):
        got = 0
        buf = self._buf
        n = self._n
        for i in range(len(data) if count < 0 else count):
            c = data[i]
            if c == _LF or c == _CR:
                if self._skip:
                    self._skip = False
                elif n:
                    k = self.parse(buf, n)
                    if k > 0:
                        got |= 1 << (k - 1)
                n = 0
                continue
            if c == _DOLLAR:
                # a '$' starts a sentence; inside a line it means the
                # previous one was cut short (bytes lost, receiver restart)
                if n:
                    self.bad_format += 1
                    n = 0
                self._skip = False
            if self._skip:
                continue
            if n >= MAX_LINE:
                self.overlong += 1
                self._skip = True
                n = 0
                continue
            buf[n] = c
            n += 1
        self._n = n
        return got

    def parse(self, line, n=-1):
        k = self._parse(line, len(line) if n < 0 else n)
        if k > 0:
            self.ok += 1
        elif k == IGNORED:
            self.ignored += 1
        elif k == E_CHECKSUM:
            self.bad_checksum += 1
        elif k == E_FIELD:
            self.bad_field += 1
        else:
            self.bad_format += 1
        return k

    def _parse(self, line, n):
        # trailing CR/LF/spaces are not part of the sentence
        while n and (line[n - 1] == _CR or line[n - 1] == _LF or line[n - 1] == 0x20):
            n -= 1
        if n < 10 or line[0] != _DOLLAR:
            return E_FORMAT
        pos = self._pos
        nf = 0
        x = 0
        star = -1
        for i in range(1, n):
            c = line[i]
            if c == _STAR:
                star = i
                break
            if c < 0x20 or c > 0x7E or c == _DOLLAR:
                return E_FORMAT
            x ^= c
            if c == _COMMA:
                if nf >= MAX_FIELDS:
                    return E_FORMAT
                pos[nf] = i + 1
                nf += 1
        if star < 0 or star + 3 != n:
            return E_CHECKSUM  # no checksum (or junk after it): rejected
        hi = _hexval(line[star + 1])
        lo = _hexval(line[star + 2])
        if hi < 0 or lo < 0:
            return E_CHECKSUM
        if (hi << 4 | lo) != x:
            return E_CHECKSUM
        pos[nf] = star + 1  # field i is line[pos[i]:pos[i + 1] - 1]
        if nf == 0:
            return E_FORMAT
        if pos[0] != 7:
            return IGNORED  # not "$" + talker (2) + type (3) + ",": proprietary ($PUBX)
        talker = line[1] << 8 | line[2]
        known = False
        for t in _TALKERS:
            if t == talker:
                known = True
        if not known:
            return IGNORED
        s = line[3] << 16 | line[4] << 8 | line[5]
        if s == _T_GGA:
            return self._gga(line, pos, nf)
        if s == _T_RMC:
            return self._rmc(line, pos, nf)
        if s == _T_VTG:
            return self._vtg(line, pos, nf)
        return IGNORED

    def _latlon(self, line, pos, i):
        """Fields i..i+3: lat, N/S, lon, E/W.  Stores into the scratch
        self._lat/_lon; -> 1 position, 0 empty, -1 bad."""
        lat = _coord(line, pos[i], pos[i + 1] - 1, 2, 90000000)
        ns = _one_of(line, pos[i + 1], pos[i + 2] - 1, 0x4E, 0x53)
        lon = _coord(line, pos[i + 2], pos[i + 3] - 1, 3, 180000000)
        ew = _one_of(line, pos[i + 3], pos[i + 4] - 1, 0x45, 0x57)
        if lat == _BAD or lon == _BAD or ns < 0 or ew < 0:
            return -1
        if lat == _NONE and lon == _NONE and ns == 0 and ew == 0:
            return 0
        if lat == _NONE or lon == _NONE or ns == 0 or ew == 0:
            return -1  # half a position
        self._lat = -lat if ns == 2 else lat
        self._lon = -lon if ew == 2 else lon
        return 1

    def _gga(self, line, pos, nf):
        # 0 time, 1 lat, 2 N/S, 3 lon, 4 E/W, 5 quality, 6 sats, 7 HDOP,
        # 8 altitude, 9 M, 10 geoid sep., 11 M, 12 DGPS age, 13 station
        if nf < 14:
            return E_FIELD
        t = _time_ms(line, pos[0], pos[1] - 1)
        have = self._latlon(line, pos, 1)
        q = _digits(line, pos[5], pos[6] - 1)
        sats = _digits(line, pos[6], pos[7] - 1)
        hdop = _fixed(line, pos[7], pos[8] - 1, 1)
        alt = _fixed(line, pos[8], pos[9] - 1, 1)
        if t == _BAD or have < 0 or q == _BAD or sats == _BAD or hdop == _BAD \
                or alt == _BAD or q > 8 or sats > 99 or (hdop != _NONE and hdop < 0):
            return E_FIELD
        if q == _NONE:
            q = 0
        # 1 GPS, 2 DGPS, 3 PPS, 4 RTK, 5 float RTK are fixes; 6 dead
        # reckoning, 7 manual input and 8 simulation are not measured
        fix = 1 <= q <= 5
        if fix and have == 0:
            return E_FIELD  # a fix without a position
        f = self.fix
        if t != _NONE:
            f.ms = t
        f.quality = q
        if sats != _NONE:
            f.sats = sats
        if hdop != _NONE:
            f.hdop = hdop
        if alt != _NONE:
            f.alt = alt
        if fix:
            f.lat = self._lat
            f.lon = self._lon
            f.has_position = True
        f.valid = fix
        return GGA

    def _rmc(self, line, pos, nf):
        # 0 time, 1 status, 2 lat, 3 N/S, 4 lon, 5 E/W, 6 speed kn,
        # 7 course, 8 date, 9 mag. var., 10 E/W [, 11 mode [, 12 nav status]]
        if nf < 11:
            return E_FIELD
        t = _time_ms(line, pos[0], pos[1] - 1)
        st = _one_of(line, pos[1], pos[2] - 1, 0x41, 0x56)  # A / V
        have = self._latlon(line, pos, 2)
        kn = _fixed(line, pos[6], pos[7] - 1, 3)  # 0.001 knot
        crs = _fixed(line, pos[7], pos[8] - 1, 1)
        day = _date(line, pos[8], pos[9] - 1)
        if t == _BAD or st < 0 or have < 0 or kn == _BAD or crs == _BAD or day == _BAD:
            return E_FIELD
        if (kn != _NONE and kn < 0) or (crs != _NONE and (crs < 0 or crs > 3600)):
            return E_FIELD
        if st == 1 and have == 0:
            return E_FIELD  # "valid" without a position
        if nf > 11 and pos[12] - 1 - pos[11] == 1:
            # NMEA 2.3 mode: A autonomous, D differential, F float RTK,
            # P precise, R RTK are fixes; E estimated (dead reckoning),
            # M manual, S simulator, N not valid are not
            mode = line[pos[11]]
            if mode != 0x41 and mode != 0x44 and mode != 0x46 and mode != 0x50 \
                    and mode != 0x52:
                st = 2
        f = self.fix
        if t != _NONE:
            f.ms = t
        if day != _NONE:
            f.day = day
        if st == 1:
            f.lat = self._lat
            f.lon = self._lon
            f.has_position = True
            if kn != _NONE:
                f.speed = (kn * 1852 + 50000) // 100000  # knots -> 0.1 km/h
            if crs != _NONE:
                f.course = crs % 3600  # 359.96 rounds to 360.0: north
        f.valid = st == 1
        return RMC

    def _vtg(self, line, pos, nf):
        # 0 course true, 1 T, 2 course magnetic, 3 M, 4 speed kn, 5 N,
        # 6 speed km/h, 7 K [, 8 mode: A autonomous, D differential, E
        # estimated, N not valid]
        if nf < 8:
            return E_FIELD
        crs = _fixed(line, pos[0], pos[1] - 1, 1)
        kmh = _fixed(line, pos[6], pos[7] - 1, 1)
        if crs == _BAD or kmh == _BAD or (kmh != _NONE and kmh < 0) \
                or (crs != _NONE and (crs < 0 or crs > 3600)):
            return E_FIELD
        if nf > 8 and pos[9] - 1 - pos[8] == 1 and line[pos[8]] == 0x4E:
            return VTG  # mode N: the receiver says the data is not valid
        f = self.fix
        if crs != _NONE:
            f.course = crs % 3600
        if kmh != _NONE:
            f.speed = kmh
        return VTG

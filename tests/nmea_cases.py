"""NMEA 0183 test sentences and what pynmea2 makes of them.

Shared by tests/test_nmea.py (hypothesis, CPython) and the MicroPython VM
batch in the same file.  A generator takes a `random.Random` so that
hypothesis can drive it (`st.randoms()`) and the VM batch can replay a
seeded one.  The sentences are formatted here, field by field, and their
checksums come from pynmea2 (`NMEASentence.checksum`), never from the code
under test.  `expected(line)` is pynmea2's reading of a sentence in the
parser's units.
"""

import datetime

import pynmea2

TALKERS = ("GP", "GN", "GL", "GA", "BD", "GB")
EPOCH = datetime.date(1970, 1, 1)


def seal(body):
    """'$' + body + '*HH' with pynmea2's checksum."""
    return "$%s*%02X" % (body, pynmea2.NMEASentence.checksum(body))


def _frac(rng, value_units, places):
    """A non-negative decimal with `places` fraction digits from an integer
    in units of 10**-places (places 0: no point)."""
    if places == 0:
        return "%d" % value_units
    return "%d.%0*d" % (value_units // 10 ** places, places, value_units % 10 ** places)


def _num(rng, lo, hi, max_places):
    places = rng.randint(0, max_places)
    u = rng.randint(lo * 10 ** places, hi * 10 ** places)
    return _frac(rng, u, places)


def _time(rng):
    t = "%02d%02d%02d" % (rng.randrange(24), rng.randrange(60), rng.randrange(60))
    places = rng.choice((0, 1, 2, 3))
    if places:
        t += ".%0*d" % (places, rng.randrange(10 ** places))
    return t


def _coord(rng, deg_digits, top):
    """ddmm.mmmm / dddmm.mmmm with 1..7 minute decimals (pynmea2 wants a
    point), and its hemisphere."""
    deg = rng.randint(0, top)
    places = rng.randint(1, 7)
    units = 0 if deg == top else rng.randrange(60 * 10 ** places)
    m = "%02d.%0*d" % (units // 10 ** places, places, units % 10 ** places)
    return "%0*d%s" % (deg_digits, deg, m)


def _date(rng):
    d = EPOCH + datetime.timedelta(days=rng.randint(10957, 36524))  # 2000..2069
    if d.year > 2068:
        d = d.replace(year=2068)
    return d.strftime("%d%m%y")


def gga(rng, fix=None):
    fix = rng.random() < 0.85 if fix is None else fix
    q = rng.randint(1, 8) if fix else 0
    if fix:
        pos = [_coord(rng, 2, 90), rng.choice("NS"), _coord(rng, 3, 180), rng.choice("EW")]
    else:
        pos = ["", "", "", ""]
    alt = _num(rng, 0, 9000, 2)
    if rng.random() < 0.2:
        alt = "-" + _num(rng, 0, 400, 1)
    fields = [_time(rng)] + pos + [
        "%d" % q, "%02d" % rng.randint(0, 40) if fix else "00",
        _num(rng, 0, 99, 2) if fix else rng.choice(("", "99.99")),
        alt if fix else "", "M" if fix else "", "%.1f" % rng.uniform(-50, 80) if fix else "",
        "M" if fix else "", "", rng.choice(("", "0000"))]
    return seal(rng.choice(TALKERS) + "GGA," + ",".join(fields))


def rmc(rng, fix=None):
    fix = rng.random() < 0.85 if fix is None else fix
    if fix:
        pos = [_coord(rng, 2, 90), rng.choice("NS"), _coord(rng, 3, 180), rng.choice("EW")]
    else:
        pos = ["", "", "", ""]
    fields = [_time(rng), "A" if fix else "V"] + pos + [
        _num(rng, 0, 250, 3) if fix or rng.random() < 0.5 else "",
        _num(rng, 0, 359, 2) if fix or rng.random() < 0.5 else "",
        _date(rng), rng.choice(("", "3.1")), ""]
    fields[-1] = "W" if fields[-2] else ""
    r = rng.random()
    if r < 0.5:
        fields.append(rng.choice("ADEFMNPRS" if fix else "N"))
        if r < 0.2:
            fields.append(rng.choice("SCUV"))
    return seal(rng.choice(TALKERS) + "RMC," + ",".join(fields))


def vtg(rng, fix=None):
    fix = rng.random() < 0.9 if fix is None else fix
    if fix:
        kn = _num(rng, 0, 150, 3)
        fields = [_num(rng, 0, 359, 2), "T", rng.choice(("", _num(rng, 0, 359, 1))), "M",
                  kn, "N", _num(rng, 0, 280, 2), "K"]
        if rng.random() < 0.6:
            fields.append(rng.choice("ADE"))
    else:
        fields = ["", "T", "", "M", "", "N", "", "K", "N"]
    return seal(rng.choice(TALKERS) + "VTG," + ",".join(fields))


def sentence(rng):
    return rng.choice((gga, rmc, vtg))(rng)


def mutate(rng, line):
    """A sentence garbled as a serial line garbles it: a byte changed,
    dropped, doubled or inserted, the checksum dropped or changed, the
    line cut short."""
    b = bytearray(line.encode("ascii"))
    k = rng.randrange(8)
    i = rng.randrange(len(b))
    if k == 0:
        b[i] = rng.randrange(256)
    elif k == 1:
        b[i] ^= 1 << rng.randrange(8)
    elif k == 2:
        del b[i]
    elif k == 3:
        b.insert(i, rng.choice(b",.*$0123456789ABCDEFNSWEMT-"))
    elif k == 4:
        star = b.rfind(b"*")
        del b[star:]
    elif k == 5:
        star = b.rfind(b"*")
        b[star + rng.randint(1, 2)] = rng.choice(b"0123456789ABCDEFabcdefG")
    elif k == 6:
        del b[i:]
    else:
        b[i:i] = b[i:i + rng.randint(1, 8)]
    return bytes(b)


# --- pynmea2's reading ----------------------------------------------------------

def pynmea2_parse(data):
    """-> ("ok", msg) | ("checksum", err) | ("parse", err)."""
    try:
        text = data.decode("latin-1") if isinstance(data, (bytes, bytearray)) else data
        return "ok", pynmea2.NMEASentence.parse(text, check=True)
    except pynmea2.ChecksumError as e:
        return "checksum", e
    except pynmea2.ParseError as e:
        return "parse", e


def _ms(t):
    return ((t.hour * 60 + t.minute) * 60 + t.second) * 1000 + t.microsecond // 1000


def expected(msg):
    """pynmea2's fields in the parser's units: {field: (value, tolerance)}.
    Raises ValueError/TypeError when pynmea2 cannot convert a field."""
    kind = msg.sentence_type
    out = {}
    if kind == "GGA":
        q = int(msg.gps_qual) if msg.gps_qual is not None else 0
        out["quality"] = (q, 0)
        out["valid"] = (1 <= q <= 5, 0)
        if msg.timestamp is not None:
            out["ms"] = (_ms(msg.timestamp), 1)  # pynmea2 goes through a float
        if 1 <= q <= 5:
            out["lat"] = (msg.latitude * 1e6, 0.52)
            out["lon"] = (msg.longitude * 1e6, 0.52)
            out["sats"] = (int(msg.num_sats), 0)
            out["hdop"] = (float(msg.horizontal_dil) * 10, 0.5 + 1e-6)
            out["alt"] = (msg.altitude * 10, 0.5 + 1e-6)
    elif kind == "RMC":
        mode = msg.mode_indicator if len(msg.data) > 11 else None
        valid = msg.status == "A" and (not mode or mode in "ADFPR")
        out["valid"] = (valid, 0)
        if msg.timestamp is not None:
            out["ms"] = (_ms(msg.timestamp), 1)
        if msg.datestamp is not None:
            out["day"] = ((msg.datestamp - EPOCH).days, 0)
        if valid:
            out["lat"] = (msg.latitude * 1e6, 0.52)
            out["lon"] = (msg.longitude * 1e6, 0.52)
            if msg.spd_over_grnd is not None:
                out["speed"] = (float(msg.spd_over_grnd) * 18.52, 0.5 + 0.0186)
            if msg.true_course is not None:
                out["course"] = (float(msg.true_course) * 10, 0.5 + 1e-6)
    elif kind == "VTG":
        if len(msg.data) > 8 and msg.faa_mode == "N":
            return out
        if msg.true_track is not None:
            out["course"] = (float(msg.true_track) * 10, 0.5 + 1e-6)
        if msg.spd_over_grnd_kmph is not None:
            out["speed"] = (float(msg.spd_over_grnd_kmph) * 10, 0.5 + 1e-6)
    return out


def disagreements(fix_fields, want):
    """Fields where the parser's Fix differs from pynmea2 beyond tolerance."""
    bad = []
    for name, (value, tol) in want.items():
        got = fix_fields[name]
        if isinstance(value, bool) or tol == 0:
            if got != value:
                bad.append((name, got, value))
        else:
            d = abs(got - value)
            if name == "course":  # degrees: 359.96 rounds to 0.0
                d = min(d, 3600 - d)
            if d > tol:
                bad.append((name, got, value))
    return bad


FIX_FIELDS = ("valid", "lat", "lon", "quality", "sats", "hdop", "alt", "speed", "course",
              "day", "ms", "has_position")
KINDS = {"GGA": 1, "RMC": 2, "VTG": 3}

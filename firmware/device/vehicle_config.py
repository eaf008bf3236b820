# The "vehicle" config section: validation, at boot and on the host.
#
# Like config.py, this runs on the panel (then is unloaded: vehicle.py
# keeps only the validated section) and on the host (`guardline-panel
# check`), so it imports nothing but geo.
#
# validate(doc) -> (section, errors).  Each error starts with the path of
# the field at fault ("vehicle.corridor.width_m: missing").  The section
# has coordinates as (lat, lon) integer micro-degrees and max_hdop in
# tenths, as vehicle.Vehicle takes them.  Config points are GeoJSON order,
# [longitude, latitude] in degrees, the order of the receiver's GeoJSON;
# a latitude out of -90..90 gets a hint about the order.
#
# Invariant: no JSON value makes validate() raise; a wrong type is an
# error message (the panel must report, not reboot-loop).

from fwutil import const
from cfgutil import Errors, is_number, type_name
import geo

# Bounds, each from the device budget or the field's sense.
MAX_ALLOWED_ZONES = const(16)
MAX_POLYGON_POINTS = const(32)
MAX_ROUTE_POINTS = const(200)  # 200 x 3 arrays of 4 bytes: 2.4 KB compiled
MAX_SCHEDULE = const(7)
# name: (default, min, max); speeds km/h, times s
LIMITS = {
    "partition": (1, 1, 8),
    "door_open_kmh": (10, 1, 250),
    "moving_kmh": (5, 1, 100),
    "stopped_kmh": (3, 0, 100),
    "stop_max_s": (300, 10, 86400),
    "fix_lost_s": (30, 5, 3600),
    "jam_window_s": (5, 1, 60),
    "position_hold_s": (120, 0, 86400),
}
CORRIDOR_LIMITS = {
    "width_m": (None, 20, 10000),
    "exit_after_s": (10, 0, 600),
    "hysteresis_m": (20, 0, 5000),
}
REPORT_LIMITS = {
    "moving_s": (30, 5, 3600),
    "moving_m": (200, 10, 100000),
    "turn_deg": (30, 0, 180),  # 0: no turn points
    "alarm_s": (5, 1, 600),
    # after an alarm of the panel itself (hold-up, duress, tilt: a 1xx the
    # unit reports), points every alarm_s for this long (vunit.py)
    "after_alarm_s": (600, 0, 86400),
    "parked_s": (900, 60, 86400),
    "min_s": (2, 1, 600),
    # track points kept while there is no link (trackq.py: 32 bytes of
    # flash and 4 of RAM each; 96 = 48 min of driving at one per 30 s)
    "track_points": (96, 8, 1024),
}
SECTIONS = ("allowed_zones", "corridor", "ignition_schedule", "report", "max_hdop")


class _Check(Errors):
    def table(self, d, limits, path, more=()):
        """Whole numbers by a (default, min, max) table; `more`: the other
        keys d may hold."""
        out = {}
        for k in limits:
            dflt, lo, hi = limits[k]
            v = d.get(k, dflt)
            if v is None:
                self.err(path + "." + k, "missing")
            elif isinstance(v, bool) or not isinstance(v, int):
                self.err(path + "." + k, "expected a whole number, got %s" % type_name(v))
                v = dflt
            elif v < lo or v > hi:
                self.err(path + "." + k, "%d is out of range %d..%d" % (v, lo, hi))
                v = dflt
            out[k] = v
        for k in d:
            if k not in limits and k not in more:
                self.err(path + "." + k, "unknown field (known: %s)"
                         % ", ".join(tuple(more) + tuple(limits)))
        return out

    def objects(self, lst, path):
        """[(path[i], entry)] for the entries of lst that are objects; an
        error for each that is not."""
        out = []
        for i in range(len(lst)):
            p = "%s[%d]" % (path, i)
            if isinstance(lst[i], dict):
                out.append((p, lst[i]))
            else:
                self.err(p, "expected an object, got %s" % type_name(lst[i]))
        return out

    def point(self, p, path):
        """[longitude, latitude] in degrees (GeoJSON order) -> (lat, lon) udeg."""
        if not isinstance(p, list) or len(p) != 2 or not is_number(p[0]) \
                or not is_number(p[1]):
            self.err(path, "expected [longitude, latitude] in degrees, got %s" % (p,))
            return None
        lon, lat = p
        if lat < -90 or lat > 90 or lon < -180 or lon > 180:
            self.err(path, "%s is not [longitude, latitude] (GeoJSON order: longitude first,"
                     " -180..180, then latitude, -90..90)" % (p,))
            return None
        return (geo.udeg(lat), geo.udeg(lon))

    def points(self, v, path, lo, hi):
        if not isinstance(v, list):
            self.err(path, "expected an array of [longitude, latitude], got %s" % type_name(v))
            return None
        if len(v) < lo or len(v) > hi:
            self.err(path, "needs %d..%d points, got %d" % (lo, hi, len(v)))
            return None
        out = []
        for i in range(len(v)):
            p = self.point(v[i], "%s[%d]" % (path, i))
            if p is None:
                return None
            out.append(p)
        return out


def _area2(pts):
    """Twice the signed area of a ring of (lat, lon) udeg in the
    lon/lat plane (0: its points are on one line or the same place)."""
    a = 0
    lon0 = pts[0][1]
    j = len(pts) - 1
    for i in range(len(pts)):
        a += geo.dlon(pts[j][1], lon0) * pts[i][0] - geo.dlon(pts[i][1], lon0) * pts[j][0]
        j = i
    return a


def _minute(c, s, path):
    if isinstance(s, str) and len(s) == 5 and s[2] == ":" and s[:2].isdigit() \
            and s[3:].isdigit() and int(s[:2]) < 24 and int(s[3:]) < 60:
        return int(s[:2]) * 60 + int(s[3:])
    c.err(path, "expected a time of day \"HH:MM\", got %r" % (s,))
    return None


def validate(doc):
    """Check the "vehicle" config section.  -> (section, errors): errors
    are strings that start with the field's path ("vehicle.corridor.width_m:
    ..."); the section (coordinates in udeg, (lat, lon)) is meant for
    Vehicle() only when there are none.  Never raises for any JSON value."""
    c = _Check()
    if not isinstance(doc, dict):
        return None, ["vehicle: expected an object, got %s" % type_name(doc)]
    out = c.table(doc, LIMITS, "vehicle", SECTIONS)
    hd = doc.get("max_hdop", 5)
    if not is_number(hd) or hd < 1 or hd > 50:
        c.err("vehicle.max_hdop", "expected a number 1..50, got %r" % (hd,))
        hd = 5
    out["max_hdop"] = int(hd * 10 + 0.5)  # nmea.Fix.hdop is in tenths
    if out["stopped_kmh"] > out["moving_kmh"]:
        c.err("vehicle.stopped_kmh", "must not exceed vehicle.moving_kmh")
    zones = []
    zl = doc.get("allowed_zones", [])
    if not isinstance(zl, list) or len(zl) > MAX_ALLOWED_ZONES:
        c.err("vehicle.allowed_zones", "expected an array of at most %d zones"
              % MAX_ALLOWED_ZONES)
        zl = []
    i = 0
    for p, z in c.objects(zl, "vehicle.allowed_zones"):
        i += 1
        name = z.get("name", "zone %d" % i)
        if not isinstance(name, str) or len(name.encode()) > 32:
            c.err(p + ".name", "expected a text of at most 32 bytes")
            name = "zone %d" % i
        if ("center" in z) == ("polygon" in z):
            c.err(p, "give either \"center\" and \"radius_m\" (a circle) or \"polygon\"")
            continue
        if "center" in z:
            ctr = c.point(z["center"], p + ".center")
            r = z.get("radius_m")
            if isinstance(r, bool) or not isinstance(r, int) or r < 10 or r > 50000:
                c.err(p + ".radius_m", "expected whole metres 10..50000, got %r" % (r,))
            elif ctr is not None:
                zones.append({"name": name, "circle": (ctr[0], ctr[1], r)})
        else:
            pts = c.points(z["polygon"], p + ".polygon", 3, MAX_POLYGON_POINTS + 1)
            if pts is not None:
                if pts[0] == pts[-1] and len(pts) > 3:
                    pts = pts[:-1]  # a GeoJSON ring repeats its first point
                if len(pts) > MAX_POLYGON_POINTS:
                    c.err(p + ".polygon", "at most %d points" % MAX_POLYGON_POINTS)
                elif _area2(pts) == 0:
                    c.err(p + ".polygon", "its points enclose no area (all on one line, or "
                          "a figure eight): list the corners in order around the zone")
                else:
                    zones.append({"name": name, "polygon": pts})
        for k in z:
            if k not in ("name", "center", "radius_m", "polygon"):
                c.err(p + "." + k, "unknown field (known: name, center, radius_m, polygon)")
    out["allowed_zones"] = zones
    out["corridor"] = None
    co = doc.get("corridor")
    if co is not None:
        if not isinstance(co, dict):
            c.err("vehicle.corridor", "expected an object, got %s" % type_name(co))
        else:
            cc = c.table(co, CORRIDOR_LIMITS, "vehicle.corridor", ("line",))
            line = c.points(co.get("line"), "vehicle.corridor.line", 2, MAX_ROUTE_POINTS)
            if cc.get("width_m") is not None and cc["hysteresis_m"] * 2 >= cc["width_m"]:
                c.err("vehicle.corridor.hysteresis_m", "must be less than half of width_m")
            if line is not None and line.count(line[0]) == len(line):
                c.err("vehicle.corridor.line", "all its points are the same place: a route "
                      "needs two different points")
                line = None
            if line is not None and cc.get("width_m") is not None:
                cc["line"] = line
                out["corridor"] = cc
    out["ignition_schedule"] = None
    sl = doc.get("ignition_schedule")
    if sl is not None:
        if not isinstance(sl, list) or not sl or len(sl) > MAX_SCHEDULE:
            c.err("vehicle.ignition_schedule", "expected 1..%d windows" % MAX_SCHEDULE)
        else:
            sched = []
            for p, w in c.objects(sl, "vehicle.ignition_schedule"):
                a = _minute(c, w.get("from"), p + ".from")
                b = _minute(c, w.get("to"), p + ".to")
                days = w.get("days", [1, 2, 3, 4, 5])
                ok = isinstance(days, list) and 0 < len(days) <= 7
                for d in days if ok else ():
                    if isinstance(d, bool) or not isinstance(d, int) or d < 1 or d > 7:
                        ok = False
                if not ok:
                    c.err(p + ".days", "expected days 1 (Monday) .. 7 (Sunday)")
                if a is not None and b is not None and a == b:
                    c.err(p, "\"from\" and \"to\" are the same time")
                elif a is not None and b is not None and ok:
                    sched.append({"days": days, "from": a, "to": b})
                for k in w:
                    if k not in ("days", "from", "to"):
                        c.err(p + "." + k, "unknown field (known: days, from, to)")
            if len(sched) == len(sl):
                out["ignition_schedule"] = sched
    rp = doc.get("report", {})
    if not isinstance(rp, dict):
        c.err("vehicle.report", "expected an object, got %s" % type_name(rp))
        rp = {}
    out["report"] = c.table(rp, REPORT_LIMITS, "vehicle.report")
    r = out["report"]
    if r["alarm_s"] > r["moving_s"]:
        c.err("vehicle.report.alarm_s", "must not exceed vehicle.report.moving_s")
    if r["min_s"] > r["alarm_s"]:
        c.err("vehicle.report.min_s", "must not exceed vehicle.report.alarm_s")
    return out, c.errors

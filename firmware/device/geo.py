# Geometry for the vehicle profile: distances, geofences, route corridors.
#
# Coordinates are integer micro-degrees (nmea.Fix.lat/lon; 1 udeg of
# latitude is 0.11 m).  The rules need four answers at city scale: the
# distance between two points, is a point inside a circle, inside a
# polygon, within a given distance of a polyline (the planned route's
# corridor).  docs/mobile.md, "Geometry", has the error bounds; the tests
# prove these functions against shapely and haversine (tests/test_geo.py),
# under CPython and the MicroPython VM.
#
# Model: a sphere of the IUGG mean radius R, and per shape a local
# equirectangular plane: x = dlon * R * cos(lat_m), y = dlat * R (radians),
# at a mean latitude lat_m: between two points (a circle's centre and the
# point tested) their mean (the "equirectangular approximation"), for a
# corridor segment the segment's, origin at its first vertex.  Against
# haversine on the same sphere, at latitudes up to 70 degrees, it is off by
# at most 0.1 mm at 1 km, 1 cm at 10 km, 7 cm at 20 km and 1.2 m at 50 km
# (tests/test_geo.py).  The sphere itself is up to 0.5 % off the WGS84
# ellipsoid's ground distance: 1 m on a 200 m geofence radius.
#
# Precision on single-precision ports (ESP32 and RP2040 MicroPython use
# 32-bit floats, 24-bit mantissa): a float never holds an absolute
# coordinate.  Differences are taken in integers (exact), and only the
# difference, at most a few 1e5 udeg, becomes a float: its metres carry a
# relative error near 1e-7, below a millimetre at 10 km.  Point in polygon
# is decided in integers alone (an equirectangular plane is an affine image
# of the lon/lat plane, so inside the one is inside the other), and exact.
# Every shape keeps an integer bounding box, widened by its radius or
# width, so a point far from it costs a few integer compares and no float.
#
# Longitudes are differenced modulo 360 degrees, so a circle or corridor
# across the antimeridian works; a polygon must not cross it (the integer
# test runs in the lon/lat plane).

import math
from array import array

from fwutil import const

R_M = 6371008.8  # IUGG mean Earth radius, metres
M_PER_UDEG = R_M * math.pi / 180e6  # metres per micro-degree of arc (0.1112)
_RAD_PER_UDEG = math.pi / 180e6
_FULL = const(360000000)
_HALF = const(180000000)


def udeg(deg):
    """Decimal degrees (int or float, e.g. from a JSON config) -> integer
    micro-degrees, rounded.  The whole degrees are split off first so that
    a 32-bit float multiplies only the fraction: 0.5 udeg of rounding
    instead of several udeg."""
    whole = int(deg)
    frac = deg - whole
    u = int(frac * 1000000 + (0.5 if frac >= 0 else -0.5))
    return whole * 1000000 + u


def dlon(lon, lon0):
    """lon - lon0 in udeg, wrapped to -180..180 degrees."""
    d = lon - lon0
    if d > _HALF:
        d -= _FULL
    elif d < -_HALF:
        d += _FULL
    return d


def kx(lat):
    """Metres per udeg of longitude at latitude `lat` (udeg)."""
    return M_PER_UDEG * math.cos(lat * _RAD_PER_UDEG)


def distance_m(lat1, lon1, lat2, lon2):
    """Distance in metres between two points (equirectangular, at the mean
    latitude; see the module comment for its error)."""
    dx = dlon(lon2, lon1) * kx((lat1 + lat2) // 2)
    dy = (lat2 - lat1) * M_PER_UDEG
    return math.sqrt(dx * dx + dy * dy)


def _lon_margin(d_m, lat_a, lat_b):
    """udeg of longitude that cover `d_m` metres anywhere between two
    latitudes (the larger |lat|: the shorter the degree)."""
    far = lat_a if abs(lat_a) > abs(lat_b) else lat_b
    far = abs(far) + int(d_m / M_PER_UDEG) + 1
    if far >= 89000000:
        return _HALF  # near a pole: no longitude bound
    return int(d_m / kx(far)) + 2


class Circle:
    """A circular geofence: centre (udeg) and radius (m)."""

    def __init__(self, lat, lon, radius_m):
        self.lat = lat
        self.lon = lon
        self.radius_m = radius_m
        self._dlat = int(radius_m / M_PER_UDEG) + 2
        self._dlon = _lon_margin(radius_m, lat, lat)

    def contains(self, lat, lon):
        """Inside or on the circle."""
        dy = lat - self.lat
        dx = dlon(lon, self.lon)
        if dy > self._dlat or dy < -self._dlat or dx > self._dlon or dx < -self._dlon:
            return False
        return distance_m(lat, lon, self.lat, self.lon) <= self.radius_m


class Polygon:
    """A polygonal geofence: vertices (lat, lon) in udeg, in order, the
    ring closed implicitly.  Decided in integers, exactly; a point on an
    edge may count as inside or outside (half-open crossing rule)."""

    def __init__(self, points):
        n = len(points)
        self.n = n
        self.lat = array("i", [p[0] for p in points])
        # longitudes relative to the first vertex, wrapped: one plane
        lon0 = points[0][1]
        self.lon0 = lon0
        self.dlon = array("i", [dlon(p[1], lon0) for p in points])
        self.min_lat = min(self.lat)
        self.max_lat = max(self.lat)
        self.min_dlon = min(self.dlon)
        self.max_dlon = max(self.dlon)

    def contains(self, lat, lon):
        x = dlon(lon, self.lon0)
        if lat < self.min_lat or lat > self.max_lat or x < self.min_dlon or x > self.max_dlon:
            return False
        ys = self.lat
        xs = self.dlon
        inside = False
        j = self.n - 1
        for i in range(self.n):
            yi = ys[i]
            yj = ys[j]
            if (yi > lat) != (yj > lat):
                # does the edge cross the horizontal ray to the east of the
                # point?  x < xi + (xj - xi) * (lat - yi) / (yj - yi),
                # multiplied out by (yj - yi) with its sign: no division
                lhs = (x - xs[i]) * (yj - yi)
                rhs = (xs[j] - xs[i]) * (lat - yi)
                cross = lhs < rhs if yj > yi else lhs > rhs
                if cross:
                    inside = not inside
            j = i
        return inside


class Polyline:
    """A route: vertices (lat, lon) in udeg.  `distance_m` is the distance
    to the nearest segment; `within` answers "closer than d metres" without
    floats for segments whose widened box the point is not in.  Each
    segment is measured in its own plane (origin its first vertex, scale
    at its mean latitude), so a long route loses no accuracy far from its
    start."""

    def __init__(self, points, margin_m=0):
        n = len(points)
        self.n = n
        self.lat = array("i", [p[0] for p in points])
        self.lon = array("i", [p[1] for p in points])
        # metres per udeg of longitude at each segment's mean latitude
        self.kx = array("f", [kx((points[i][0] + points[i + 1][0]) // 2)
                              for i in range(n - 1)])
        # per segment: box in udeg widened by margin_m (the widest distance
        # `within` will be asked about)
        self.margin_m = margin_m
        ml = int(margin_m / M_PER_UDEG) + 2
        self.box_lat0 = array("i", [0] * max(n - 1, 0))
        self.box_lat1 = array("i", [0] * max(n - 1, 0))
        self.box_lon0 = array("i", [0] * max(n - 1, 0))
        self.box_lon1 = array("i", [0] * max(n - 1, 0))
        for i in range(n - 1):
            a, b = self.lat[i], self.lat[i + 1]
            d = dlon(self.lon[i + 1], self.lon[i])
            mlon = _lon_margin(margin_m, a, b)
            self.box_lat0[i] = min(a, b) - ml
            self.box_lat1[i] = max(a, b) + ml
            # relative to the segment's first vertex
            self.box_lon0[i] = min(0, d) - mlon
            self.box_lon1[i] = max(0, d) + mlon

    def _segment_m(self, i, lat, lon):
        k = self.kx[i]
        la = self.lat[i]
        lo = self.lon[i]
        bx = dlon(self.lon[i + 1], lo) * k
        by = (self.lat[i + 1] - la) * M_PER_UDEG
        px = dlon(lon, lo) * k
        py = (lat - la) * M_PER_UDEG
        L2 = bx * bx + by * by
        t = 0.0
        if L2 > 0:
            t = (px * bx + py * by) / L2
            if t < 0:
                t = 0.0
            elif t > 1:
                t = 1.0
        ex = px - t * bx
        ey = py - t * by
        return math.sqrt(ex * ex + ey * ey)

    def distance_m(self, lat, lon):
        """Distance in metres to the nearest point of the route."""
        if self.n == 1:
            return distance_m(lat, lon, self.lat[0], self.lon[0])
        best = -1.0
        for i in range(self.n - 1):
            d = self._segment_m(i, lat, lon)
            if best < 0 or d < best:
                best = d
        return best

    def within(self, lat, lon, d_m):
        """Is the point at most d_m metres from the route?  d_m must not
        exceed the margin the polyline was built with."""
        if d_m > self.margin_m or self.n < 2:
            return self.distance_m(lat, lon) <= d_m
        for i in range(self.n - 1):
            if lat < self.box_lat0[i] or lat > self.box_lat1[i]:
                continue
            x = dlon(lon, self.lon[i])
            if x < self.box_lon0[i] or x > self.box_lon1[i]:
                continue
            if self._segment_m(i, lat, lon) <= d_m:
                return True
        return False

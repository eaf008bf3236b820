"""Geometry for geofences and corridors (firmware/device/geo.py) against
shapely and haversine.

- distance_m against haversine on the same sphere: the error bounds that
  docs/mobile.md quotes;
- Circle.contains against haversine <= radius; Polygon.contains against
  shapely in the lon/lat plane (inside an affine image is inside);
  Polyline distance and within() against shapely in each segment's local
  plane, computed here in double precision, independently;
- the same cases with every float a 32-bit one (NumPy float32 scalars in
  place of the ESP32/RP2040 MicroPython floats): answers within 5 cm;
- the same cases under the MicroPython VM: the same answers as CPython.

A point closer to a shape's boundary than the tolerance may go either way
and is not counted.
"""

import importlib.util
import math
import random
import shutil
import sys

import numpy as np
import pytest
import shapely
from hypothesis import given, settings, strategies as st
from shapely.geometry import LineString, Point
from shapely.geometry import Polygon as SPolygon

from firmware import DEVICE_DIR
from tests import mpy_runner

if DEVICE_DIR not in sys.path:
    sys.path.append(DEVICE_DIR)

import geo  # noqa: E402

R = geo.R_M


def haversine(lat1, lon1, lat2, lon2):
    p1, p2 = math.radians(lat1 / 1e6), math.radians(lat2 / 1e6)
    dl = math.radians(((lon2 - lon1 + 180e6) % 360e6 - 180e6) / 1e6)
    h = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * R * math.asin(math.sqrt(h))


def offset(lat, lon, north_m, east_m):
    """A point north_m/east_m metres from (lat, lon), udeg (approximate:
    only used to place test points)."""
    la = lat + int(north_m / (R * math.pi / 180e6))
    lo = lon + int(east_m / (R * math.pi / 180e6 * math.cos(math.radians(la / 1e6))))
    return la, (lo + 180_000_000) % 360_000_000 - 180_000_000


def centre(rng):
    return rng.randint(-70_000_000, 70_000_000), rng.randint(-179_000_000, 179_000_000)


# --- cases, each with the oracle's answer ------------------------------------------------

def circle_case(rng):
    lat, lon = centre(rng)
    r = rng.choice([25, 100, 250, 1000, 3000]) * rng.uniform(0.5, 1.5)
    plat, plon = offset(lat, lon, rng.uniform(-2, 2) * r, rng.uniform(-2, 2) * r)
    d = haversine(lat, lon, plat, plon)
    tol = 0.01 + 2e-6 * r  # the equirectangular error at this radius, with margin
    want = None if abs(d - r) <= tol else d <= r
    return {"op": "circle", "c": [lat, lon, r], "p": [plat, plon]}, want


def star_polygon(rng):
    """A simple (star-shaped) polygon of 3..24 vertices around a centre."""
    lat, lon = centre(rng)
    size = rng.choice([50, 200, 1000, 5000])
    n = rng.randint(3, 24)
    angles = sorted(rng.uniform(0, 2 * math.pi) for _ in range(n))
    pts = []
    for a in angles:
        rr = size * rng.uniform(0.2, 1.0)
        pts.append(offset(lat, lon, rr * math.cos(a), rr * math.sin(a)))
    return pts, size


def polygon_case(rng):
    pts, size = star_polygon(rng)
    shape = SPolygon([(lo, la) for la, lo in pts])
    if not shape.is_valid:
        return None, None
    if rng.random() < 0.3:
        la, lo = rng.choice(pts)  # on a vertex, or next to one
        p = (la + rng.randint(-2, 2), lo + rng.randint(-2, 2))
    else:
        p = offset(pts[0][0], pts[0][1], rng.uniform(-2, 2) * size, rng.uniform(-2, 2) * size)
    pt = Point(p[1], p[0])
    want = None if shape.boundary.distance(pt) == 0 else shape.contains(pt)
    return {"op": "polygon", "pts": [list(x) for x in pts], "p": list(p)}, want


def route(rng):
    lat, lon = centre(rng)
    pts = [(lat, lon)]
    for _ in range(rng.randint(1, 12)):
        seg = rng.choice([30, 200, 800, 3000])
        a = rng.uniform(0, 2 * math.pi)
        pts.append(offset(pts[-1][0], pts[-1][1], seg * math.cos(a), seg * math.sin(a)))
    return pts


def plane_distance(pts, plat, plon):
    """The oracle: shapely, per segment, in the segment's plane (origin its
    first vertex, scale at its mean latitude), double precision."""
    best = None
    m = R * math.pi / 180e6
    for (la, lo), (lb, lob) in zip(pts, pts[1:]):
        k = m * math.cos(math.radians(((la + lb) // 2) / 1e6))

        def xy(a, o):
            return (((o - lo + 180e6) % 360e6 - 180e6) * k, (a - la) * m)

        d = LineString([xy(la, lo), xy(lb, lob)]).distance(Point(xy(plat, plon)))
        best = d if best is None else min(best, d)
    return best


def corridor_case(rng):
    pts = route(rng)
    half = rng.choice([20, 50, 150, 400])
    la, lo = rng.choice(pts)
    p = offset(la, lo, rng.uniform(-3, 3) * half, rng.uniform(-3, 3) * half)
    d = plane_distance(pts, *p)
    tol = 0.01 + 1e-6 * d
    within = None if abs(d - half) <= tol else d <= half
    return {"op": "corridor", "pts": [list(x) for x in pts], "p": list(p), "half": half,
            "margin": 1.5 * half}, (d, within)


# One answer per case: the same source runs here (with geo, or its float32
# twin) and in the VM driver below.
HANDLE = r'''
def handle(c, geo):
    op = c["op"]
    la, lo = c["p"]
    if op == "circle":
        return geo.Circle(c["c"][0], c["c"][1], c["c"][2]).contains(la, lo)
    if op == "polygon":
        return geo.Polygon(c["pts"]).contains(la, lo)
    line = geo.Polyline(c["pts"], c["margin"])
    return [line.distance_m(la, lo), line.within(la, lo, c["half"])]
'''
_NS = {}
exec(HANDLE, _NS)


def run(g, case):
    """Our answer for a case, with module `g` (geo, or its float32 twin)."""
    return _NS["handle"](case, g)


def check(case, want, got, dist_tol=None):
    if case["op"] == "corridor":
        d, within = want
        tol = dist_tol if dist_tol is not None else 0.005 + 1e-6 * d
        assert abs(got[0] - d) <= tol, (case, got, d)
        if within is not None:
            assert got[1] == within, (case, got, d)
    elif want is not None:
        assert bool(got) == want, case


# --- CPython --------------------------------------------------------------------------------

@pytest.mark.parametrize("limit_m, bound_m", [(1000, 0.0001), (10000, 0.01), (20000, 0.07),
                                              (50000, 1.2)])
def test_distance_against_haversine(limit_m, bound_m):
    """The bounds docs/mobile.md quotes, at latitudes up to 70 degrees."""
    rng = random.Random(limit_m)
    worst = 0.0
    for _ in range(5000):
        lat, lon = centre(rng)
        a = rng.uniform(0, 2 * math.pi)
        d = rng.uniform(0, limit_m)
        plat, plon = offset(lat, lon, d * math.cos(a), d * math.sin(a))
        worst = max(worst, abs(geo.distance_m(lat, lon, plat, plon)
                               - haversine(lat, lon, plat, plon)))
    assert worst <= bound_m


@settings(max_examples=400)
@given(st.randoms(use_true_random=False))
def test_circle_against_haversine(rng):
    case, want = circle_case(rng)
    check(case, want, run(geo, case))


@settings(max_examples=400)
@given(st.randoms(use_true_random=False))
def test_polygon_against_shapely(rng):
    case, want = polygon_case(rng)
    if case is not None:
        check(case, want, run(geo, case))


@settings(max_examples=400)
@given(st.randoms(use_true_random=False))
def test_corridor_against_shapely(rng):
    case, want = corridor_case(rng)
    check(case, want, run(geo, case))


def test_polygon_is_exact_on_a_grid():
    """Integer arithmetic: every point of a grid around a concave polygon
    is classified as shapely classifies it (points on edges excepted)."""
    pts = [(0, 0), (0, 400), (400, 400), (400, 300), (100, 300), (100, 100), (400, 100),
           (400, 0)]
    pts = [(52_000_000 + a, 4_000_000 + b) for a, b in pts]  # a "C" shape
    poly = geo.Polygon(pts)
    shape = SPolygon([(lo, la) for la, lo in pts])
    for la in range(52_000_000 - 10, 52_000_000 + 411, 10):
        for lo in range(4_000_000 - 10, 4_000_000 + 411, 10):
            pt = Point(lo, la)
            if shape.boundary.distance(pt) == 0:
                continue
            assert poly.contains(la, lo) == shape.contains(pt), (la, lo)


def test_across_the_antimeridian():
    c = geo.Circle(-17_000_000, 179_999_000, 500)  # Fiji
    assert c.contains(-17_000_000, -179_998_000)  # 0.003 degrees east, across 180
    assert not c.contains(-17_000_000, -179_990_000)
    line = geo.Polyline([(-17_000_000, 179_990_000), (-17_000_000, -179_990_000)], 100)
    assert line.within(-17_000_500, 179_999_990, 100)
    assert 50 < line.distance_m(-17_000_500, 179_999_990) < 60


@pytest.mark.parametrize("deg, want", [(52.3702, 52370200), (-4.8952, -4895200),
                                       (179.999999, 179999999), (-0.0000004, 0),
                                       (-0.0000006, -1), (0, 0), (45, 45000000)])
def test_udeg_rounds(deg, want):
    assert geo.udeg(deg) == want


# --- 32-bit floats -----------------------------------------------------------------------------

class _Math32:
    """math for float32 scalars: what a single-precision port computes."""
    pi = np.float32(math.pi)

    @staticmethod
    def cos(x):
        return np.float32(np.cos(np.float32(x)))

    @staticmethod
    def sqrt(x):
        return np.float32(np.sqrt(np.float32(x)))


def geo32():
    spec = importlib.util.spec_from_file_location("geo32", DEVICE_DIR + "/geo.py")
    g = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(g)
    g.math = _Math32
    g.R_M = np.float32(geo.R_M)
    g.M_PER_UDEG = np.float32(geo.M_PER_UDEG)
    g._RAD_PER_UDEG = np.float32(geo._RAD_PER_UDEG)
    return g


def test_single_precision_floats_keep_centimetres():
    """Every case again with 32-bit floats throughout: circle and polygon
    answers unchanged away from the boundary (5 cm), corridor distances
    within 5 cm of the double-precision oracle."""
    g = geo32()
    assert isinstance(g.distance_m(52_000_000, 4_000_000, 52_001_000, 4_001_000), np.float32)
    rng = random.Random(32)
    n = 0
    for _ in range(600):
        for make in (circle_case, polygon_case, corridor_case):
            case, want = make(rng)
            if case is None:
                continue
            if case["op"] == "circle":
                d = haversine(case["c"][0], case["c"][1], *case["p"])
                if abs(d - case["c"][2]) <= 0.05:
                    continue
            if case["op"] == "corridor":
                d, _ = want
                if abs(d - case["half"]) <= 0.05:
                    want = (d, None)
            check(case, want, run(g, case), dist_tol=0.05)
            n += 1
    assert n > 1500


# --- under the MicroPython VM -------------------------------------------------------------------

DRIVER = r'''
import sys
import json
import gc
import geo
''' + HANDLE + r'''

while True:
    line = sys.stdin.readline()
    if not line:
        break
    try:
        res = {"r": handle(json.loads(line), geo)}
    except Exception as e:
        res = {"crash": "%s: %s" % (type(e).__name__, e)}
    print(json.dumps(res))
    gc.collect()
'''


@pytest.mark.micropython
@pytest.mark.skipif(not mpy_runner.available(), reason="micropython VM not installed")
def test_geometry_under_micropython_64k(tmp_path):
    rng = random.Random(64)
    cases = []
    for _ in range(300):
        for make in (circle_case, polygon_case, corridor_case):
            case, want = make(rng)
            if case is not None:
                cases.append((case, want))
    d = tmp_path / "dev"
    d.mkdir()
    for m in ("fwutil", "geo"):
        shutil.copy(DEVICE_DIR + "/%s.py" % m, d / ("%s.py" % m))
    out = mpy_runner.run_driver(DRIVER, [c for c, _ in cases], heapsize="64k",
                                precompiled=True, extra_path=[d])
    for (case, want), got in zip(cases, out):
        assert "crash" not in got, (case, got)
        check(case, want, got["r"])
        ours = run(geo, case)
        if case["op"] == "corridor":
            assert got["r"][1] == ours[1] and abs(got["r"][0] - ours[0]) < 1e-6
        else:
            assert got["r"] == ours


def test_shapely_is_the_oracle_here():
    """Guard: the oracle is really shapely 2 (the vectorised predicates)."""
    assert int(shapely.__version__.split(".")[0]) >= 2

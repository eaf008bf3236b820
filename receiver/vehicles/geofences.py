"""Geofences, route corridors and rule settings per account, from the
receiver config's GeoJSON file ([vehicles] geofences; examples/geofences.geojson).

One FeatureCollection; each Feature names its account(s) and what it is in
its properties:

| ``kind``    | geometry          | properties                                         |
| ----------- | ----------------- | -------------------------------------------------- |
| ``allowed`` | Point             | ``name``, ``radius_m``: a depot, a customer's site  |
| ``allowed`` | Polygon           | ``name`` (one ring, no holes)                      |
| ``corridor``| LineString        | ``name``, ``width_m``, ``exit_after_s``, ``hysteresis_m`` |
| ``rules``   | null              | the vehicle section's settings: ``stop_max_s``, ``stopped_kmh``, ``moving_kmh``, ``max_hdop``, ``position_hold_s`` |

``account`` is an account number (a string) or a list of them (a corridor
several vans drive).  Coordinates are GeoJSON's, [longitude, latitude].

Each account's features become the firmware's ``vehicle`` config section
and go through the firmware's own validator (``vehicle_config.validate``,
the checks and bounds a unit applies at boot), so what the receiver checks
is what a unit would accept.  Every mistake is reported with the feature it
is in ("feature 3 (account 3001, allowed 'depot'): radius_m: expected whole
metres 10..50000, got 5"), all of them at once, and the receiver does not
start with a broken file (receiver.config).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from receiver.vehicles.fw import vehicle_config

KINDS = ("allowed", "corridor", "rules")
# The vehicle section's keys a "rules" feature may set (the rest belong to
# the unit alone: doors, ignition schedule, GNSS loss, report policy).
RULE_KEYS = ("stop_max_s", "stopped_kmh", "moving_kmh", "max_hdop", "position_hold_s")
CORRIDOR_KEYS = ("width_m", "exit_after_s", "hysteresis_m")
# A geofence file bigger than this is not a city's: refused before parsing.
MAX_FILE_BYTES = 16 * 1024 * 1024


class GeofenceError(ValueError):
    """The file cannot be used; the message lists every mistake."""


@dataclass
class Shape:
    """One allowed zone or corridor as the map draws it (GeoJSON)."""

    kind: str
    name: str
    geometry: dict
    radius_m: float | None = None  # a circle's
    width_m: float | None = None  # a corridor's

    def to_json(self) -> dict:
        return {"kind": self.kind, "name": self.name, "geometry": self.geometry,
                "radius_m": self.radius_m, "width_m": self.width_m}


@dataclass
class AccountRules:
    """What the receiver checks for one account: the validated vehicle
    section (vehicle.Vehicle takes it) and the shapes for the map."""

    account: str
    section: dict
    shapes: list = field(default_factory=list)

    @property
    def has_corridor(self) -> bool:
        return self.section.get("corridor") is not None


def load(path: str) -> dict[str, AccountRules]:
    """{account: AccountRules} from the GeoJSON file at ``path``;
    GeofenceError naming every mistake."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise GeofenceError("%s: no such file" % path) from None
    except OSError as e:
        raise GeofenceError("%s: %s" % (path, e.strerror or e)) from None
    if len(raw) > MAX_FILE_BYTES:
        raise GeofenceError("%s: larger than %d bytes" % (path, MAX_FILE_BYTES))
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise GeofenceError("%s: not JSON: %s" % (path, e)) from None
    return parse(doc, path)


def _where(i: int, accounts, kind, name) -> str:
    what = "feature %d" % (i + 1)
    bits = []
    if accounts:
        bits.append("account %s" % ", ".join(accounts))
    if kind:
        bits.append("%s %r" % (kind, name) if name else str(kind))
    return "%s (%s)" % (what, "; ".join(bits)) if bits else what


def _accounts(v) -> list[str] | None:
    if isinstance(v, str) and v:
        return [v]
    if isinstance(v, list) and v and all(isinstance(a, str) and a for a in v):
        return list(v)
    return None


def parse(doc, source: str = "geofences") -> dict[str, AccountRules]:
    """As :func:`load`, from the parsed document."""
    errors: list[str] = []
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection" \
            or not isinstance(doc.get("features"), list):
        raise GeofenceError("%s: expected a GeoJSON FeatureCollection" % source)
    # per account: the vehicle section being built, and which feature each
    # of its parts came from (to name it in an error)
    docs: dict[str, dict] = {}
    origin: dict[str, dict] = {}
    shapes: dict[str, list] = {}
    for i, f in enumerate(doc["features"]):
        if not isinstance(f, dict) or f.get("type") != "Feature":
            errors.append("%s: not a GeoJSON Feature" % _where(i, None, None, None))
            continue
        props = f.get("properties")
        props = props if isinstance(props, dict) else {}
        accounts = _accounts(props.get("account"))
        kind, name = props.get("kind"), props.get("name")
        where = _where(i, accounts, kind, name)
        if accounts is None:
            errors.append("%s: properties.account: give an account number (a string) or a "
                          "list of them" % where)
            continue
        if kind not in KINDS:
            errors.append("%s: properties.kind: expected one of %s, got %r" % (
                where, ", ".join(KINDS), kind))
            continue
        geom = f.get("geometry")
        gtype = geom.get("type") if isinstance(geom, dict) else None
        coords = geom.get("coordinates") if isinstance(geom, dict) else None
        shape_geom: dict = geom if isinstance(geom, dict) else {}
        extra = set(props) - {"account", "kind", "name", "radius_m"} - set(
            CORRIDOR_KEYS if kind == "corridor" else RULE_KEYS if kind == "rules" else ())
        if extra:
            errors.append("%s: properties %s: not known for kind %s" % (
                where, ", ".join(sorted(extra)), kind))
        for a in accounts:
            d = docs.setdefault(a, {"allowed_zones": []})
            o = origin.setdefault(a, {"allowed_zones": []})
            if kind == "allowed":
                if gtype == "Point":
                    z = {"center": coords, "radius_m": props.get("radius_m")}
                elif gtype == "Polygon":
                    if not isinstance(coords, list) or len(coords) != 1:
                        errors.append("%s: a Polygon with exactly one ring (no holes)" % where)
                        continue
                    z = {"polygon": coords[0]}
                    if "radius_m" in props:
                        errors.append("%s: properties.radius_m: only a Point has a radius"
                                      % where)
                else:
                    errors.append("%s: geometry: an allowed zone is a Point (with radius_m) "
                                  "or a Polygon, got %s" % (where, gtype))
                    continue
                if name is not None:
                    z["name"] = name
                d["allowed_zones"].append(z)
                o["allowed_zones"].append(where)
                shapes.setdefault(a, []).append(Shape("allowed", str(name or ""), shape_geom,
                                                      radius_m=props.get("radius_m")))
            elif kind == "corridor":
                if gtype != "LineString":
                    errors.append("%s: geometry: a corridor is a LineString, got %s" % (
                        where, gtype))
                    continue
                if "corridor" in d:
                    errors.append("%s: account %s has a corridor already (%s)" % (
                        where, a, o["corridor"]))
                    continue
                d["corridor"] = dict({k: props[k] for k in CORRIDOR_KEYS if k in props},
                                     line=coords)
                o["corridor"] = where
                shapes.setdefault(a, []).append(Shape("corridor", str(name or ""), shape_geom,
                                                      width_m=props.get("width_m")))
            else:
                if geom is not None:
                    errors.append("%s: geometry: a rules feature has none (null)" % where)
                for k in RULE_KEYS:
                    if k in props:
                        if k in o:
                            errors.append("%s: %s is set for account %s already (%s)" % (
                                where, k, a, o[k]))
                            continue
                        d[k] = props[k]
                        o[k] = where
    out = {}
    for a, d in docs.items():
        section, errs = vehicle_config.validate(d)
        for e in errs:
            errors.append(_explain(e, origin[a], a))
        if not errs:
            out[a] = AccountRules(a, section, shapes.get(a, []))
    if errors:
        raise GeofenceError("%s: %d mistake%s:\n  %s" % (
            source, len(errors), "" if len(errors) == 1 else "s", "\n  ".join(errors)))
    return out


def _explain(err: str, origin: dict, account: str) -> str:
    """A validator error ("vehicle.allowed_zones[1].radius_m: ...") with
    the feature it came from."""
    path, _, msg = err.partition(": ")
    parts = path.split(".")
    if len(parts) >= 2 and parts[1].startswith("allowed_zones["):
        i = int(parts[1][len("allowed_zones["):-1])
        where = origin["allowed_zones"][i]
        rest = ".".join(parts[2:])
    elif len(parts) >= 2 and parts[1] == "corridor":
        where = origin.get("corridor", "account %s" % account)
        rest = ".".join(parts[2:])
        rest = "coordinates" + rest[len("line"):] if rest.startswith("line") else rest
    else:
        key = parts[1] if len(parts) > 1 else ""
        where = origin.get(key, "account %s" % account)
        rest = ".".join(parts[1:])
    return "%s: %s%s" % (where, rest + ": " if rest else "", msg)

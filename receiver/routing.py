"""Alarm routing: which dispatch centres an alarm goes to, and through which
outputs (examples/routing.toml is the annotated reference).

A city's response runs on three levels: the police station of the site's
area, the district command above it, and the municipal centre.  A routing
file names the centres (each with a level and the outputs that reach it)
and an ordered list of routes; the first route whose regions and classes
match an alarm decides, per level, which centre gets it.  A level a route
leaves out is not notified.  An alarm no route matches stays in the
operator queue unrouted (and is logged): the operator still sees it.

The router is pure (no I/O): the receiver asks it at ingest, writes the
decision on the alarm (``routed_to``) and queues one outbox row per
(centre, output) in the same transaction as the event.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from protocol import dc09
from protocol.errors import LocalProtocolError

_LOGGER = logging.getLogger(__name__)

LEVELS = ("police_station", "district_command", "municipal_center")
OUTPUT_TYPES = ("jsonl", "webhook", "dc09")
# Keys of a "dc09" output besides address/timeout_s/retry_max_s
# (receiver.dc09_output checks their values).
DC09_OUTPUT_KEYS = ("account", "key", "key_format", "line", "receiver")


class RoutingError(ValueError):
    """The routing configuration is inconsistent."""


@dataclass(frozen=True)
class OutputSpec:
    name: str
    type: str  # 'jsonl' or 'webhook'
    host: str = ""
    port: int = 0
    url: str = ""
    timeout_s: float = 10.0
    retry_max_s: float = 60.0  # cap of the retry backoff
    # type "dc09": {"account", "key" (bytes or None), "line", "receiver"}
    dc09: dict | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Center:
    id: str
    level: str
    name: str
    outputs: tuple = ()


@dataclass(frozen=True)
class Route:
    regions: tuple
    classes: tuple
    centers: dict = field(default_factory=dict)  # level -> center id

    def matches(self, region: str, event_class: str) -> bool:
        return (("*" in self.regions or region in self.regions)
                and ("*" in self.classes or event_class in self.classes))


@dataclass
class Decision:
    routed_to: dict  # level -> center id
    deliveries: list  # [(output name, level, Center)]


class Router:
    def __init__(self, centers: dict | None = None, routes: list | None = None,
                 outputs: dict | None = None):
        self.centers: dict[str, Center] = centers or {}
        self.routes: list[Route] = routes or []
        self.outputs: dict[str, OutputSpec] = outputs or {}

    def route(self, region: str, event_class: str) -> Decision:
        for r in self.routes:
            if r.matches(region, event_class):
                deliveries = []
                for level in LEVELS:
                    cid = r.centers.get(level)
                    if cid is None:
                        continue
                    c = self.centers[cid]
                    for out in c.outputs:
                        deliveries.append((out, level, c))
                return Decision({lv: r.centers[lv] for lv in LEVELS if lv in r.centers},
                                deliveries)
        return Decision({}, [])


def _str_list(v, where) -> tuple:
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not v or not all(isinstance(x, str) and x for x in v):
        raise RoutingError("%s must be a non-empty list of strings" % where)
    return tuple(v)


def _addr(v, where) -> tuple[str, int]:
    if not isinstance(v, str) or ":" not in v:
        raise RoutingError("%s must be 'host:port'" % where)
    host, _, port = v.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise RoutingError("%s: bad port in %r" % (where, v))
    return host.strip("[]"), int(port)


def dc09_options(o: dict) -> dict:
    """The DC-09 part of an output's configuration (receiver.dc09_output),
    checked.  Raises
    ValueError with a message naming the key."""
    account = o.get("account")
    if account is not None:
        if not isinstance(account, str) or not 3 <= len(account) <= 16 or any(
                c not in "0123456789ABCDEFabcdef" for c in account):
            raise ValueError("account must be 3-16 hex digits")
        account = account.upper()
    key = None
    if o.get("key"):
        try:
            key = dc09.parse_key(o["key"], o.get("key_format", "hex"))
        except LocalProtocolError as e:
            raise ValueError("key: %s" % e) from None
    elif "key_format" in o and o["key_format"] not in ("hex", "ascii"):
        raise ValueError("key_format must be 'hex' or 'ascii'")
    out = {"account": account, "key": key}
    for name, default in (("line", "0"), ("receiver", None)):
        v = o.get(name, default)
        if v is not None and (not isinstance(v, str) or not 1 <= len(v) <= 6 or any(
                c not in "0123456789ABCDEFabcdef" for c in v)):
            raise ValueError("%s must be 1-6 hex digits" % name)
        out[name] = v
    return out


def parse(doc: dict, known_classes=None) -> Router:
    """Build a Router from the parsed TOML of a routing file."""
    unknown = set(doc) - {"outputs", "centers", "routes"}
    if unknown:
        raise RoutingError("unknown routing section(s): %s" % ", ".join(sorted(unknown)))
    outputs = {name: _output(name, o) for name, o in (doc.get("outputs") or {}).items()}
    centers = {cid: _center(cid, c, outputs) for cid, c in (doc.get("centers") or {}).items()}
    routes = [_route("routes[%d]" % i, r, centers, known_classes)
              for i, r in enumerate(doc.get("routes") or [])]
    return Router(centers, routes, outputs)


def _table(v, where: str, keys) -> dict:
    """``v`` checked to be a table with no key outside ``keys``."""
    if not isinstance(v, dict):
        raise RoutingError("%s must be a table" % where)
    bad = set(v) - set(keys)
    if bad:
        raise RoutingError("%s: unknown key(s) %s" % (where, ", ".join(sorted(bad))))
    return v


def _output(name: str, o) -> OutputSpec:
    where = "outputs.%s" % name
    keys = {"type", "address", "url", "timeout_s", "retry_max_s"}
    if isinstance(o, dict) and o.get("type") == "dc09":
        keys |= set(DC09_OUTPUT_KEYS)
    o = _table(o, where, keys)
    t = o.get("type")
    if t not in OUTPUT_TYPES:
        raise RoutingError("%s.type must be one of %s" % (where, ", ".join(OUTPUT_TYPES)))
    timeout = o.get("timeout_s", 10.0)
    if not isinstance(timeout, (int, float)) or timeout <= 0:
        raise RoutingError("%s.timeout_s must be a positive number" % where)
    retry = o.get("retry_max_s", 60.0)
    if not isinstance(retry, (int, float)) or retry < 0.5:
        raise RoutingError("%s.retry_max_s must be a number >= 0.5" % where)
    if t in ("jsonl", "dc09"):
        host, port = _addr(o.get("address"), where + ".address")
        dc = None
        if t == "dc09":
            try:
                dc = dc09_options(o)
            except ValueError as e:
                raise RoutingError("%s: %s" % (where, e)) from None
        return OutputSpec(name, t, host=host, port=port, timeout_s=float(timeout),
                          retry_max_s=float(retry), dc09=dc)
    url = o.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise RoutingError("%s.url must be an http(s) URL" % where)
    return OutputSpec(name, t, url=url, timeout_s=float(timeout), retry_max_s=float(retry))


def _center(cid: str, c, outputs: dict) -> Center:
    where = "centers.%s" % cid
    c = _table(c, where, {"level", "name", "outputs"})
    if c.get("level") not in LEVELS:
        raise RoutingError("%s.level must be one of %s" % (where, ", ".join(LEVELS)))
    outs = tuple(c.get("outputs") or ())
    for o in outs:
        if o not in outputs:
            raise RoutingError("%s: unknown output %r" % (where, o))
    return Center(cid, c["level"], str(c.get("name", cid)), outs)


def _route(where: str, r, centers: dict, known_classes) -> Route:
    r = _table(r, where, {"regions", "classes", *LEVELS})
    regions = _str_list(r.get("regions", ["*"]), where + ".regions")
    classes = _str_list(r.get("classes", ["*"]), where + ".classes")
    if known_classes is not None:
        for c in classes:
            if c != "*" and c not in known_classes:
                raise RoutingError("%s: unknown event class %r (known: %s)" % (
                    where, c, ", ".join(known_classes)))
    lv = {}
    for level in LEVELS:
        cid = r.get(level)
        if cid is None:
            continue
        if cid not in centers:
            raise RoutingError("%s.%s: unknown centre %r" % (where, level, cid))
        if centers[cid].level != level:
            raise RoutingError("%s.%s: centre %r is a %s" % (
                where, level, cid, centers[cid].level))
        lv[level] = cid
    if not lv:
        raise RoutingError("%s names no centre" % where)
    return Route(regions, classes, lv)

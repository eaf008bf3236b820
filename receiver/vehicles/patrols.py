"""Patrol cars (sans-I/O): which available patrols are nearest an alarm,
when a dispatched one is on scene, and the audit sentences.

A patrol car is a vehicle unit of kind ``patrol`` (docs/mobile.md).  Its
status (available, dispatched, on scene) is set by the console, by its
crew at the keypad (Contact ID 470, 471, 472) or by the receiver
(dispatched, and on scene when it arrives); the store keeps the latest
(receiver.store.Store.patrol_statuses).

- **Where the alarm is**: the position the alarm's event carried (a van's
  hold-up: where the van was), else, for a vehicle unit, its last known
  position (its newest track point: a hold-up sent without a fix, or over
  DC-09 without [X]/[Y], is still on the map and gets a patrol), else the
  site's coordinates (the account's ``site_lat``/``site_lon``); an alarm
  with none of these gets no proposal.
- **Nearest**: by straight-line distance from the patrol's latest position
  (firmware/device/geo.py's distance on the sphere, the units' own), not by
  road: a river or a one-way street can make the second nearest the
  quicker, which the operator sees on the map and judges.  Available
  patrols only, nearest first, each with how old its position is.
- **On scene**: a dispatched patrol's first current fix (not a last known
  position) within the radius of where it was sent (the site's
  ``site_radius_m``, else [vehicles] arrival_radius_m).  The time to
  arrive is from the dispatch to that fix.
"""

from __future__ import annotations

from dataclasses import dataclass

from receiver.records import PATROL_STATUS_WORDS, Dispatch, TrackPoint
from receiver.vehicles.fw import geo

# Patrols proposed for one alarm at most.
MAX_PROPOSALS = 5


def distance_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Straight-line metres between two (lat, lon) in degrees (the units'
    own geometry: geo.distance_m on micro-degrees)."""
    return geo.distance_m(round(a[0] * 1e6), round(a[1] * 1e6), round(b[0] * 1e6),
                          round(b[1] * 1e6))


@dataclass(frozen=True)
class Target:
    """Where a patrol is sent for an alarm: ``source`` "alarm position",
    LAST_KNOWN or "site"; ``radius_m`` the arrival radius; ``at`` when a
    last known position was fixed (else None)."""

    lat: float
    lon: float
    radius_m: float
    source: str
    at: float | None = None

    @property
    def point(self) -> tuple[float, float]:
        return (self.lat, self.lon)

    def to_json(self) -> dict:
        d = {"lat": self.lat, "lon": self.lon, "radius_m": self.radius_m,
             "source": self.source}
        if self.at is not None:
            d["at"] = self.at
        return d


LAST_KNOWN = "vehicle's last known position"


def target_of(event_position, site: tuple[float, float] | None, site_radius_m: int | None,
              default_radius_m: float, last: TrackPoint | None = None) -> Target | None:
    """Where an alarm is: its event's position (records.Position), else a
    vehicle unit's ``last`` track point, else the site (lat, lon); None when
    none is known."""
    radius = float(site_radius_m or default_radius_m)
    if event_position is not None:
        return Target(event_position.lat, event_position.lon, radius, "alarm position")
    if last is not None:
        return Target(last.position.lat, last.position.lon, radius, LAST_KNOWN, last.at)
    if site is not None:
        return Target(site[0], site[1], radius, "site")
    return None


@dataclass(frozen=True)
class Patrol:
    """A patrol as the proposal sees it: its account, name, status (None:
    never set) and latest track point (None: none yet)."""

    account: str
    name: str
    status: str | None
    last: TrackPoint | None


@dataclass(frozen=True)
class Proposal:
    account: str
    name: str
    distance_m: float
    position_age_s: float
    lat: float
    lon: float

    def to_json(self) -> dict:
        return {"account": self.account, "name": self.name,
                "distance_m": round(self.distance_m, 1),
                "position_age_s": round(self.position_age_s, 1), "lat": self.lat,
                "lon": self.lon, "text": proposal_text(self)}


def nearest(target: Target, patrols: list[Patrol], now: float,
            n: int = MAX_PROPOSALS) -> list[Proposal]:
    """The ``n`` available patrols nearest ``target`` in a straight line,
    nearest first (ties by account); patrols without a position are not
    proposed (nobody knows where they are)."""
    out = []
    for p in patrols:
        if p.status != "available" or p.last is None:
            continue
        pos = p.last.position
        out.append(Proposal(p.account, p.name, distance_m((pos.lat, pos.lon), target.point),
                            max(0.0, now - p.last.at), pos.lat, pos.lon))
    out.sort(key=lambda x: (x.distance_m, x.account))
    return out[:n]


def arrived(d: Dispatch, tp: TrackPoint) -> bool:
    """Is this track point of the dispatched patrol on scene: a current fix
    (not a last known position) within the dispatch's radius, after it?"""
    p = tp.position
    if tp.account != d.patrol or p.valid is False or tp.at < d.dispatched_at:
        return False
    return distance_m((p.lat, p.lon), (d.target_lat, d.target_lon)) <= d.radius_m


# -- words ----------------------------------------------------------------------------


def km_text(m: float) -> str:
    """'850 m', '1.2 km'."""
    return "%d m" % round(m) if m < 1000 else "%.1f km" % (m / 1000)


def elapsed_text(s: float) -> str:
    """'45 s', '4 min 12 s', '1 h 3 min': a time to arrive."""
    s = max(0, int(round(s)))
    if s < 60:
        return "%d s" % s
    if s < 3600:
        return "%d min %d s" % (s // 60, s % 60) if s % 60 else "%d min" % (s // 60)
    return "%d h %d min" % (s // 3600, s % 3600 // 60)


def patrol_label(account: str, name: str) -> str:
    return "Patrol %s (%s)" % (account, name) if name else "Patrol %s" % account


def proposal_text(p: Proposal) -> str:
    return "%s: %s away in a straight line, position %s old" % (
        patrol_label(p.account, p.name), km_text(p.distance_m), elapsed_text(p.position_age_s))


def dispatch_sentence(account: str, name: str, by: str, target: Target,
                      distance: float | None) -> str:
    """The alarm's audit row for a dispatch."""
    where = {"alarm position": "the alarm's position",
             LAST_KNOWN: "the vehicle's last known position"}.get(target.source, "the site")
    far = ("%s away in a straight line" % km_text(distance) if distance is not None
           else "position unknown")
    return "%s dispatched by %s to %s (%s)." % (patrol_label(account, name), by, where, far)


def arrival_sentence(account: str, name: str, d: Dispatch, at: float) -> str:
    """The alarm's audit row for an arrival: the time to arrive."""
    return "%s on scene %s after dispatch (within %d m)." % (
        patrol_label(account, name), elapsed_text(at - d.dispatched_at), round(d.radius_m))


def status_words(status: str | None) -> str:
    return "not set" if status is None else PATROL_STATUS_WORDS.get(status, status)

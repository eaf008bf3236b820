"""What a site looks like now, derived from its recent events (pure: no
I/O; events are the store's dicts, oldest first).

Contact ID (SIA DC-05) reports changes, not states, so the state of a
zone or partition is the last report about it:

- a zone: the last event carrying that zone number (only codes whose ZZZ
  field is a zone, ``protocol.contactid.number_kind``: a user number,
  open/close and access, or a path number, 350-357, is skipped).  A new
  (qualifier 1) or still-present (6) event of an alarm class puts it in
  that class's state (``alarm:burglary``, ``trouble``, ``tamper`` ...), a
  bypass (570-577) marks it ``bypassed``, a restore (3) returns it to
  ``normal``.  A zone never reported is ``unknown``.
- a partition: open/close reports (400-409, 441; DC-05: qualifier 1 =
  opening = disarmed, 3 = closing = armed; 441 = armed stay).
- troubles: open conditions whose last report is new or still present,
  keyed by (code, partition, zone): trouble and tamper alarms and codes the
  receiver's alarm policy makes a ``status`` (``receiver.alarms``); an
  ``event``-only code (305 "System reset") is never one.  The receiver's
  own path-supervision events (350 with ``source = 'supervision'``, zone =
  path) are troubles like the others.

The derivation is only as good as the window of events it is given; the
site view says how far back that window goes.
"""

from __future__ import annotations

from protocol import contactid
from receiver import alarms as _alarms

_BYPASS = range(570, 578)
_OPEN_CLOSE = set(range(400, 410)) | {441}


def _zone_state(e: dict) -> str | None:
    code, q, cls = e["code"], e["qualifier"], e["event_class"]
    if code in _BYPASS:
        return "bypassed" if q in (1, 6) else "normal"
    if q == 3:
        return "normal"
    if cls in ("holdup", "fire", "medical", "burglary", "environmental"):
        return "alarm:" + cls
    if cls in ("trouble", "tamper"):
        return cls
    if cls == "test":
        return "tested"
    return None  # status events say nothing about a zone's condition


def _partition_state(e: dict) -> str | None:
    code, q = e["code"], e["qualifier"]
    if code in _OPEN_CLOSE:
        if q == 1:
            return "disarmed"
        if q == 3:
            return "armed stay" if code == 441 else "armed"
    return None


class SiteState:
    """Feed a site's events oldest first, then take a :meth:`snapshot`.
    Memory is one entry per zone, partition and open trouble, however many
    events go through."""

    def __init__(self, policy: _alarms.AlarmPolicy = _alarms.DEFAULT_POLICY):
        self.policy = policy
        self.zones: dict[int, dict] = {}
        self.partitions: dict[int, dict] = {}
        self.troubles: dict[tuple, dict] = {}
        self.events = 0
        self.first_at: float | None = None

    def feed(self, e: dict) -> None:
        self.events += 1
        if self.first_at is None:
            self.first_at = e["received_at"]
        if e["zone"] and contactid.number_kind(e["code"]) == contactid.ZONE:
            s = _zone_state(e)
            if s is not None:
                self.zones[e["zone"]] = {"state": s, "since": e["received_at"],
                                         "code": e["code"], "description": e["description"]}
        if e["partition"]:
            s = _partition_state(e)
            if s is not None:
                self.partitions[e["partition"]] = {
                    "state": s, "since": e["received_at"], "code": e["code"],
                    "description": e["description"]}
        if self.policy.is_condition(e["code"], e["event_class"]):
            key = (e["code"], e["partition"], e["zone"], e.get("source") or "panel")
            if e["qualifier"] in (1, 6):
                self.troubles[key] = {
                    "code": e["code"], "partition": e["partition"], "zone": e["zone"],
                    "source": key[3], "event_class": e["event_class"],
                    "description": e["description"], "since": e["received_at"],
                    "event_id": e["id"]}
            else:
                self.troubles.pop(key, None)

    def snapshot(self, zones: dict, partitions: dict) -> dict:
        """{"zones": [...], "partitions": [...], "troubles": [...]} with the
        account's zone/partition names ({"3": "vault door"}); every named
        zone and partition is listed, reported or not."""
        unknown = {"state": "unknown", "since": None, "code": None, "description": ""}
        zone_rows = [dict(self.zones.get(z, unknown), zone=z, name=zones.get(str(z), ""))
                     for z in sorted({int(z) for z in zones} | set(self.zones))]
        part_rows = [dict(self.partitions.get(p, unknown), partition=p,
                          name=partitions.get(str(p), ""))
                     for p in sorted({int(p) for p in partitions} | set(self.partitions))]
        return {"zones": zone_rows, "partitions": part_rows,
                "troubles": sorted(self.troubles.values(), key=lambda t: t["since"])}


def site_state(events, zones: dict, partitions: dict,
               policy: _alarms.AlarmPolicy = _alarms.DEFAULT_POLICY) -> dict:
    """:class:`SiteState` over ``events`` (oldest first), snapshotted."""
    st = SiteState(policy)
    for e in events:
        st.feed(e)
    return st.snapshot(zones, partitions)

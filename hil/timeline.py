"""One timeline per scenario: what was done to the panel, what crossed the
link, what the receiver stored, and the latencies measured between them.

Every part of the harness writes here (the link, the target drivers, the
receiver adapter, the scenario itself), so a report can show a scenario as
one story in time order.  Times are seconds since the timeline was made,
from one monotonic clock; wall-clock time is kept once, at the start.

Invariants:

- Entries are appended as they are observed (a lock serialises writers);
  an entry may carry an earlier time than its neighbours when its source
  reports when it happened (the receiver's commit time), so readers that
  need order use :meth:`Timeline.sorted_entries`.
- The timeline is bounded: past ``max_entries`` the oldest entries are
  dropped and counted in ``dropped`` (a soak test must not eat the host).
- Latencies are *measured and reported*, never asserted on: a scenario
  calls :meth:`Timeline.measure` and the report prints them.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field

# Sources, as the report colours them.
PANEL = "panel"  # what the harness did to the target (inputs, power)
LINK = "link"  # units seen on a fault-injection link
RECEIVER = "receiver"  # what the receiver stored or raised
SCENARIO = "scenario"  # the scenario's own steps and checks

# A long soak on a chatty link produces a few units per second per panel;
# 200,000 entries is hours of that in ~100 MB at worst, and the report
# only renders the tail anyway.
MAX_ENTRIES = 200_000


@dataclass
class Entry:
    t: float  # seconds since the timeline started
    source: str
    kind: str
    detail: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"t": round(self.t, 6), "source": self.source, "kind": self.kind,
                "detail": self.detail}


class Timeline:
    def __init__(self, name: str = "", clock=time.monotonic, max_entries: int = MAX_ENTRIES):
        self.name = name
        self._clock = clock
        self.t0 = clock()
        self.wall0 = time.time()
        self.entries: deque[Entry] = deque(maxlen=max_entries)
        self.dropped = 0
        self.latencies: list[dict] = []
        self.seed = None  # the link fault seed, when a link was used
        self._lock = threading.Lock()  # serial reader threads record too

    def now(self) -> float:
        return self._clock() - self.t0

    def record(self, source: str, kind: str, at_t: float | None = None, **detail) -> Entry:
        """Append an entry at now, or at `at_t` (timeline seconds) when the
        source knows when it happened."""
        with self._lock:
            e = Entry(self.now() if at_t is None else at_t, source, kind, detail)
            if len(self.entries) == self.entries.maxlen:
                self.dropped += 1
            self.entries.append(e)
            return e

    def select(self, source: str | None = None, kind: str | None = None,
               since: float = 0.0, **match) -> list[Entry]:
        """Entries from `source` of `kind` at or after `since` whose detail
        has every key=value in `match`."""
        with self._lock:
            snap = list(self.entries)
        return [e for e in snap
                if (source is None or e.source == source)
                and (kind is None or e.kind == kind)
                and e.t >= since
                and all(e.detail.get(k) == v for k, v in match.items())]

    def sorted_entries(self) -> list[Entry]:
        with self._lock:
            snap = list(self.entries)
        return sorted(snap, key=lambda e: e.t)

    def measure(self, name: str, start: float, end: float, **detail) -> float:
        """Record a latency (seconds) between two timeline times."""
        value = end - start
        with self._lock:
            self.latencies.append({"name": name, "seconds": round(value, 6),
                                   "start": round(start, 6), "end": round(end, 6), **detail})
        return value

    def as_dict(self) -> dict:
        with self._lock:
            return {"name": self.name, "wall0": self.wall0, "dropped": self.dropped,
                    "seed": self.seed,
                    "latencies": list(self.latencies),
                    "entries": [e.as_dict() for e in sorted(self.entries, key=lambda e: e.t)]}

    def dump(self, path) -> None:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.as_dict(), f, indent=1, default=str)

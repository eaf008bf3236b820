"""Prometheus metrics of one Receiver (prometheus-client).

Each Receiver owns its own CollectorRegistry, so tests can run several in
one process; ``--metrics HOST:PORT`` serves it at ``/metrics`` from an
aiohttp app in the receiver's own event loop (no extra thread).  Gauges
that mirror live state (queue depths, connections) are refreshed by the
receiver's housekeeping task and on each scrape.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self):
        r = self.registry = CollectorRegistry()
        p = "guardline_receiver_"
        self.frames = Counter(p + "frames_total", "Frames judged by the session core",
                              ["transport", "result"], registry=r)
        self.events = Counter(p + "events_total", "Events stored (new, not duplicates)",
                              ["protocol", "event_class"], registry=r)
        self.track_points = Counter(p + "track_points_total",
                                    "Vehicle track points stored (new, not copies)",
                                    ["source"], registry=r)
        self.duplicates = Counter(p + "duplicate_events_total",
                                  "Events received again and re-ACKed", registry=r)
        self.naks = Counter(p + "naks_total", "NAKs sent, by reason", ["reason"], registry=r)
        self.security = Counter(p + "security_events_total",
                                "Rejected frames that may be an attack", ["reason"], registry=r)
        self.security_dropped = Counter(p + "security_events_dropped_total",
                                        "Security events not stored (store busy)", registry=r)
        self.supervision = Counter(p + "supervision_changes_total",
                                   "Supervision failures and restores", ["path", "change"],
                                   registry=r)
        self.supervision_failed = Gauge(p + "supervision_failed_paths",
                                        "Paths currently in communication failure", registry=r)
        self.connections = Gauge(p + "connections", "Open connections", ["transport"],
                                 registry=r)
        self.connections_refused = Counter(p + "connections_refused_total",
                                           "Connections closed at once (over the cap)",
                                           ["why"], registry=r)
        self.connections_closed = Counter(p + "connections_closed_total",
                                          "Connections the receiver closed", ["why"],
                                          registry=r)
        self.store_queue = Gauge(p + "store_queue_depth", "Writes queued to the store",
                                 registry=r)
        self.store_healthy = Gauge(p + "store_healthy", "1 when the last commit worked",
                                   registry=r)
        self.outbox_depth = Gauge(p + "outbox_depth", "Undelivered outbox rows", ["output"],
                                  registry=r)
        self.alarms_open = Gauge(p + "alarms_open", "Alarms not yet resolved", ["state"],
                                 registry=r)
        self.commit_seconds = Histogram(
            p + "store_commit_seconds", "Time of one group commit (BEGIN..COMMIT)",
            buckets=(.0005, .001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5), registry=r)
        self.commit_batch = Histogram(
            p + "store_commit_batch_size", "Requests per group commit",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000), registry=r)
        self.ack_seconds = Histogram(
            p + "ack_latency_seconds", "From frame judged to ACK sent (includes the commit)",
            buckets=(.001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5), registry=r)
        self.forwarded = Counter(p + "forwarded_total", "Outbox deliveries",
                                 ["output", "result"], registry=r)

        # labelled children made once: labels() takes a lock and builds its
        # key on every call, and the event path counts per frame and event
        self._children: dict = {}

    def child(self, metric, *labels):
        """``metric.labels(*labels)``, looked up once per label set."""
        key = (metric, labels)
        c = self._children.get(key)
        if c is None:
            c = self._children[key] = metric.labels(*labels)
        return c

    def render(self) -> bytes:
        return generate_latest(self.registry)

"""Panel configurations for tests: a small bank panel with short timers,
and the examples (examples/*.json) pointed at a test receiver.

``TEST_KEY``, ``TEST_SALT`` and ``TEST_DC09_ACCOUNT`` are test values,
never a site's."""

from __future__ import annotations

import json
import os

from firmware import REPO
from firmware.provision import hash_code

TEST_KEY = bytes(range(32))
TEST_SALT = "5a17c0de5a17c0de5a17c0de5a17c0de"
TEST_DC09_ACCOUNT = "12AB"  # tiny_receiver.TinyDc09Receiver's


def code_hash(code: str, salt: str = TEST_SALT) -> str:
    """The config's code_hash for ``code`` (sha256(salt || code))."""
    return hash_code(salt, code)


def scenario_config(rx_port: int, **over) -> dict:
    """A small bank panel for scenario tests: two partitions, short
    timers, one of each interesting zone type, reporting to 127.0.0.1
    ``rx_port`` (TCP primary, UDP backup).  ``over`` replaces top-level
    keys; ``timings`` is merged."""
    cfg = {
        "name": "test panel", "kind": "bank", "account": 4242, "key": TEST_KEY.hex(),
        "code_salt": TEST_SALT,
        "receiver": {"primary": {"type": "tcp", "host": "127.0.0.1", "port": rx_port},
                     "backup": {"type": "udp", "host": "127.0.0.1", "port": rx_port}},
        "timings": {"exit_delay_s": 0, "entry_delay_s": 1, "siren_cutoff_s": 60,
                    "debounce_ms": 50, "scan_ms": 20, "heartbeat_s": 20,
                    "backup_heartbeat_s": 20, "ack_timeout_ms": 400, "max_backoff_ms": 2000,
                    "fail_after": 2, "ac_loss_delay_s": 0, "battery_delay_s": 0,
                    "clock_grace_s": 3600},
        "partitions": [{"id": 1, "name": "lobby"}, {"id": 2, "name": "teller line"}],
        "zones": [
            {"id": 1, "name": "front door", "type": "entry_exit", "partition": 1},
            {"id": 2, "name": "lobby glass", "type": "instant", "partition": 1},
            {"id": 3, "name": "lobby PIR", "type": "follower", "partition": 1},
            {"id": 4, "name": "teller hold-up", "type": "holdup", "partition": 2},
            {"id": 5, "name": "teller panic", "type": "panic", "partition": 2},
            {"id": 6, "name": "lobby smoke", "type": "fire", "partition": 1},
        ],
        "users": [
            {"id": 1, "name": "manager", "code_hash": code_hash("1234"), "authority": "master"},
            {"id": 2, "name": "teller", "code_hash": code_hash("2580"), "authority": "user"},
            {"id": 9, "name": "duress", "code_hash": code_hash("1235"), "authority": "user",
             "duress": True},
        ],
    }
    for k, v in over.items():
        if k == "timings":
            cfg["timings"].update(v)
        else:
            cfg[k] = v
    return cfg


def example_config(name: str, rx_port: int, protocol: str = "native", **timings) -> dict:
    """examples/<name>.json reporting to a test receiver on 127.0.0.1
    ``rx_port`` (both paths), as account 4242 with TEST_KEY; with protocol
    "dc09" as DC-09 account TEST_DC09_ACCOUNT with the same key (AES-256).
    ``timings`` update the example's."""
    with open(os.path.join(REPO, "examples", name + ".json"), encoding="utf-8") as f:
        cfg = json.load(f)
    cfg["account"] = 4242
    cfg["key"] = TEST_KEY.hex()
    for p in ("primary", "backup"):
        cfg["receiver"][p]["host"] = "127.0.0.1"
        cfg["receiver"][p]["port"] = rx_port
    cfg["timings"].update(timings)
    if protocol == "dc09":
        del cfg["account"], cfg["key"]
        cfg["protocol"] = "dc09"
        cfg["dc09"] = {"account": TEST_DC09_ACCOUNT, "key": TEST_KEY.hex(), "line": "1",
                       "receiver_no": "1"}
    return cfg


def van_config(rx_port: int, protocol: str = "native", timings: dict | None = None,
               **report) -> dict:
    """examples/van.json for a test or a bench driving examples/route_city.gpx
    ten times faster: it leaves its corridor 2 s (20 route seconds) after
    it is out, and has no ignition schedule (a test runs at any hour);
    ``timings`` update its timings and ``report`` its report policy."""
    cfg = example_config("van", rx_port, protocol, debounce_ms=50, ac_loss_delay_s=0,
                         **(timings or {}))
    v = cfg["vehicle"]
    v["corridor"]["exit_after_s"] = 2
    del v["ignition_schedule"]
    v["report"].update(report)
    return cfg

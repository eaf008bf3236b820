"""Chaos: fuzz the live receiver (a subprocess, TCP and UDP) with random
and mutated frames from 40 connections for a fixed time while real panels
keep reporting: the server stays up, its memory stays bounded, the real
panels' events are ACKed and stored, and a new panel is served after."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "bench"))

import chaoslib  # noqa: E402

# RSS the receiver may keep after the storm beyond what it had warmed up.
# Per connection it holds a frame buffer (~1.3 KB) and a few counters, and
# security-event storage is rate-limited, so garbage that leaves state
# behind would show as tens of MB after 100,000 frames.
RSS_GROWTH_BOUND_KIB = 48 * 1024
# A hard ceiling on the peak during the storm (the receiver idles at ~50 MB).
RSS_PEAK_BOUND_KIB = 512 * 1024


async def test_fuzzed_live_server_stays_up_bounded_and_serving(tmp_path):
    rep = await chaoslib.fuzz_live(str(tmp_path), seconds=6.0, fuzz_conns=40, good_panels=4,
                                   max_frames=150_000, seed=11)
    print(rep)
    assert rep["alive"] and rep["exit_code"] == 0
    assert rep["frames"] > 5_000 and rep["tcp_connections_opened"] > 100
    assert rep["rss_kib_after"] - rep["rss_kib_warm"] < RSS_GROWTH_BOUND_KIB
    assert rep["rss_kib_peak"] < RSS_PEAK_BOUND_KIB
    assert rep["good_acked_during_fuzz"] > 0
    assert rep["good_acked_not_stored"] == 0
    assert rep["fresh_panel_served"]

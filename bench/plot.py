"""Plots for docs/benchmarks.md from bench/results/*.json (matplotlib,
the ``bench`` extra): receiver throughput and ACK latency against the
number of connections (median of the repeats, bars from min to max), and
the input-to-operator latency distribution; flame graphs (SVG) of py-spy
profiles (bench_receiver.py --profile).

    .venv/bin/python bench/plot.py [--sweep bench/results/receiver_sweep.json]
    .venv/bin/python bench/plot.py --flame bench/results/profiles/rx-after-pipelined-200.txt
"""

from __future__ import annotations

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import benchlib  # noqa: E402

OUT = os.path.join(benchlib.ROOT, "docs", "benchmarks")


def _series(summary, mode, key):
    rows = [s for s in summary if s["mode"] == mode and s[key]]
    xs = [s["connections"] for s in rows]
    med = [s[key]["median"] for s in rows]
    lo = [s[key]["median"] - s[key]["min"] for s in rows]
    hi = [s[key]["max"] - s[key]["median"] for s in rows]
    return xs, med, [lo, hi]


def plot_sweep(path: str, out_dir: str) -> list[str]:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    with open(path) as f:
        doc = json.load(f)
    summ = doc["summary"]
    m = doc["machine"]
    cond = "%d CPUs shared with the load generators (%d procs), loadavg before %.1f" % (
        m["cpus"], doc["procs"], doc["loadavg_before"][0])
    written = []

    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=110)
    for mode, style in (("lockstep", "o-"), ("pipelined", "s--")):
        xs, med, err = _series(summ, mode, "events_per_s")
        if xs:
            ax.errorbar(xs, med, yerr=err, fmt=style, capsize=4, label=mode)
    ax.set_xscale("log")
    ax.set_xlabel("connections (one panel each)")
    ax.set_ylabel("events/s ACKed (durable)")
    ax.set_ylim(bottom=0)
    ax.set_title("Receiver throughput, native protocol, SQLite synchronous=FULL")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(title="load (median, bars min..max)")
    fig.text(0.01, 0.01, cond, fontsize=7, color="0.4")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    p = os.path.join(out_dir, "receiver_throughput.png")
    fig.savefig(p)
    plt.close(fig)
    written.append(p)

    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=110)
    for mode, color in (("lockstep", "C0"), ("pipelined", "C1")):
        for key, style, lab in (("ack_p50_ms", "o-", "p50"), ("ack_p99_ms", "^:", "p99")):
            xs, med, err = _series(summ, mode, key)
            if xs:
                ax.errorbar(xs, med, yerr=err, fmt=style, color=color, capsize=3,
                            label="%s %s" % (mode, lab))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("connections (one panel each)")
    ax.set_ylabel("ACK latency, ms (send -> ACK, after commit)")
    ax.set_title("Receiver ACK latency against connection count")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.text(0.01, 0.01, cond, fontsize=7, color="0.4")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    p = os.path.join(out_dir, "receiver_ack_latency.png")
    fig.savefig(p)
    plt.close(fig)
    written.append(p)
    return written


def plot_e2e(path: str, out_dir: str) -> list[str]:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    with open(path) as f:
        doc = json.load(f)
    fig, ax = plt.subplots(figsize=(7.5, 3.8), dpi=110)
    data = [doc["samples_ms"]["trip_ms"], doc["samples_ms"]["restore_ms"]]
    ax.hist(data, bins=20, label=["trip (alarm)", "release (restore)"], alpha=0.8)
    ax.axvline(doc["debounce_ms"], color="0.3", ls="--", lw=1)
    ax.text(doc["debounce_ms"], ax.get_ylim()[1] * 0.9, " debounce %d ms" % doc["debounce_ms"],
            fontsize=8)
    ax.set_xlabel("zone change on the simulated panel -> event committed at the receiver, ms")
    ax.set_ylabel("trips")
    ax.set_title("Input to operator latency (firmware under MicroPython, %d trips)" % doc["trips"])
    ax.legend(fontsize=8)
    fig.tight_layout()
    p = os.path.join(out_dir, "e2e_latency.png")
    fig.savefig(p)
    plt.close(fig)
    return [p]


# Flame graph colours by where the code lives (first match wins).
FLAME_COLOURS = (("protocol/lean", "#e8a33d"), ("protocol/", "#f0c05a"),
                 ("sqlite_store", "#6a9fd4"), ("pg_store", "#6a9fd4"),
                 ("receiver/", "#d46a6a"), ("asyncio", "#9ccf7a"), ("uvloop", "#9ccf7a"),
                 ("selectors", "#9ccf7a"), ("stdlib/", "#b8b8b8"))
# Frames narrower than this share of the samples are not drawn.
FLAME_MIN_SHARE = 0.004


def plot_flame(raw_path: str, out_path: str, title: str = "") -> list[str]:
    """A flame graph (icicle: callers on top) of a py-spy raw profile as SVG:
    one box per distinct call path, as wide as its share of the samples."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    from matplotlib.patches import Rectangle  # noqa: PLC0415

    root: dict = {"n": 0, "kids": {}}
    with open(raw_path) as f:
        for line in f:
            stack, _, n = line.rstrip("\n").rpartition(" ")
            if not stack or not n.isdigit():
                continue
            node = root
            node["n"] += int(n)
            for fr in stack.split(";"):
                if fr.startswith(("process ", "thread ")):
                    continue
                name, path = benchlib.frame_parts(fr)
                key = "%s (%s)" % (name, path)
                node = node["kids"].setdefault(key, {"n": 0, "kids": {}, "path": path})
                node["n"] += int(n)
    total = root["n"] or 1
    boxes = []

    def walk(node, x, depth):
        for key, kid in sorted(node["kids"].items(), key=lambda kv: -kv[1]["n"]):
            w = kid["n"] / total
            if w >= FLAME_MIN_SHARE:
                boxes.append((x, depth, w, key, kid["path"]))
                walk(kid, x, depth + 1)
            x += w

    walk(root, 0.0, 0)
    depth = max((b[1] for b in boxes), default=0) + 1
    fig, ax = plt.subplots(figsize=(16, 0.28 * depth + 1.2))
    for x, d, w, key, path in boxes:
        colour = next((c for k, c in FLAME_COLOURS if k in path), "#d9d9d9")
        ax.add_patch(Rectangle((x, d), w, 1, facecolor=colour, edgecolor="white",
                               linewidth=0.4))
        if w > 0.03:
            label = key if len(key) * 0.0042 < w else key[:max(3, int(w / 0.0042))] + "…"
            ax.text(x + 0.002, d + 0.5, label, va="center", fontsize=6.5, clip_on=True)
    ax.set_xlim(0, 1)
    ax.set_ylim(depth, 0)
    ax.set_yticks([])
    ax.set_xlabel("share of %d samples" % root["n"])
    ax.set_title(title or os.path.basename(raw_path), fontsize=9)
    fig.tight_layout()
    fig.savefig(out_path)
    plt.close(fig)
    return [out_path]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--sweep", default=os.path.join(benchlib.RESULTS, "receiver_sweep.json"))
    ap.add_argument("--e2e", default=os.path.join(benchlib.RESULTS, "e2e_latency.json"))
    ap.add_argument("--out-dir", default=OUT)
    ap.add_argument("--flame", action="append", metavar="RAW",
                    help="a py-spy raw profile: draw it as OUT-DIR/NAME.svg (repeatable); "
                         "only the flame graphs are drawn then")
    a = ap.parse_args(argv)
    os.makedirs(a.out_dir, exist_ok=True)
    written = []
    if a.flame:
        for raw in a.flame:
            name = os.path.splitext(os.path.basename(raw))[0]
            written += plot_flame(raw, os.path.join(a.out_dir, "flame-%s.svg" % name))
        for p in written:
            print("wrote %s" % p)
        return 0
    if os.path.exists(a.sweep):
        written += plot_sweep(a.sweep, a.out_dir)
    if os.path.exists(a.e2e):
        written += plot_e2e(a.e2e, a.out_dir)
    for p in written:
        print("wrote %s" % p)
    return 0


if __name__ == "__main__":
    sys.exit(main())

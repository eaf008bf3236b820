"""Readable reports of HIL scenarios: one timeline per scenario, as text
(for the terminal and CI logs) and as HTML (for QA), plus an index.

Input is a timeline as :meth:`hil.timeline.Timeline.as_dict` writes it, so
a report can be re-rendered later from the JSON kept next to it
(``python -m hil.report DIR`` rebuilds every page of a report directory).

What a row says, by source:

- panel:    what the harness did to the target (power, zone, keypad, AC,
            battery, path cut) and its console lines
- link:     each native frame seen on a link: direction (^ up to the
            receiver, v down to the panel), type, sequence, account, the
            faults applied and when it was delivered; control actions
- receiver: each event the receiver stored (code, description, path,
            priority), each security event, warnings from its log
- scenario: strategy states and the scenario's own steps

JUnit XML comes from pytest itself (``--junitxml``); the plugin adds each
scenario's latencies and seed to it as properties.
"""

from __future__ import annotations

import html
import json
import os
import sys

from protocol import contactid

ARROW = {"up": "^", "down": "v"}


def describe(e: dict, verbose: bool = False) -> str | None:
    """One line for a timeline entry (None: not worth a line)."""
    by_source = _BY_SOURCE.get(e["source"])
    if by_source is None:
        return _plain(e["kind"], e["detail"])
    return by_source(e, verbose)


def _plain(kind: str, d: dict) -> str:
    """An entry no rule below words: its kind and its details."""
    return "%s %s" % (kind, _kv(d))


def _describe_link(e: dict, verbose: bool) -> str | None:
    kind, d = e["kind"], e["detail"]
    if kind == "frame":
        fate = [f for f in d.get("fate", [])]
        dl = d.get("delivered", [])
        when = ", ".join("+%.0f ms" % ((t - e["t"]) * 1000) for t in dl)
        bad = " BAD-CRC" if d.get("bad_crc") else ""
        s = "%-8s %s %-9s seq %-6s acct %s%s" % (
            d.get("link", ""), ARROW.get(d.get("dir"), "?"), d.get("type"), d.get("seq"),
            d.get("account"), bad)
        if fate:
            s += "  [%s]" % ", ".join(fate)
        if dl:
            s += "  delivered " + when
        elif not fate or fate == ["reorder"]:
            s += "  (not delivered)"
        return s
    if kind == "raw":
        return "%-8s %s raw %d bytes %s [%s]" % (
            d.get("link", ""), ARROW.get(d.get("dir"), "?"), d.get("len", 0),
            d.get("hex", ""), ", ".join(d.get("fate", [])))
    if kind == "control":
        extra = {k: v for k, v in d.items() if k not in ("link", "action", "dir")}
        return "%-8s %s %s %s" % (d.get("link", ""), d.get("action", "").upper(),
                                  d.get("dir", ""), _kv(extra))
    if kind == "conn":
        return "%-8s connection %s %s" % (d.get("link", ""), d.get("event", ""),
                                          d.get("peer", ""))
    return _plain(kind, d)


def _describe_panel(e: dict, verbose: bool) -> str | None:
    kind, d = e["kind"], e["detail"]
    if kind == "console":
        return "console: %s" % d.get("text", "")
    if kind == "power":
        return "POWER %s" % ("ON" if d.get("on") else "OFF")
    if kind == "zone":
        what = d.get("state") if d.get("state") is not None else "%s ohm" % d.get("ohms")
        return "zone %s -> %s%s" % (d.get("zone"), what,
                                    " (fixture)" if d.get("via") == "fixture" else "")
    if kind == "keypad":
        return "keypad %s partition %s -> %s" % (d.get("key"), d.get("partition"),
                                                 d.get("result", "?"))
    extra = {k: v for k, v in d.items() if k != "target"}
    return "%s %s" % (kind, _kv(extra))


def _describe_receiver(e: dict, verbose: bool) -> str | None:
    kind, d = e["kind"], e["detail"]
    if kind == "event":
        q = {1: "NEW", 3: "RESTORE", 6: "STATUS"}.get(d.get("qualifier"), d.get("qualifier"))
        # the receiver's description; else rendered by the one rule for
        # what the number is (a zone, a user, a path: protocol.contactid)
        desc = d.get("description") or (contactid.describe(
            d["code"], d.get("qualifier") or 1, d.get("zone")) if "code" in d else "")
        return "STORED %s %s %s  acct %s seq %s path %s prio %s%s" % (
            d.get("code"), q, desc, d.get("account"), d.get("seq"),
            d.get("path"), d.get("priority"),
            " (supervision)" if d.get("origin") == "supervision" else "")
    if kind == "security":
        return "SECURITY %s acct %s seq %s: %s" % (d.get("reason"), d.get("account"),
                                                 d.get("seq"), d.get("detail"))
    if kind == "process":
        return "receiver process %s" % d.get("action")
    if kind == "log":
        text = d.get("text", "")
        if verbose or "level=warning" in text or "level=error" in text:
            return "log: %s" % _strip_ts(text)
        return None
    return _plain(kind, d)


def _describe_scenario(e: dict, verbose: bool) -> str | None:
    kind, d = e["kind"], e["detail"]
    if kind == "strategy":
        p = d.get("partition")
        return "state %s%s" % (d.get("state"), " (partition %s)" % p if p else "")
    extra = {k: v for k, v in d.items() if k != "text"}
    return ("%s %s %s" % (kind, d.get("text", ""), _kv(extra))).rstrip()


# What each source's entries say (the module docstring lists them).
_BY_SOURCE = {"link": _describe_link, "panel": _describe_panel,
              "receiver": _describe_receiver, "scenario": _describe_scenario}


def _kv(d: dict) -> str:
    return " ".join("%s=%s" % (k, v) for k, v in d.items() if v is not None)


def _strip_ts(text: str) -> str:
    # logfmt lines start with ts=... level=... logger=...; keep level and msg on
    parts = text.split(" ", 1)
    return parts[1] if parts and parts[0].startswith("ts=") and len(parts) > 1 else text


def render_text(tl: dict, outcome: str = "", limit: int | None = None,
                verbose: bool = False) -> str:
    lines = []
    head = "== %s" % tl.get("name", "")
    if outcome:
        head += "  %s" % outcome.upper()
    if tl.get("seed") is not None:
        head += "  (seed %s)" % tl["seed"]
    lines.append(head)
    for lat in tl.get("latencies", []):
        lines.append("   latency %-40s %8.1f ms" % (lat["name"], lat["seconds"] * 1000))
    rows = []
    for e in tl.get("entries", []):
        s = describe(e, verbose)
        if s is not None:
            rows.append("   %8.3f  %-8s  %s" % (e["t"], e["source"], s))
    if limit is not None and len(rows) > limit:
        lines.append("   ... %d earlier rows not shown ..." % (len(rows) - limit))
        rows = rows[-limit:]
    lines += rows
    if tl.get("dropped"):
        lines.append("   (%d oldest entries were dropped from the timeline)" % tl["dropped"])
    return "\n".join(lines)


_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;font-size:13px;width:100%}
td,th{padding:2px 8px;border-bottom:1px solid #eee;vertical-align:top;text-align:left}
td.t{font-family:monospace;text-align:right;white-space:nowrap}
td.m{font-family:monospace;white-space:pre-wrap}
tr.panel td.s{color:#0b5394} tr.link td.s{color:#7f6000}
tr.receiver td.s{color:#38761d} tr.scenario td.s{color:#741b47}
tr.fault td.m{background:#fff2cc} tr.security td.m{background:#f4cccc}
tr.alarm td.m{font-weight:bold}
.passed{color:#38761d}.failed,.error{color:#cc0000}.skipped{color:#999}
label{margin-right:1em}
"""

_JS = """
function flt(){var c={};document.querySelectorAll('input[data-src]').forEach(function(i){
c[i.dataset.src]=i.checked});document.querySelectorAll('tr[data-src]').forEach(function(r){
r.style.display=c[r.dataset.src]?'':'none'})}
"""


def render_html(tl: dict, outcome: str = "", longrepr: str = "") -> str:
    esc = html.escape
    out = ["<!doctype html><meta charset=utf-8><title>%s</title><style>%s</style><script>%s"
           "</script>" % (esc(tl.get("name", "")), _CSS, _JS)]
    out.append("<h1>%s <span class=%s>%s</span></h1>" % (
        esc(tl.get("name", "")), esc(outcome), esc(outcome.upper())))
    if tl.get("seed") is not None:
        out.append("<p>link seed <b>%s</b> (rerun with the same faults: <code>%s</code>)</p>"
                   % (esc(str(tl["seed"])), esc(rerun_command(tl.get("name", ""), tl["seed"]))))
    if tl.get("latencies"):
        out.append("<h2>Latencies</h2><table><tr><th>measure<th>ms<th>from (s)<th>to (s)")
        for lat in tl["latencies"]:
            out.append("<tr><td>%s<td class=t>%.1f<td class=t>%.3f<td class=t>%.3f" % (
                esc(lat["name"]), lat["seconds"] * 1000, lat["start"], lat["end"]))
        out.append("</table>")
    if longrepr:
        out.append("<h2>Failure</h2><pre>%s</pre>" % esc(longrepr))
    out.append("<h2>Timeline</h2><p>")
    for src in ("panel", "link", "receiver", "scenario"):
        out.append("<label><input type=checkbox data-src=%s checked onchange=flt()> %s</label>"
                   % (src, src))
    out.append("<label><input type=checkbox data-src=log onchange=flt()> receiver log"
               "</label></p><table><tr><th>t (s)<th>source<th>what")
    for e in tl.get("entries", []):
        s = describe(e, verbose=True)
        if s is None:
            continue
        d = e["detail"]
        cls = [e["source"]]
        if e["kind"] == "frame" and d.get("fate"):
            cls.append("fault")
        if e["kind"] == "security":
            cls.append("security")
        if e["kind"] == "event" and d.get("event_class") not in ("status", "trouble", "other"):
            cls.append("alarm")
        src = "log" if (e["source"], e["kind"]) == ("receiver", "log") else e["source"]
        hidden = " style='display:none'" if src == "log" else ""
        out.append("<tr class='%s' data-src=%s%s><td class=t>%.3f<td class=s>%s<td class=m>%s"
                   % (" ".join(cls), src, hidden, e["t"], esc(e["source"]), esc(s)))
    out.append("</table>")
    if tl.get("dropped"):
        out.append("<p>%d oldest entries were dropped.</p>" % tl["dropped"])
    return "\n".join(out)


def rerun_command(nodeid: str, seed) -> str:
    """How QA reruns one scenario with the same link faults (docs/qa.md:
    ``guardline-hil run NAME --seed SEED``; pytest itself takes
    ``--hil-seed``)."""
    name = nodeid.split("::")[-1] if "::" in nodeid else nodeid
    return "guardline-hil run %s --seed %s" % (name.split("[")[0] or "NAME", seed)


def safe_name(nodeid: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_." else "_" for c in nodeid)
    return keep.strip("_")[:150] or "scenario"


def write_scenario(directory: str, nodeid: str, tl: dict, outcome: str,
                   longrepr: str = "", duration: float = 0.0) -> dict:
    os.makedirs(directory, exist_ok=True)
    base = safe_name(nodeid)
    with open(os.path.join(directory, base + ".json"), "w", encoding="utf-8") as f:
        json.dump({"nodeid": nodeid, "outcome": outcome, "longrepr": longrepr,
                   "duration": duration, "timeline": tl}, f, indent=1, default=str)
    with open(os.path.join(directory, base + ".html"), "w", encoding="utf-8") as f:
        f.write(render_html(tl, outcome, longrepr))
    return {"nodeid": nodeid, "outcome": outcome, "page": base + ".html",
            "duration": duration, "latencies": tl.get("latencies", []),
            "seed": tl.get("seed")}


RUN_FIELDS = (("started_at", "date (UTC)"), ("git_revision", "git revision"),
              ("firmware_version", "firmware version"), ("target", "target"),
              ("seed", "link seed"))


def write_index(directory: str, results: list[dict], title: str = "Guardline HIL",
                run: dict | None = None) -> str:
    """index.html and summary.json ({"run": ..., "scenarios": [...]}).
    `run` names the run (RUN_FIELDS); a skipped scenario's row says why."""
    esc = html.escape
    os.makedirs(directory, exist_ok=True)
    run = run or {}
    counts: dict[str, int] = {}
    for r in results:
        counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
    executed = sum(counts.get(k, 0) for k in ("passed", "failed", "error"))
    out = ["<!doctype html><meta charset=utf-8><title>%s</title><style>%s</style>"
           % (esc(title), _CSS), "<h1>%s</h1><p>%s</p>" % (
               esc(title), ", ".join("%d %s" % (n, k) for k, n in sorted(counts.items())))]
    if results and not executed:
        out.append("<p class=failed><b>No scenario ran: every one was skipped (reasons "
                   "below). This run proves nothing.</b></p>")
    if run:
        out.append("<table class=run>")
        for key, label in RUN_FIELDS:
            out.append("<tr><th>%s<td>%s" % (esc(label), esc(str(run.get(key, "unknown")))))
        out.append("</table>")
    out.append("<table><tr><th>scenario<th>result<th>s<th>latencies<th>seed<th>why")
    for r in results:
        lats = "; ".join("%s %.1f ms" % (x["name"], x["seconds"] * 1000)
                         for x in r.get("latencies", []))
        out.append("<tr><td><a href='%s'>%s</a><td class=%s>%s<td class=t>%.1f<td>%s<td>%s"
                   "<td>%s" % (
                       esc(r["page"]), esc(r["nodeid"]), esc(r["outcome"]), esc(r["outcome"]),
                       r.get("duration", 0.0), esc(lats), esc(str(r.get("seed", ""))),
                       esc(r.get("reason") or "")))
    out.append("</table>")
    path = os.path.join(directory, "index.html")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(out))
    with open(os.path.join(directory, "summary.json"), "w", encoding="utf-8") as f:
        json.dump({"run": run, "scenarios": results}, f, indent=1, default=str)
    return path


class ReportError(Exception):
    """A report directory that cannot be re-rendered."""


def rebuild(directory: str) -> str:
    """Re-render every scenario page and the index from the JSON files."""
    try:
        names = sorted(os.listdir(directory))
    except OSError as e:
        raise ReportError("%s: %s" % (directory, e.strerror or e)) from None
    run = {}
    results = []
    for name in names:
        if not name.endswith(".json"):
            continue
        try:
            with open(os.path.join(directory, name), encoding="utf-8") as f:
                doc = json.load(f)
        except (OSError, ValueError) as e:
            raise ReportError("%s: not a scenario's JSON (%s)" % (
                os.path.join(directory, name), e)) from None
        if name == "summary.json":
            run = doc.get("run", {}) if isinstance(doc, dict) else {}
            continue
        if not isinstance(doc, dict) or not {"nodeid", "timeline", "outcome"} <= set(doc):
            continue  # not a scenario's record
        reason = doc.get("longrepr", "") if doc["outcome"] == "skipped" else ""
        entry = write_scenario(directory, doc["nodeid"], doc["timeline"],
                               doc["outcome"], doc.get("longrepr", ""),
                               doc.get("duration", 0.0))
        entry["reason"] = reason
        results.append(entry)
    if not results:
        raise ReportError("%s: no scenario results (a guardline-hil run --report DIR "
                          "writes them)" % directory)
    return write_index(directory, results, run=run)


if __name__ == "__main__":
    try:
        print(rebuild(sys.argv[1] if len(sys.argv) > 1 else "hil-report"))
    except ReportError as e:
        sys.exit("hil.report: %s" % e)

"""The centre's reports over a date range (sans-I/O): computations over
alarm rows and the receiver's own events, rendered as CSV and as a
printable, self-contained HTML page with charts.

Inputs are typed rows the store reads for the range (docs/rules-design.md,
"CLI, API, console"): :class:`AlarmFact` (an alarm with its site, region, operator
actions and disposition) and :class:`EventFact` (the receiver's own
events: line supervision 350, missed periodic tests 358, open/close
exceptions 450-454).  :func:`build` turns them into a :class:`Report` of
sections, each a table; nothing here reads a clock or a database.

Definitions (what the numbers mean):

- An alarm belongs to the range when it was raised in ``[start, end)``.
- **Time to acknowledge**: from raised to the first operator action
  (acknowledged, or resolved straight from pending).  **Time to
  resolve**: raised to resolved.  Alarms the receiver resolved itself
  (restore policy, actor ``receiver``) count in neither; alarms still open
  at the end count as open.  Percentiles are nearest-rank (p50 of 4 values
  is the 2nd smallest), never interpolated: each figure is a real alarm's.
- **False alarm rate** per site: false / judged.  An alarm is judged by its
  disposition when it has one (its category "false", written with it when
  an operator resolved it; else ``false_dispositions``, the codes of that
  category), else by its resolution note ("false
  alarm", "no cause found", ...; "not a false alarm" is not one), else it is
  not judged.  The basis column says how many were judged each way.
- **Patrol time to arrive** (issue 19): from the first patrol dispatched to
  the alarm to the first one on scene (a current fix inside the site's or
  the alarm position's radius: receiver.vehicles.patrols); an alarm with a
  patrol dispatched and none arrived counts as "not arrived".  The store
  gives the rows (``Store.list_dispatches(since=, until=)``: ``dispatched_at``
  and ``arrived_at`` of each; an alarm's first of each go into its fact).
- A **region** or **site** filter keeps the alarms and events of that
  region or account; an **operator** filter keeps the alarms that operator
  acknowledged or resolved, and leaves out the receiver's own events (no
  operator raised them).

Charts are SVG written here (horizontal bars: a few dozen lines), not a
plotting library: the receiver gains no runtime dependency, the page loads
nothing from anywhere, and the page carries no script and no style
attribute, so the console can serve it under a Content-Security-Policy
that allows exactly its one style block (:func:`content_security_policy`).
"""

from __future__ import annotations

import base64
import csv
import datetime as _dt
import hashlib
import html
import io
import math
import re
from dataclasses import dataclass, field

from protocol import contactid
from receiver.supervision import duration_text

RECEIVER = "receiver"  # the actor of what the receiver did itself
# The report's sections, in order (Report.section(name); the CSV's --section).
SECTIONS = ("alarms_by_class", "response_times", "patrol_response", "operators",
            "false_alarms", "troubles", "supervision", "open_close")
TOP = 10  # rows in the "most" tables and charts

# Resolution notes that say the alarm was false, and those that say it was
# not (checked first).
_NOT_FALSE = re.compile(r"\b(not|no|wasn't|was not)\s+(a\s+)?false\b", re.I)
_FALSE_NOTE = re.compile(
    r"\bfalse(\s+alarm)?\b|\bno cause( found)?\b|\buser error\b|\bby mistake\b|"
    r"\baccidental(ly)?\b|\bfehlalarm\b", re.I)

# Receiver events counted in the supervision and open/close sections:
# (code, qualifier 1) -> column
SUPERVISION_COLUMNS = {350: "path failures", 358: "missed periodic tests"}
OPEN_CLOSE_COLUMNS = {454: "fail to close", 453: "fail to open", 451: "early open",
                      452: "late open", 450: "unscheduled open"}


@dataclass(frozen=True)
class AlarmFact:
    id: int
    account: str
    site: str
    region: str
    event_class: str
    priority: int
    code: int
    created_at: float
    acknowledged_at: float | None = None
    acknowledged_by: str | None = None
    resolved_at: float | None = None
    resolved_by: str | None = None
    note: str | None = None
    disposition: str | None = None
    patrol_dispatched_at: float | None = None  # the first patrol sent (None: none)
    patrol_arrived_at: float | None = None  # the first patrol on scene

    @property
    def patrol_arrival_s(self) -> float | None:
        if self.patrol_dispatched_at is None or self.patrol_arrived_at is None:
            return None
        return self.patrol_arrived_at - self.patrol_dispatched_at
    # the disposition's category as written when the alarm was resolved
    # (issue 17: false, real, test, other), whatever file defined the code
    disposition_category: str | None = None


@dataclass(frozen=True)
class EventFact:
    account: str
    site: str
    region: str
    code: int
    qualifier: int
    received_at: float
    source: str = RECEIVER


@dataclass(frozen=True)
class Filter:
    region: str | None = None
    account: str | None = None
    operator: str | None = None

    def words(self) -> str:
        parts = [("region " + self.region) if self.region else "",
                 ("account " + self.account) if self.account else "",
                 ("operator " + self.operator) if self.operator else ""]
        return ", ".join(p for p in parts if p) or "whole centre"


@dataclass
class Section:
    name: str
    title: str
    columns: list
    rows: list = field(default_factory=list)
    chart: tuple | None = None  # (label column, value column, unit, title): a bar chart


@dataclass
class Report:
    start: float
    end: float
    filter: Filter
    sections: list

    def section(self, name: str) -> Section:
        for s in self.sections:
            if s.name == name:
                return s
        raise KeyError(name)


def percentile(values, p: int) -> float | None:
    """Nearest rank: the smallest value with at least p % of the values at
    or below it (None for no values)."""
    v = sorted(values)
    if not v:
        return None
    return v[max(0, math.ceil(p / 100 * len(v)) - 1)]


def is_false(a: AlarmFact, false_dispositions) -> tuple[bool | None, str]:
    """(False alarm?, basis): by disposition, else by note; (None, '')
    when neither says."""
    if a.disposition_category:
        return a.disposition_category == "false", "disposition"
    if a.disposition:
        return a.disposition in false_dispositions, "disposition"
    if a.note and a.resolved_at is not None:
        if _NOT_FALSE.search(a.note):
            return False, "note"
        return bool(_FALSE_NOTE.search(a.note)), "note"
    return None, ""


def _first_action(a: AlarmFact) -> float | None:
    if a.acknowledged_at is not None:
        return a.acknowledged_at
    if a.resolved_at is not None and a.resolved_by != RECEIVER:
        return a.resolved_at
    return None


def build(alarms, events, start: float, end: float, flt: Filter = Filter(),
          false_dispositions=frozenset()) -> Report:
    """The report for alarms raised and events received in [start, end)."""
    if not end > start:
        raise ValueError("a report's range must end after it starts")

    def keep_site(x) -> bool:
        return (flt.region is None or x.region == flt.region) and (
            flt.account is None or x.account == flt.account)

    al = [a for a in alarms if start <= a.created_at < end and keep_site(a) and (
        flt.operator is None or flt.operator in (a.acknowledged_by, a.resolved_by))]
    ev = [] if flt.operator else [e for e in events if start <= e.received_at < end
                                  and e.qualifier == 1 and keep_site(e)]
    sections = [_by_class(al), _response(al), _patrols(al), _operators(al),
                _false(al, false_dispositions), _troubles(al),
                _counted(ev, "supervision", "Supervision failures per site",
                         SUPERVISION_COLUMNS),
                _counted(ev, "open_close", "Open/close exceptions per site",
                         OPEN_CLOSE_COLUMNS)]
    return Report(start, end, flt, sections)


def _site_label(x) -> str:
    return "%s (%s)" % (x.site, x.account) if x.site else x.account


def _by_class(al) -> Section:
    s = Section("alarms_by_class", "Alarms by class", ["class", "alarms"],
                chart=("class", "alarms", "", "Alarms by class"))
    counts = {}
    for a in al:
        counts[a.event_class] = counts.get(a.event_class, 0) + 1
    order = list(contactid.CLASSES) + sorted(set(counts) - set(contactid.CLASSES))
    s.rows = [[contactid.CLASS_LABELS.get(c, c), counts[c]] for c in order if c in counts]
    return s


def _times(vals) -> list:
    return [percentile(vals, 50), percentile(vals, 90), max(vals) if vals else None]


def _response(al) -> Section:
    s = Section("response_times", "Time to acknowledge and to resolve per priority",
                ["priority", "alarms", "acknowledged", "ack p50", "ack p90", "ack max",
                 "resolved", "resolve p50", "resolve p90", "resolve max", "auto-resolved",
                 "open"], chart=("priority", "ack p90", "s",
                                 "Time to acknowledge (p90) by priority"))
    for prio in sorted({a.priority for a in al}):
        mine = [a for a in al if a.priority == prio]
        tta = [_first_action(a) - a.created_at for a in mine if _first_action(a) is not None]
        ttr = [a.resolved_at - a.created_at for a in mine
               if a.resolved_at is not None and a.resolved_by != RECEIVER]
        auto = sum(1 for a in mine if a.resolved_at is not None and a.resolved_by == RECEIVER)
        still = sum(1 for a in mine if a.resolved_at is None)
        s.rows.append([prio, len(mine), len(tta)] + _times(tta) + [len(ttr)] + _times(ttr)
                      + [auto, still])
    return s


def _patrols(al) -> Section:
    s = Section("patrol_response", "Patrol time to arrive per priority",
                ["priority", "patrols sent", "arrived", "arrive p50", "arrive p90",
                 "arrive max", "not arrived"],
                chart=("priority", "arrive p90", "s", "Patrol time to arrive (p90) by priority"))
    sent = [a for a in al if a.patrol_dispatched_at is not None]
    for prio in sorted({a.priority for a in sent}):
        mine = [a for a in sent if a.priority == prio]
        took = [a.patrol_arrival_s for a in mine if a.patrol_arrival_s is not None]
        s.rows.append([prio, len(mine), len(took)] + _times(took) + [len(mine) - len(took)])
    return s


def _operators(al) -> Section:
    s = Section("operators", "Per operator",
                ["operator", "acknowledged", "ack p50", "resolved", "resolve p50"])
    people = sorted({p for a in al for p in (a.acknowledged_by, a.resolved_by)
                     if p and p != RECEIVER})
    for p in people:
        acked = [a.acknowledged_at - a.created_at for a in al
                 if a.acknowledged_by == p and a.acknowledged_at is not None]
        res = [a.resolved_at - a.created_at for a in al
               if a.resolved_by == p and a.resolved_at is not None]
        s.rows.append([p, len(acked), percentile(acked, 50), len(res), percentile(res, 50)])
    return s


def _false(al, false_dispositions) -> Section:
    s = Section("false_alarms", "False alarm rate per site",
                ["site", "alarms", "judged", "false", "rate", "by disposition", "by note"],
                chart=("site", "rate", "%", "False alarm rate by site"))
    sites = {}
    for a in al:
        sites.setdefault((_site_label(a)), []).append(a)
    rows = []
    for site, mine in sites.items():
        judged = [is_false(a, false_dispositions) for a in mine]
        known = [(f, b) for f, b in judged if f is not None]
        n_false = sum(1 for f, _ in known if f)
        rate = round(100.0 * n_false / len(known), 1) if known else None
        rows.append([site, len(mine), len(known), n_false, rate,
                     sum(1 for _, b in known if b == "disposition"),
                     sum(1 for _, b in known if b == "note")])
    rows.sort(key=lambda r: (-(r[4] if r[4] is not None else -1), -r[3], r[0]))
    s.rows = rows
    return s


def _troubles(al) -> Section:
    s = Section("troubles", "Sites with the most troubles", ["site", "trouble alarms"],
                chart=("site", "trouble alarms", "", "Trouble alarms by site"))
    counts = {}
    for a in al:
        if a.event_class == "trouble":
            counts[_site_label(a)] = counts.get(_site_label(a), 0) + 1
    s.rows = sorted(([k, v] for k, v in counts.items()), key=lambda r: (-r[1], r[0]))[:TOP]
    return s


def _counted(ev, name, title, columns) -> Section:
    s = Section(name, title, ["site"] + list(columns.values()) + ["total"])
    per = {}
    for e in ev:
        if e.code in columns:
            row = per.setdefault(_site_label(e), {c: 0 for c in columns})
            row[e.code] += 1
    rows = [[site] + [c[k] for k in columns] + [sum(c.values())] for site, c in per.items()]
    s.rows = sorted(rows, key=lambda r: (-r[-1], r[0]))
    return s


# -- CSV ------------------------------------------------------------------------------------


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return ("%.3f" % v).rstrip("0").rstrip(".")
    return str(v)


def section_csv(s: Section) -> str:
    """One section as a CSV table with a header row (numbers plain:
    durations in seconds, counts, percent; empty for none)."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(s.columns)
    for r in s.rows:
        w.writerow([_cell(v) for v in r])
    return out.getvalue()


def report_csv(r: Report) -> str:
    """Every section in one long table: section, row label, column, value
    (for a spreadsheet's pivot)."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["section", "row", "column", "value"])
    for s in r.sections:
        for row in s.rows:
            for col, v in zip(s.columns[1:], row[1:]):
                w.writerow([s.name, _cell(row[0]), col, _cell(v)])
    return out.getvalue()


# -- HTML -------------------------------------------------------------------------------------

STYLE = """
body { font: 11pt/1.4 sans-serif; color: #111; margin: 2em; }
h1 { font-size: 16pt; margin: 0 0 .2em; }
h2 { font-size: 13pt; margin: 1.6em 0 .4em; border-bottom: 1px solid #999; }
p.meta { color: #444; margin: 0; }
table { border-collapse: collapse; margin: .4em 0; }
th, td { border: 1px solid #bbb; padding: .15em .5em; text-align: right; }
td { white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
th { background: #eee; }
p.none { color: #666; font-style: italic; }
svg { display: block; margin: .4em 0; }
section { page-break-inside: avoid; }
@media print { body { margin: 0; } h2 { page-break-after: avoid; } }
""".strip()


def content_security_policy() -> str:
    """The header the console sends with the page: no script, nothing
    loaded, its one style block allowed by hash."""
    digest = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
    return "default-src 'none'; style-src 'sha256-%s'; img-src data:" % digest


def _when(t: float) -> str:
    return _dt.datetime.fromtimestamp(t, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def html_cell(col: str, v) -> str:
    """A cell as a person reads it: durations in words, rates in %, '-' for
    none (the HTML page and the CLI's text)."""
    if v is None:
        return "-"
    if isinstance(v, (int, float)) and ("p50" in col or "p90" in col or "max" in col):
        return duration_text(v)
    if col == "rate":
        return "%s %%" % _cell(v)
    return _cell(v)


def bar_chart(title: str, rows: list, unit: str = "") -> str:
    """A horizontal bar chart as inline SVG: [(label, value)] (values >=
    0; None rows are left out).  Text escaped; presentation attributes
    only (no style attribute: the page's CSP)."""
    rows = [(str(lab), float(v)) for lab, v in rows if v is not None][:TOP]
    if not rows:
        return ""
    bar_h, gap, label_w, bar_w, top = 16, 6, 220, 360, 22
    hi = max(v for _, v in rows) or 1.0
    height = top + len(rows) * (bar_h + gap) + 4
    parts = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" role="img" '
             'aria-label="%s">' % (label_w + bar_w + 90, height, html.escape(title)),
             '<text x="0" y="14" font-size="12" font-weight="bold">%s</text>'
             % html.escape(title)]
    for i, (lab, v) in enumerate(rows):
        y = top + i * (bar_h + gap)
        w = round(bar_w * v / hi, 1)
        shown = duration_text(v) if unit == "s" else "%s%s" % (_cell(v), (" " + unit)
                                                               if unit else "")
        parts.append('<text x="%d" y="%d" font-size="11" text-anchor="end">%s</text>'
                     % (label_w - 6, y + 12, html.escape(lab[:40])))
        parts.append('<rect x="%d" y="%d" width="%s" height="%d" fill="#4a6fa5"/>'
                     % (label_w, y, w, bar_h))
        parts.append('<text x="%s" y="%d" font-size="11">%s</text>'
                     % (label_w + w + 4, y + 12, html.escape(shown)))
    parts.append("</svg>")
    return "".join(parts)


def report_html(r: Report, centre: str = "Guardline monitoring centre") -> str:
    """The printable page: every section as a table, with a bar chart where
    one helps.  Self-contained: no script, no link, nothing fetched."""
    e = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           "<title>%s: report %s to %s</title>" % (e(centre), _when(r.start), _when(r.end)),
           "<style>%s</style></head><body>" % STYLE,
           "<h1>%s: centre report</h1>" % e(centre),
           '<p class="meta">Alarms raised from %s to %s; %s.</p>'
           % (_when(r.start), _when(r.end), e(r.filter.words()))]
    for s in r.sections:
        out.append("<section><h2>%s</h2>" % e(s.title))
        if not s.rows:
            out.append('<p class="none">None in this range.</p></section>')
            continue
        if s.chart:
            lab, val, unit, title = s.chart
            li, vi = s.columns.index(lab), s.columns.index(val)
            label = (lambda v: "priority %s" % v) if lab == "priority" else str
            out.append(bar_chart(title, [(label(row[li]), row[vi]) for row in s.rows], unit))
        out.append("<table><tr>%s</tr>" % "".join("<th>%s</th>" % e(c) for c in s.columns))
        for row in s.rows:
            out.append("<tr>%s</tr>" % "".join(
                "<td>%s</td>" % e(html_cell(c, v)) for c, v in zip(s.columns, row)))
        out.append("</table></section>")
    out.append("</body></html>")
    return "\n".join(out)

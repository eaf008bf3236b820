// The centre's report: a range of UTC days and filters; the printable
// page (/api/reports/center.html, drawn by the receiver, no script in it)
// in a frame, Print, and the CSV of every section.
"use strict";

function day(d) { return d.toISOString().slice(0, 10); }

function query() {
  const q = new URLSearchParams();
  const from = document.getElementById("report-from").value;
  const to = document.getElementById("report-to").value;
  q.set("from", from + "T00:00:00Z");
  // "to" is a day included: the range ends at the start of the next one
  const end = new Date(to + "T00:00:00Z");
  end.setUTCDate(end.getUTCDate() + 1);
  q.set("to", end.toISOString());
  for (const k of ["region", "account", "operator"]) {
    const v = document.getElementById("report-" + k).value.trim();
    if (v) q.set(k, v);
  }
  return q.toString();
}

async function show() {
  const err = document.getElementById("report-error");
  err.textContent = "";
  const q = query();
  try {
    await GL.api("/api/reports/center?" + q);  // a bad range says so here, in words
  } catch (e) { err.textContent = e.message; return; }
  document.getElementById("report").src = "/api/reports/center.html?" + q;
  document.getElementById("report-csv").href = "/api/reports/center.csv?" + q;
}

function init() {
  const today = new Date();
  const week = new Date(today.getTime() - 6 * 86400000);
  document.getElementById("report-from").value = day(week);
  document.getElementById("report-to").value = day(today);
  document.getElementById("report-form").addEventListener("submit", ev => { ev.preventDefault(); show(); });
  document.getElementById("report-print").addEventListener("click", () => {
    const f = document.getElementById("report");
    if (f.contentWindow) f.contentWindow.print();
  });
  show();
}

GL.start("reports", {load: function () { if (!document.getElementById("report").src) init(); }});

// History: search stored events by account, code, class and time range;
// the same filters export CSV.
"use strict";

const CLASSES = ["holdup", "fire", "medical", "burglary", "environmental", "tamper", "trouble", "status", "test", "other"];
const sel = document.getElementById("class");
CLASSES.forEach(c => sel.append(GL.h("option", {value: c, text: GL.CLASS_LABEL[c]})));

function localInput(d) {
  return d.getFullYear() + "-" + GL.pad(d.getMonth() + 1) + "-" + GL.pad(d.getDate()) + "T" + GL.pad(d.getHours()) + ":" + GL.pad(d.getMinutes());
}
document.getElementById("since").value = localInput(new Date(Date.now() - 86400000));

function params() {
  // datetime-local is the operator's local time; the API takes Unix seconds.
  const p = new URLSearchParams();
  const v = id => document.getElementById(id).value.trim();
  if (v("account")) p.set("account", v("account"));
  if (v("code")) p.set("code", String(parseInt(v("code"), 10)));
  if (v("class")) p.set("class", v("class"));
  if (v("since")) p.set("since", String(new Date(v("since")).getTime() / 1000));
  if (v("until")) p.set("until", String(new Date(v("until")).getTime() / 1000));
  return p;
}

function updateExport() {
  document.getElementById("export").href = "/api/events.csv?" + params();
}

async function search(ev) {
  if (ev) ev.preventDefault();
  updateExport();
  const p = params();
  p.set("limit", document.getElementById("limit").value);
  const note = document.getElementById("result-note");
  let d;
  try { d = await GL.api("/api/events?" + p); } catch (e) { note.textContent = e.message; return; }
  const tbody = GL.clear(document.querySelector("#events tbody"));
  if (!d.events.length) tbody.append(GL.h("tr", null, GL.h("td", {colspan: "7", class: "empty", text: "No events match."})));
  for (const e of d.events) {
    tbody.append(GL.h("tr", {class: "cls-" + e.event_class},
      GL.h("td", {class: "num", text: GL.fmtTime(e.received_at)}),
      GL.h("td", null, GL.siteLink(e.account)),
      GL.h("td", {text: e.site_name || ""}),
      GL.h("td", null, GL.badge(e.event_class)),
      GL.h("td", {text: ({1: "E", 3: "R", 6: "P"}[e.qualifier] || "?") + String(e.code).padStart(3, "0")}),
      GL.h("td", {text: e.description}),
      GL.h("td", {text: e.source === "supervision" ? "receiver" : e.protocol})));
  }
  note.textContent = d.matched + " events match" + (d.truncated ? "; showing the newest " + d.events.length : "") +
    (d.scan_limited ? ". The scan limit was reached: narrow the time range." : ".");
}

document.getElementById("search").addEventListener("submit", search);
document.getElementById("search").addEventListener("change", updateExport);
GL.start("history", {load: search});

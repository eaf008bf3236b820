// Site view: one account's details, zones and partitions (state derived from
// its recent events), supervision per path, troubles and recent events.
"use strict";

const NUMBER = decodeURIComponent(location.pathname.split("/").pop());

const STATE_PILL = {normal: "ok", armed: "ok", "armed stay": "ok", disarmed: "warn", bypassed: "warn",
  tested: "ok", unknown: "", trouble: "bad", tamper: "bad"};

function statePill(s) {
  const cls = s.startsWith("alarm:") ? "bad" : (STATE_PILL[s] || "");
  return GL.h("span", {class: "pill " + cls, text: s.replace("alarm:", "alarm: ")});
}

// A supervised path: FAILED, reporting, or waiting for its first report
// (not heard since the receiver started: it fails at its deadline).
function pathPill(s) {
  if (s.state !== "ok") return GL.h("span", {class: "pill bad", text: "FAILED"});
  if (s.heard === "yes") return GL.h("span", {class: "pill ok", text: "reporting"});
  return GL.h("span", {class: "pill warn", title: "fails at " + GL.fmtTime(s.deadline) + " if nothing arrives",
    text: "waiting for a report"});
}

function rows(tbody, items, make, cols, empty) {
  GL.clear(tbody);
  if (!items.length) tbody.append(GL.h("tr", null, GL.h("td", {colspan: String(cols), class: "empty", text: empty})));
  items.forEach(x => tbody.append(make(x)));
}

async function load() {
  let d;
  try { d = await GL.api("/api/sites/" + encodeURIComponent(NUMBER)); } catch (e) {
    document.getElementById("site-title").textContent = "Account " + NUMBER + ": " + e.message;
    return;
  }
  const a = d.account;
  document.title = (a.site_name || "Account " + a.number) + " — Guardline";
  document.getElementById("site-title").textContent = a.site_name || ("Account " + a.number);
  document.getElementById("site-sub").textContent = "Account " + a.number + (a.site_address ? " · " + a.site_address : "");

  const info = GL.clear(document.getElementById("site-info"));
  const dl = GL.h("dl", {class: "kv"});
  [["Account", a.number], ["Protocol", a.protocol], ["Panel", a.panel_kind || "—"], ["Region", a.region || "—"],
   ["Address", a.site_address || "—"],
   ["Heartbeat", a.heartbeat_s ? a.heartbeat_s + " s" : "receiver default"],
   ["Supervised", a.supervised ? "paths " + a.supervised_paths.join(", ") : "no"]].forEach(([k, v]) =>
    dl.append(GL.h("dt", {text: k}), GL.h("dd", {text: String(v)})));
  info.append(dl);
  SW.load();  // notes, contacts and call lists, panel commands (site_workflow.js)

  rows(document.querySelector("#site-alarms tbody"), d.open_alarms, al => GL.h("tr", {class: "cls-" + al.event_class},
    GL.h("td", null, GL.badge(al.event_class)), GL.h("td", {class: "num", text: GL.fmtTime(al.created_at)}),
    GL.h("td", null, GL.h("a", {href: "/#alarm-" + al.id, text: al.description})),
    GL.h("td", null, GL.stateLabel(al.state))), 4, "No open alarms.");

  rows(document.querySelector("#zones tbody"), d.zones, z => GL.h("tr", null,
    GL.h("td", {class: "num", text: String(z.zone)}), GL.h("td", {text: z.name || "—"}),
    GL.h("td", null, statePill(z.state)), GL.h("td", {class: "num", text: GL.fmtTime(z.since)}),
    GL.h("td", {text: z.description || ""})), 5, "No zones named and none reported.");

  rows(document.querySelector("#partitions tbody"), d.partitions, p => GL.h("tr", null,
    GL.h("td", {class: "num", text: String(p.partition)}), GL.h("td", {text: p.name || "—"}),
    GL.h("td", null, statePill(p.state)), GL.h("td", {class: "num", text: GL.fmtTime(p.since)})),
    4, "No partitions named and none reported.");

  rows(document.querySelector("#supervision tbody"), d.supervision, s => GL.h("tr", null,
    GL.h("td", {text: s.path_label}),
    GL.h("td", null, pathPill(s)),
    GL.h("td", {class: "num", text: GL.heardText(s.heard, s.last_heard)}),
    GL.h("td", {text: s.timeout_s ? s.timeout_s + " s silence" : "—"})), 4, "Not supervised.");
  const conn = d.connections.length ? "Connected: " + d.connections.map(c => c.transport + " " + c.peer).join(", ")
    : (a.protocol === "native" ? "No open connection (UDP panels have none)." : "");
  document.getElementById("connection").textContent = conn;

  const tl = GL.clear(document.getElementById("troubles"));
  if (!d.troubles.length) tl.append(GL.h("li", {class: "muted", text: "No open troubles."}));
  d.troubles.forEach(t => tl.append(GL.h("li", null, GL.badge(t.event_class), " ", t.description,
    GL.h("span", {class: "muted small", text: " since " + GL.fmtTime(t.since) + (t.source === "supervision" ? " (receiver)" : "")}))));

  rows(document.querySelector("#recent tbody"), d.recent_events, e => GL.h("tr", {class: "cls-" + e.event_class},
    GL.h("td", {class: "num", text: GL.fmtTime(e.received_at)}), GL.h("td", null, GL.badge(e.event_class)),
    GL.h("td", {text: ({1: "E", 3: "R", 6: "P"}[e.qualifier] || "?") + String(e.code).padStart(3, "0")}),
    GL.h("td", {text: e.description}), GL.h("td", {text: e.source === "supervision" ? "receiver" : String(e.path)})),
    5, "No events in the window.");
  GL.siteRules.load(NUMBER, a);  // tests, schedules, periodic test, held zones (site_rules.js)
  document.getElementById("window").textContent = "States derived from " + d.window.events +
    " events since " + GL.fmtTime(d.window.since) + (d.window.scan_limited ? " (scan limit reached: older states may be missing)" : "") + ".";
}

const reload = GL.debounce(load, 200);
function mine(msg) {
  const acct = msg.account !== undefined ? msg.account : (msg.event ? msg.event.account : null);
  if (acct === null || acct === undefined || String(acct) === NUMBER) reload();
}
GL.start("panels", {load: load, alarm: mine, event: mine, supervision: mine, rules: mine, site: mine});

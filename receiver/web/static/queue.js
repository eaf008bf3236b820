// The alarm queue: open alarms by priority then age, live, each with who
// handles it; the selected alarm's details, dispatch state, its workflow
// (workflow.js: notes, claim, plan, call list, resolve with a disposition)
// and audit trail.
//
// Which alarm the detail pane shows (Q.mode):
// - "auto": the top of the queue, followed as the queue changes (a new
//   hold-up replaces the burglary that was on top), until the operator
//   picks one;
// - "open": the open alarm the operator picked (a click, Enter, the
//   banner's Show, typing a note); when it leaves the queue (resolved here
//   or elsewhere) the pane goes back to "auto";
// - "kept": an alarm picked from the resolved list or a #alarm-N link; it
//   stays until the operator picks another.
// The "new alarm" banner belongs to one alarm: it goes when that alarm is
// picked, or is no longer pending (acknowledged or resolved by anyone).
"use strict";

// shown: the detail data last rendered (what the operator typed lives in
// WF.drafts, across live re-renders); banner: the alarm id the banner
// announces; holds, rows: the centre's rules (held zones, incidents).
const Q = {alarms: [], selected: null, mode: "auto", known: null, shown: null, banner: null,
  holds: new Map(), rows: []};

// The detail pane's name for the event's number, by its kind (from the API).
const NUMBER_TITLE = {zone: "Zone", user: "User", path: "Path", count: "Count", none: "Number"};

function shortTime(t) {
  const d = new Date(t * 1000);
  const hms = GL.pad(d.getHours()) + ":" + GL.pad(d.getMinutes()) + ":" + GL.pad(d.getSeconds());
  const today = new Date();
  if (d.toDateString() === today.toDateString()) return hms;
  return GL.pad(d.getMonth() + 1) + "-" + GL.pad(d.getDate()) + " " + hms.slice(0, 5);
}

// row: the alarm's incident row (GL.rules.fold) when it leads one
function alarmRow(a, row) {
  const site = a.account + " · " + (a.site_name || "(unnamed site)");
  const tr = GL.h("tr", {class: "selectable cls-" + a.event_class + (a.id === Q.selected ? " selected" : ""),
    tabindex: "0", dataset: {alarmId: String(a.id)}, "aria-selected": a.id === Q.selected ? "true" : "false"},
    GL.h("td", {class: "c-class"}, GL.badge(a.event_class)),
    GL.h("td", {class: "num c-time", title: GL.fmtTime(a.created_at) + " (" + GL.ago(a.created_at) + ")"},
      GL.h("div", {text: shortTime(a.created_at)}), GL.h("div", {class: "where muted small", text: GL.ago(a.created_at)})),
    GL.h("td", {class: "c-site", title: site + (a.site_address ? ", " + a.site_address : "")}, site),
    // narrow screens hide the site column and show the site under the alarm
    GL.h("td", {class: "c-what", title: a.description + " (" + a.contact_id + ")\n" + site},
      GL.h("div", {class: "what"}, a.confirmed ? GL.h("span", {class: "flag confirmed", text: "CONFIRMED"}) : null,
        a.cancel_event_id ? GL.h("span", {class: "flag cancelled", text: "CANCELLED BY USER"}) : null,
        a.description), GL.h("div", {class: "where muted small", text: site}),
      row ? GL.rules.rowNotes(row, Q.holds) : null),
    GL.h("td", {class: "c-state"}, GL.rules.rowState(a, row),
      a.state === "pending" && a.ack_escalated_at ? GL.h("div", {class: "late small", text: "overdue", title: "not acknowledged in time"}) : null,
      a.handler ? GL.h("div", {class: "small handled"}, WF.claimBanner(a.handler, a.handler_since, true)) :
        GL.h("div", {class: "muted small", text: "nobody"})));
  tr.addEventListener("click", () => select(a.id, "open"));
  tr.addEventListener("keydown", ev => { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); select(a.id, "open"); } });
  return tr;
}

async function loadQueue() {
  const [open, resolved, holds] = await Promise.all([
    GL.api("/api/alarms?state=open"), GL.api("/api/alarms?state=resolved&limit=20"), GL.api("/api/holds")]);
  const before = Q.known;
  Q.alarms = open.alarms;
  Q.known = new Set(open.alarms.map(a => a.id));
  Q.holds = GL.rules.holdsByAlarm(holds.holds);
  const tbody = GL.clear(document.querySelector("#queue tbody"));
  if (!open.alarms.length) {
    tbody.append(GL.h("tr", null, GL.h("td", {colspan: "5", class: "empty", text: "No open alarms."})));
  }
  // one row per incident, led by its most urgent alarm (GL.rules.fold)
  const rows = GL.rules.fold(open.alarms);
  Q.rows = rows;
  for (const row of rows) {
    const tr = alarmRow(row.lead, row);
    if (before && row.members.some(m => !before.has(m.id))) tr.classList.add("new");
    tbody.append(tr);
  }
  document.getElementById("queue-count").textContent =
    open.alarms.length + " open, " + open.alarms.filter(a => a.state === "pending").length + " pending" +
    (rows.length < open.alarms.length ? ", in " + rows.length + " incidents" : "");
  const rb = GL.clear(document.querySelector("#resolved tbody"));
  for (const a of resolved.alarms) {
    const tr = GL.h("tr", {class: "selectable cls-" + a.event_class, dataset: {alarmId: String(a.id)}},
      GL.h("td", null, GL.badge(a.event_class)),
      GL.h("td", null, GL.siteLink(a.account, a.site_name || a.account)),
      GL.h("td", {text: a.description}),
      GL.h("td", {class: "num", text: GL.fmtTime(a.resolved_at)}),
      GL.h("td", {text: a.resolved_by || ""}),
      GL.h("td", {text: a.note || ""}));
    tr.addEventListener("click", () => select(a.id, "kept"));
    rb.append(tr);
  }
  if (!resolved.alarms.length) {
    rb.append(GL.h("tr", null, GL.h("td", {colspan: "6", class: "empty", text: "Nothing resolved yet."})));
  }
  // the banner's alarm was acknowledged or resolved (here or on another console)
  if (Q.banner !== null && !open.alarms.some(a => a.id === Q.banner && a.state === "pending")) hideBanner();
  const linked = location.hash.match(/^#alarm-(\d+)$/);
  if (before === null && linked) {
    const id = parseInt(linked[1], 10);
    return select(id, Q.known.has(id) ? "open" : "kept");
  }
  if (Q.mode === "open" && !Q.known.has(Q.selected)) Q.mode = "auto";  // it left the queue
  if (Q.mode === "auto") {
    const top = rows.length ? rows[0].lead.id : null;
    if (top !== Q.selected) return show(top);
  }
  if (Q.selected !== null) loadDetail();
}

// The operator picks an alarm ("open" from the queue, "kept" otherwise).
function select(id, mode) {
  Q.mode = mode;
  if (id === Q.banner) hideBanner();
  show(id);
}

function show(id) {
  if (id !== Q.selected) Q.shown = null;
  Q.selected = id;
  document.querySelectorAll("#queue tbody tr").forEach(tr => {
    const on = tr.dataset.alarmId === String(id);
    tr.classList.toggle("selected", on);
    tr.setAttribute("aria-selected", on ? "true" : "false");
  });
  if (id === null) {
    const box = GL.clear(document.getElementById("detail"));
    delete box.dataset.alarmId;
    box.append(GL.h("p", {class: "muted", text: "No alarm selected."}));
    return;
  }
  loadDetail();
}

function kv(pairs) {
  const dl = GL.h("dl", {class: "kv"});
  for (const [k, v] of pairs) dl.append(GL.h("dt", {text: k}), GL.h("dd", null, v === null || v === "" ? "—" : v));
  return dl;
}

// Where the panel says it was (a vehicle unit's position, native or DC-09
// X/Y): the coordinates and a link to a map; the small map below the
// details shows it from the receiver's own map layers (vehicles.js).
function locationView(loc) {
  const text = loc.lat.toFixed(5) + ", " + loc.lon.toFixed(5);
  const url = "https://www.openstreetmap.org/?mlat=" + loc.lat + "&mlon=" + loc.lon +
    "#map=17/" + loc.lat + "/" + loc.lon;
  return GL.h("span", {id: "location"}, text + " ",
    GL.h("a", {href: url, target: "_blank", rel: "noopener noreferrer", text: "open map"}));
}

async function loadDetail() {
  const id = Q.selected;
  let d, r, w;
  try {
    [d, r, w] = await Promise.all([GL.api("/api/alarms/" + id), GL.api("/api/alarms/" + id + "/rules"),
      GL.api("/api/alarms/" + id + "/workflow")]);
  } catch (e) { return; }
  if (id !== Q.selected) return;
  // the claim's banner counts seconds (the page counts them itself): not a change
  const json = JSON.stringify([d, r, Object.assign({}, w, {claim: Object.assign({}, w.claim, {banner: ""})})]);
  if (json === Q.shown) return;  // nothing changed: keep what the operator is doing (a passcode being typed)
  Q.shown = json;
  const a = d.alarm;
  const focused = document.activeElement && document.activeElement.id;
  const box = GL.clear(document.getElementById("detail"));
  box.dataset.alarmId = String(a.id);
  const ctx = {alarm: a, msg: GL.h("p", {class: "error", role: "alert", id: "act-error"}),
    reload: async function () { Q.shown = null; await loadQueue(); },
    typing: function () { if (Q.mode === "auto") Q.mode = "open"; }};  // being handled: do not switch
  box.append(GL.h("h3", null, GL.badge(a.event_class), " ", a.description));
  WF.top(box, w, ctx);
  box.append(
    kv([
      ["Alarm", "#" + a.id],
      ["State", GL.stateLabel(a.state)],
      ["Site", a.site_name || "(unnamed)"],
      ["Address", a.site_address],
      ["Account", GL.siteLink(a.account)],
      ["Region", a.region],
      ["Partition", a.partition ? a.partition + (a.partition_name ? " · " + a.partition_name : "") : "—"],
      [NUMBER_TITLE[a.number_kind] || "Number", a.number_label || "—"],
      ["Contact ID", a.contact_id + " " + a.code_name],
      ["Received", GL.fmtTime(a.created_at) + " (" + GL.ago(a.created_at) + ")"],
      ["Panel time", d.event && d.event.event_time ? GL.fmtTime(d.event.event_time) : "—"],
      ["Restored", a.restored_at ? GL.fmtTime(a.restored_at) : "not yet"],
    ].concat(d.event && d.event.location ? [["Location", locationView(d.event.location)]] : [])));
  if (d.event && d.event.location) {
    const el = GL.h("div", {class: "small-map", id: "alarm-map", role: "img",
      "aria-label": "Where the alarm's event was: " + d.event.location.lat.toFixed(5) + ", " + d.event.location.lon.toFixed(5)});
    box.append(el);
    GLV.smallMap(el, {lat: d.event.location.lat, lon: d.event.location.lon, label: a.description});
  }
  if (a.state !== "resolved") {
    // no position in the event: a vehicle's last known one (from the
    // patrols' answer) goes where the event's would have been
    const lastBox = GL.h("div");
    box.append(lastBox, GL.h("h3", {text: "Patrols"}));
    const pbox = GL.h("div");
    box.append(pbox);
    GLV.patrolPanel(pbox, a.id, {onChange: () => { Q.shown = null; loadDetail(); }})
      .then(p => { if (!(d.event && d.event.location)) GLV.lastKnown(lastBox, p, a.description); });
  }
  // the incident, a held zone and the restore (GL.rules, the centre's rules)
  box.append.apply(box, GL.rules.detail(r, a, mid => select(mid, Q.known.has(mid) ? "open" : "kept"), loadQueue));
  box.append(GL.h("h3", {text: "Dispatch"}));
  if (!d.dispatch.length) box.append(GL.h("p", {class: "muted", text: "Not routed to any dispatch centre."}));
  else box.append(GL.h("table", {id: "dispatch"}, GL.h("tbody", null, d.dispatch.map(r => GL.h("tr", null,
    GL.h("td", {text: r.level.replace(/_/g, " ")}), GL.h("td", {text: r.center_name}),
    GL.h("td", {text: r.output || ""}),
    GL.h("td", null, GL.h("span", {class: "pill " + (r.state === "delivered" ? "ok" : r.state === "retrying" ? "bad" : "warn"),
      text: r.state + (r.attempts ? " (" + r.attempts + " tries)" : "")}),
      r.last_error ? GL.h("div", {class: "muted small last-error",
        text: "Last try " + GL.fmtTime(r.last_attempt_at) + ": " + r.last_error + "."}) : null))))));

  WF.plan(box, w, ctx);
  WF.calls(box, w, ctx);
  WF.resolve(box, w, ctx);

  box.append(GL.h("h3", {text: "Audit trail"}));
  box.append(GL.h("ol", {class: "audit", id: "audit"}, w.trail.map(r => GL.h("li", null,
    GL.h("strong", {text: GL.fmtTime(r.at)}), " ", GL.h("span", {class: "what", text: r.text}),
    r.note ? GL.h("span", {class: "note", text: r.note}) : null))));
  if (a.id === Q.banner && a.state !== "pending") hideBanner();
  // a re-render keeps the field the operator was in
  if (focused) { const el = document.getElementById(focused); if (el) el.focus(); }
}

function hideBanner() {
  Q.banner = null;
  const b = document.getElementById("banner");
  b.classList.add("hidden");
  delete b.dataset.alarmId;
}

function newAlarm(msg) {
  // A new alarm that goes to the top of the queue (nothing open is more
  // urgent): flash a banner and beep.
  const top = Q.alarms.length ? Math.min.apply(null, Q.alarms.map(a => a.priority)) : Infinity;
  if (msg.priority <= top) {
    Q.banner = msg.alarm_id;
    const b = GL.clear(document.getElementById("banner"));
    b.className = "banner " + msg.event_class;
    b.dataset.alarmId = String(msg.alarm_id);
    b.append(GL.h("span", {text: "NEW " + (GL.CLASS_LABEL[msg.event_class] || msg.event_class).toUpperCase() +
      " ALARM — account " + msg.account + ": " + msg.description}),
      GL.h("button", {type: "button", text: "Show", onclick: () => select(msg.alarm_id, "open")}));
    GL.beep();
  }
}

const reload = GL.debounce(loadQueue, 150);

// A link to an alarm on this page ("/#alarm-N": a duress passcode's new
// hold-up, an escalation alert's Show) changes only the hash: open it.
window.addEventListener("hashchange", () => {
  const linked = location.hash.match(/^#alarm-(\d+)$/);
  if (!linked || Q.known === null) return;  // the first load opens it
  const id = parseInt(linked[1], 10);
  select(id, Q.known.has(id) ? "open" : "kept");
});

GL.start("queue", {
  load: loadQueue,
  alarm: function (msg) {
    if (msg.state === "pending" && msg.event_id !== undefined) newAlarm(msg);
    reload();
  },
  // a patrol dispatched, arrived, or changed its status: the selected
  // alarm's patrols and audit trail again
  patrol: function () { if (Q.selected !== null) { Q.shown = null; loadDetail(); } },
  rules: reload,  // a held zone counted a signal, a zone released, a test ...
  // someone worked an alarm (a claim, a step, a call), an escalation fired,
  // or a site's notes changed: the queue's banners and the detail follow
  workflow: reload,
  escalation: reload,
  site: reload,
});

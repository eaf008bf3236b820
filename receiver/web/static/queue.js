// The alarm queue: open alarms by priority then age, live; the selected
// alarm's details, dispatch state and audit trail; acknowledge and resolve.
"use strict";

// notes: what the operator typed per alarm, kept across live re-renders
// of the detail panel; shown: the detail data last rendered.
const Q = {alarms: [], selected: null, known: null, notes: {}, shown: null};

function alarmRow(a) {
  const tr = GL.h("tr", {class: "selectable cls-" + a.event_class + (a.id === Q.selected ? " selected" : ""),
    tabindex: "0", dataset: {alarmId: String(a.id)}, "aria-selected": a.id === Q.selected ? "true" : "false"},
    GL.h("td", null, GL.badge(a.event_class)),
    GL.h("td", {class: "num", title: GL.fmtTime(a.created_at)}, GL.fmtTime(a.created_at),
      GL.h("div", {class: "muted small", text: GL.ago(a.created_at)})),
    GL.h("td", null, GL.h("div", null, a.site_name || "(unnamed site)"),
      GL.h("div", {class: "muted small"}, "account ", GL.siteLink(a.account))),
    GL.h("td", {text: a.partition ? a.partition + (a.partition_name ? " · " + a.partition_name : "") : "—"}),
    GL.h("td", {text: a.zone ? a.zone + (a.zone_name ? " · " + a.zone_name : "") : "—"}),
    GL.h("td", null, GL.h("div", {text: a.description}), GL.h("div", {class: "muted small", text: a.contact_id})),
    GL.h("td", null, GL.stateLabel(a.state)));
  tr.addEventListener("click", () => select(a.id));
  tr.addEventListener("keydown", ev => { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); select(a.id); } });
  return tr;
}

async function loadQueue() {
  const [open, resolved] = await Promise.all([
    GL.api("/api/alarms?state=open"), GL.api("/api/alarms?state=resolved&limit=20")]);
  const before = Q.known;
  Q.alarms = open.alarms;
  Q.known = new Set(open.alarms.map(a => a.id));
  const tbody = GL.clear(document.querySelector("#queue tbody"));
  if (!open.alarms.length) {
    tbody.append(GL.h("tr", null, GL.h("td", {colspan: "7", class: "empty", text: "No open alarms."})));
  }
  for (const a of open.alarms) {
    const tr = alarmRow(a);
    if (before && !before.has(a.id)) tr.classList.add("new");
    tbody.append(tr);
  }
  document.getElementById("queue-count").textContent =
    open.alarms.length + " open, " + open.alarms.filter(a => a.state === "pending").length + " pending";
  const rb = GL.clear(document.querySelector("#resolved tbody"));
  for (const a of resolved.alarms) {
    const tr = GL.h("tr", {class: "selectable cls-" + a.event_class, dataset: {alarmId: String(a.id)}},
      GL.h("td", null, GL.badge(a.event_class)),
      GL.h("td", null, GL.siteLink(a.account, a.site_name || a.account)),
      GL.h("td", {text: a.description}),
      GL.h("td", {class: "num", text: GL.fmtTime(a.resolved_at)}),
      GL.h("td", {text: a.resolved_by || ""}),
      GL.h("td", {text: a.note || ""}));
    tr.addEventListener("click", () => select(a.id));
    rb.append(tr);
  }
  if (!resolved.alarms.length) {
    rb.append(GL.h("tr", null, GL.h("td", {colspan: "6", class: "empty", text: "Nothing resolved yet."})));
  }
  const linked = location.hash.match(/^#alarm-(\d+)$/);
  if (Q.selected === null && linked) select(parseInt(linked[1], 10));
  else if (Q.selected === null && open.alarms.length) select(open.alarms[0].id);
  else if (Q.selected !== null) loadDetail();
}

function select(id) {
  if (id !== Q.selected) Q.shown = null;
  Q.selected = id;
  document.querySelectorAll("#queue tbody tr").forEach(tr => {
    const on = tr.dataset.alarmId === String(id);
    tr.classList.toggle("selected", on);
    tr.setAttribute("aria-selected", on ? "true" : "false");
  });
  loadDetail();
}

function kv(pairs) {
  const dl = GL.h("dl", {class: "kv"});
  for (const [k, v] of pairs) dl.append(GL.h("dt", {text: k}), GL.h("dd", null, v === null || v === "" ? "—" : v));
  return dl;
}

// Where the panel says it is (DC-09 extended data X/Y): the coordinates and
// a link to a map; the map in the page comes with the mobile-units work.
function locationView(loc) {
  const text = loc.lat.toFixed(5) + ", " + loc.lon.toFixed(5);
  const url = "https://www.openstreetmap.org/?mlat=" + loc.lat + "&mlon=" + loc.lon +
    "#map=17/" + loc.lat + "/" + loc.lon;
  return GL.h("span", {id: "location"}, text + " ",
    GL.h("a", {href: url, target: "_blank", rel: "noopener noreferrer", text: "open map"}));
}

async function loadDetail() {
  const id = Q.selected;
  let d;
  try { d = await GL.api("/api/alarms/" + id); } catch (e) { return; }
  if (id !== Q.selected) return;
  const json = JSON.stringify(d);
  if (json === Q.shown) return;  // nothing changed: keep what the operator is doing
  Q.shown = json;
  const a = d.alarm;
  const hadFocus = document.activeElement && document.activeElement.id === "note";
  const box = GL.clear(document.getElementById("detail"));
  box.dataset.alarmId = String(a.id);
  box.append(
    GL.h("h3", null, GL.badge(a.event_class), " ", a.description),
    kv([
      ["Alarm", "#" + a.id],
      ["State", GL.stateLabel(a.state)],
      ["Site", a.site_name || "(unnamed)"],
      ["Address", a.site_address],
      ["Account", GL.siteLink(a.account)],
      ["Region", a.region],
      ["Partition", a.partition ? a.partition + (a.partition_name ? " · " + a.partition_name : "") : "—"],
      ["Zone", a.zone ? a.zone + (a.zone_name ? " · " + a.zone_name : "") : "—"],
      ["Contact ID", a.contact_id + " " + a.code_name],
      ["Received", GL.fmtTime(a.created_at) + " (" + GL.ago(a.created_at) + ")"],
      ["Panel time", d.event && d.event.event_time ? GL.fmtTime(d.event.event_time) : "—"],
      ["Restored", a.restored_at ? GL.fmtTime(a.restored_at) : "not yet"],
    ].concat(d.event && d.event.location ? [["Location", locationView(d.event.location)]] : [])));
  if (d.contacts && d.contacts.length) {
    box.append(GL.h("h3", {text: "Contacts"}),
      GL.h("ul", null, d.contacts.map(c => GL.h("li", {text: [c.name, c.role, c.phone].filter(Boolean).join(" · ")}))));
  }
  box.append(GL.h("h3", {text: "Dispatch"}));
  if (!d.dispatch.length) box.append(GL.h("p", {class: "muted", text: "Not routed to any dispatch centre."}));
  else box.append(GL.h("table", {id: "dispatch"}, GL.h("tbody", null, d.dispatch.map(r => GL.h("tr", null,
    GL.h("td", {text: r.level.replace(/_/g, " ")}), GL.h("td", {text: r.center_name}),
    GL.h("td", {text: r.output || ""}),
    GL.h("td", null, GL.h("span", {class: "pill " + (r.state === "delivered" ? "ok" : r.state === "retrying" ? "bad" : "warn"),
      text: r.state + (r.attempts ? " (" + r.attempts + " tries)" : "")}),
      r.last_error ? GL.h("div", {class: "muted small", text: r.last_error}) : null))))));

  box.append(GL.h("h3", {text: "Audit trail"}));
  box.append(GL.h("ol", {class: "audit", id: "audit"}, d.audit.map(r => GL.h("li", null,
    GL.h("strong", {text: GL.fmtTime(r.at)}), " ",
    GL.h("span", {class: "actor", text: r.actor}), " ",
    GL.h("span", {class: "muted", text: (r.from_state ? r.from_state + " → " : "") + r.to_state}),
    r.note ? GL.h("span", {class: "note", text: r.note}) : null))));

  if (a.state !== "resolved" && GL.can("alarm.act")) {
    const actions = GL.h("div", {class: "actions"});
    const msg = GL.h("p", {class: "error", role: "alert"});
    if (a.state === "pending") {
      actions.append(GL.h("button", {type: "button", class: "primary", id: "ack", text: "Acknowledge",
        onclick: () => act("acknowledge", null, msg)}));
    }
    const note = GL.h("textarea", {id: "note", placeholder: "What was done (police dispatched, keyholder called, false alarm…)"});
    note.value = Q.notes[a.id] || "";
    note.addEventListener("input", () => { Q.notes[a.id] = note.value; });
    actions.append(GL.h("label", {for: "note", text: "Resolution note"}), note,
      GL.h("button", {type: "button", id: "resolve", text: "Resolve",
        onclick: () => act("resolve", note.value, msg)}), msg);
    box.append(actions);
    if (hadFocus) note.focus();
  }
}

async function act(action, note, msg) {
  msg.textContent = "";
  try {
    await GL.api("/api/alarms/" + Q.selected + "/" + action, {method: "POST", body: note === null ? {} : {note: note}});
    if (action === "resolve") delete Q.notes[Q.selected];
    hideBanner();
  } catch (e) {
    msg.textContent = e.message;
    return;
  }
  await loadQueue();
}

function hideBanner() { document.getElementById("banner").classList.add("hidden"); }

function newAlarm(msg) {
  // A new alarm that goes to the top of the queue (nothing open is more
  // urgent): flash a banner and beep.
  const top = Q.alarms.length ? Math.min.apply(null, Q.alarms.map(a => a.priority)) : Infinity;
  if (msg.priority <= top) {
    const b = GL.clear(document.getElementById("banner"));
    b.className = "banner " + msg.event_class;
    b.append(GL.h("span", {text: "NEW " + (GL.CLASS_LABEL[msg.event_class] || msg.event_class).toUpperCase() +
      " ALARM — account " + msg.account + ": " + msg.description}),
      GL.h("button", {type: "button", text: "Show", onclick: () => { hideBanner(); select(msg.alarm_id); }}));
    GL.beep();
  }
}

const reload = GL.debounce(loadQueue, 150);

GL.start("queue", {
  load: loadQueue,
  alarm: function (msg) {
    if (msg.state === "pending" && msg.event_id !== undefined) newAlarm(msg);
    reload();
  },
});

// The centre's rules in the alarm queue and the alarm view (issue 18):
// incidents (alarms of a site grouped under the first), held zones
// ("zone 4: 37 more signals", release), restores.  Loaded after common.js
// on the queue page; queue.js calls GL.rules.fold, GL.rules.rowNotes and
// GL.rules.detail.
"use strict";

GL.rules = {};

// Open alarms as the queue's rows: an alarm whose incident head is another
// open alarm is folded into the head's row; a row is led by its most
// urgent open member (ties: the oldest), and rows go most urgent first,
// then oldest first.  Members of an incident whose head is resolved stand
// alone again (nothing is hidden under a closed row).
GL.rules.fold = function (alarms) {
  const open = new Map(alarms.map(a => [a.id, a]));
  const groups = new Map();
  for (const a of alarms) {
    const head = a.incident_id !== null && a.incident_id !== undefined && open.has(a.incident_id) ? a.incident_id : a.id;
    if (!groups.has(head)) groups.set(head, []);
    groups.get(head).push(a);
  }
  const rows = [];
  for (const [head, members] of groups) {
    members.sort((x, y) => x.created_at - y.created_at || x.id - y.id);
    const lead = members.slice().sort((x, y) => x.priority - y.priority || x.created_at - y.created_at || x.id - y.id)[0];
    rows.push({head: open.get(head), lead: lead, members: members});
  }
  rows.sort((x, y) => x.lead.priority - y.lead.priority || x.head.created_at - y.head.created_at || x.head.id - y.head.id);
  return rows;
};

// A queue row's state: its lead's, but "pending" (and how many) while any
// member is: a new alarm joining an incident already acknowledged must not
// read as being handled.
GL.rules.rowState = function (lead, row) {
  const pending = row ? row.members.filter(m => m.state === "pending").length : 0;
  if (lead.state === "pending" || !pending) return GL.stateLabel(lead.state);
  return GL.h("span", null, GL.stateLabel("pending"),
    GL.h("div", {class: "muted small", text: pending + " of " + row.members.length + " new"}));
};

// The short name of an alarm inside an incident line: "hold-up zone 4".
GL.rules.shortName = function (a) {
  return (GL.CLASS_LABEL[a.event_class] || a.event_class).toLowerCase() +
    (a.number_label ? " " + a.number_label.replace(/ \(.*\)$/, "") : "");
};

// What a queue row shows under its alarm: the incident ("incident of 3
// alarms: ...") and a held zone's count ("zone 4: 37 more signals").
GL.rules.rowNotes = function (row, holds) {
  const out = [];
  if (row.members.length > 1) {
    // "burglary zone 3, 5 × burglary zone 2": each kind once, in order
    const counts = new Map();
    for (const m of row.members) {
      const k = GL.rules.shortName(m);
      counts.set(k, (counts.get(k) || 0) + 1);
    }
    const parts = Array.from(counts, ([k, n]) => (n > 1 ? n + " × " : "") + k);
    out.push(GL.h("div", {class: "incident-line small", text: "incident of " + row.members.length +
      " alarms: " + parts.join(", ")}));
  }
  for (const m of row.members) {
    const h = holds.get(m.id);
    if (h) out.push(GL.h("div", {class: "hold-line small"}, GL.h("span", {class: "pill warn", text: "HELD"}), " " + h.sentence));
  }
  return out;
};

GL.rules.holdsByAlarm = function (holds) {
  return new Map(holds.map(h => [h.alarm_id, h]));
};

// The alarm view's sections from /api/alarms/{id}/rules: the incident's
// members, the held zone and its signals, the restore.
GL.rules.detail = function (r, a, onSelect, onChange) {
  const out = [];
  if (r.resolved_by_restore) {
    out.push(GL.h("p", {class: "restored-note", text: "Restored at " + GL.fmtTime(a.restored_at) +
      " and resolved by the receiver (disposition \"restored\")."}));
  } else if (r.restore) {
    out.push(GL.h("p", {class: "restored-note", text: "Restored at " + GL.fmtTime(r.restore.received_at) +
      ": " + r.restore.description + ". The alarm stays open until an operator resolves it."}));
  }
  if (r.hold) {
    const h = r.hold;
    const box = GL.h("div", {class: "hold-box", id: "hold"},
      GL.h("h3", {text: "Held zone"}),
      GL.h("p", null, GL.h("strong", {text: h.sentence}), h.released_at ? " (released by " + h.released_by + " at " + GL.fmtTime(h.released_at) + ")" : ""),
      GL.h("p", {class: "muted small", text: h.reason + ". " + (h.count ? "First counted " + GL.fmtTime(h.first) +
        ", last " + GL.fmtTime(h.last) + "." : "Nothing counted yet.")}));
    if (h.events && h.events.length) {
      box.append(GL.h("ul", {class: "signals small"}, h.events.slice(0, 5).map(e =>
        GL.h("li", {text: GL.fmtTime(e.received_at) + " " + e.description}))));
    }
    if (!h.released_at && GL.can("zone.release")) {
      const msg = GL.h("p", {class: "error", role: "alert"});
      box.append(GL.h("button", {type: "button", id: "release-zone", text: "Release zone " + h.zone, onclick: async function () {
        msg.textContent = "";
        try {
          await GL.api("/api/accounts/" + encodeURIComponent(h.account) + "/zones/" + h.zone + "/release", {method: "POST"});
        } catch (e) { msg.textContent = e.message; return; }
        onChange();
      }}), msg);
    }
    out.push(box);
  }
  if (r.incident && r.incident.members.length > 1) {
    const ul = GL.h("ul", {class: "incident", id: "incident"});
    for (const m of r.incident.members) {
      const here = m.id === a.id;
      ul.append(GL.h("li", {class: here ? "here" : null, dataset: {alarmId: String(m.id)}},
        GL.badge(m.event_class), " ",
        here ? GL.h("span", {text: m.description}) :
          GL.h("a", {href: "#alarm-" + m.id, text: m.description, onclick: ev => { ev.preventDefault(); onSelect(m.id); }}),
        GL.h("span", {class: "muted small", text: " " + GL.fmtTime(m.created_at) + " · " + m.state + (m.id === r.incident.id ? " · first" : "")})));
    }
    out.push(GL.h("h3", {text: "Incident #" + r.incident.id + ": " + r.incident.members.length + " alarms of this site"}), ul);
  }
  return out;
};

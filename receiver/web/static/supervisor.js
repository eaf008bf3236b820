// The supervisor queue: open alarms not resolved within their time
// (receiver.workflow.escalation "resolve"), oldest deadline first, with who
// handles each and for how long.  Supervisors and administrators only.
"use strict";

async function load() {
  const d = await GL.api("/api/supervisor-queue");
  const tb = GL.clear(document.querySelector("#supervisor-queue tbody"));
  document.getElementById("sq-count").textContent = d.alarms.length + " open past their time";
  if (!d.alarms.length) tb.append(GL.h("tr", null, GL.h("td", {colspan: "7", class: "empty", text: "Nothing is late."})));
  for (const a of d.alarms) {
    tb.append(GL.h("tr", {class: "cls-" + a.event_class, dataset: {alarmId: String(a.id)}},
      GL.h("td", null, GL.badge(a.event_class)),
      GL.h("td", null, GL.h("a", {href: "/#alarm-" + a.id, text: "#" + a.id + " " + a.description})),
      GL.h("td", null, GL.siteLink(a.account, a.site_name || a.account)),
      GL.h("td", {class: "num", text: GL.fmtTime(a.created_at)}),
      GL.h("td", {class: "num", text: GL.fmtTime(a.resolve_due_at) + " (" + a.resolve_within_min + " min)"}),
      GL.h("td", null, GL.stateLabel(a.state)),
      GL.h("td", null, a.handler ? WF.claimBanner(a.handler, a.handler_since) : GL.h("span", {class: "late", text: "nobody"}))));
  }
}

const reload = GL.debounce(load, 300);
GL.start("supervisor", {load: load, alarm: reload, workflow: reload, escalation: reload});

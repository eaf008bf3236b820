// Dispatch: where each alarm was routed (police station, district command,
// municipal centre) and whether the outbox has delivered it.
"use strict";

const PILL = {delivered: "ok", queued: "warn", retrying: "bad", unknown: "", "no output": "warn"};

async function load() {
  const d = await GL.api("/api/dispatch");
  const tb = GL.clear(document.querySelector("#dispatch-alarms tbody"));
  if (!d.alarms.length) tb.append(GL.h("tr", null, GL.h("td", {colspan: "5", class: "empty", text: "No alarms."})));
  for (const a of d.alarms) {
    const routed = a.dispatch.length ? GL.h("ul", {class: "small"}, a.dispatch.map(r => GL.h("li", null,
      r.level.replace(/_/g, " ") + ": " + r.center_name + (r.output ? " via " + r.output : "") + " ",
      GL.h("span", {class: "pill " + (PILL[r.state] || ""), text: r.state + (r.attempts ? " (" + r.attempts + " tries)" : "")}),
      r.last_error ? GL.h("div", {class: "muted small last-error",
        text: "Last try " + GL.fmtTime(r.last_attempt_at) + ": " + r.last_error + "."}) : null)))
      : GL.h("span", {class: "muted", text: "not routed"});
    tb.append(GL.h("tr", {class: "cls-" + a.event_class, dataset: {alarmId: String(a.id)}},
      GL.h("td", null, GL.badge(a.event_class)),
      GL.h("td", null, GL.siteLink(a.account, a.site_name || a.account), GL.h("div", {class: "muted small", text: a.region || ""})),
      GL.h("td", {text: a.description}), GL.h("td", null, GL.stateLabel(a.state)), GL.h("td", null, routed)));
  }
  const ob = GL.clear(document.querySelector("#outputs tbody"));
  if (!d.outputs.length) ob.append(GL.h("tr", null, GL.h("td", {colspan: "5", class: "empty", text: "No outputs configured."})));
  d.outputs.forEach(o => ob.append(GL.h("tr", {dataset: {output: o.name}}, GL.h("td", {text: o.name}), GL.h("td", {text: o.type}),
    GL.h("td", {text: o.target}),
    GL.h("td", null, o.failing ? [GL.h("span", {class: "pill bad", text: "FAILING since " + GL.fmtTime(o.failing_since) +
      " (" + o.failures + (o.failures === 1 ? " try)" : " tries)")}),
      GL.h("div", {class: "small last-error", text: o.last_error + "."})]
      : GL.h("span", {class: "pill ok", text: "delivering"})),
    GL.h("td", null, GL.h("span", {class: "pill " + (o.pending ? "warn" : "ok"), text: String(o.pending)})))));
  const cb = GL.clear(document.querySelector("#centers tbody"));
  if (!d.centers.length) cb.append(GL.h("tr", null, GL.h("td", {colspan: "3", class: "empty", text: "No dispatch centres configured."})));
  d.centers.forEach(c => cb.append(GL.h("tr", null, GL.h("td", {text: c.name}), GL.h("td", {text: c.level.replace(/_/g, " ")}),
    GL.h("td", {text: c.outputs.join(", ")}))));
}

const reload = GL.debounce(load, 300);
GL.start("dispatch", {load: load, alarm: reload, output: reload});
setInterval(load, 10000);  // delivery progress is not pushed by the receiver

// Supervisors: rejected frames (wrong key, replay, bad MAC ...) and the
// console's own audit log (logins, failed logins, user changes, actions).
"use strict";

async function load() {
  const [sec, aud] = await Promise.all([GL.api("/api/security-events"), GL.api("/api/audit")]);
  const sb = GL.clear(document.querySelector("#security tbody"));
  if (!sec.security_events.length) sb.append(GL.h("tr", null, GL.h("td", {colspan: "6", class: "empty", text: "No rejected frames."})));
  sec.security_events.forEach(e => sb.append(GL.h("tr", null, GL.h("td", {class: "num", text: GL.fmtTime(e.at)}),
    GL.h("td", {text: e.account || "?"}), GL.h("td", {text: e.reason}), GL.h("td", {text: e.detail}),
    GL.h("td", {text: e.peer}), GL.h("td", {text: e.transport}))));
  const ab = GL.clear(document.querySelector("#audit-log tbody"));
  aud.audit.forEach(r => ab.append(GL.h("tr", null, GL.h("td", {class: "num", text: GL.fmtTime(r.at)}),
    GL.h("td", {text: r.actor}), GL.h("td", {text: r.action}), GL.h("td", {text: r.detail}), GL.h("td", {text: r.ip}))));
}

const reload = GL.debounce(load, 500);
GL.start("security", {load: load, security: reload, alarm: reload});

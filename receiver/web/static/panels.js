// Panels overview: every account with its connection and supervision state;
// filters "not heard" (a supervised path failed), "in alarm", "trouble".
"use strict";

const P = {filter: "", q: ""};

async function load() {
  const qs = new URLSearchParams({filter: P.filter, q: P.q});
  const d = await GL.api("/api/panels?" + qs);
  for (const el of document.querySelectorAll("[data-count]")) el.textContent = "(" + d.counts[el.dataset.count] + ")";
  const tbody = GL.clear(document.querySelector("#panels tbody"));
  if (!d.panels.length) tbody.append(GL.h("tr", null, GL.h("td", {colspan: "8", class: "empty", text: "No panels match."})));
  for (const p of d.panels) {
    // a path is "ok" only once it has been heard: before that it is waiting
    // (never heard, or not since the receiver started) and fails at its deadline
    const sup = p.supervised ? p.supervision.map(s => GL.h("span", {
      class: "pill " + (s.state !== "ok" ? "bad" : s.heard === "yes" ? "ok" : "warn"),
      text: s.path_name + (s.state !== "ok" ? " FAILED" : s.heard === "yes" ? " ok" : " waiting")}))
      : [GL.h("span", {class: "muted", text: "not supervised"})];
    tbody.append(GL.h("tr", {class: p.top_class ? "cls-" + p.top_class : null, dataset: {account: p.number}},
      GL.h("td", null, GL.siteLink(p.number)),
      GL.h("td", null, GL.h("div", {text: p.site_name || "—"}), GL.h("div", {class: "muted small", text: p.site_address})),
      GL.h("td", {text: p.region || "—"}),
      GL.h("td", null, p.connected ? GL.h("span", {class: "pill ok", text: "connected"})
        : GL.h("span", {class: "pill", text: p.protocol === "native" ? "no link" : p.protocol})),
      GL.h("td", null, sup),
      GL.h("td", {class: "num last-heard", title: GL.fmtTime(p.last_heard),
        text: p.last_heard ? GL.ago(p.last_heard) : p.heard ? GL.heardText(p.heard, null) : "—"}),
      GL.h("td", null, p.open_alarms ? [GL.badge(p.top_class), " " + p.open_alarms] : "—"),
      GL.h("td", null, p.trouble ? GL.h("span", {class: "pill bad", text: p.open_conditions + " open"}) : "—")));
  }
  document.getElementById("panels-note").textContent = d.total > d.panels.length ?
    "Showing " + d.panels.length + " of " + d.total + "; narrow the search." : d.total + " panels.";
}

for (const b of document.querySelectorAll("[data-filter]")) {
  b.addEventListener("click", function () {
    P.filter = b.dataset.filter;
    document.querySelectorAll("[data-filter]").forEach(x => x.setAttribute("aria-pressed", x === b ? "true" : "false"));
    load();
  });
}
const search = GL.debounce(function () { P.q = document.getElementById("q").value; load(); }, 250);
document.getElementById("q").addEventListener("input", search);

const reload = GL.debounce(load, 500);
GL.start("panels", {load: load, alarm: reload, supervision: reload});
setInterval(load, 30000);  // "last heard" ages and connection changes

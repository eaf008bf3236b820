// Plans: the action plans and dispositions in force (from the store, the
// same on every receiver), which plan an alarm would get and why, the
// escalation timers; administrators (workflow.manage) edit the files here
// as TOML with Check and Save: the same checks, errors and versions as
// `guardline-receiver plans load`.  An alarm keeps the plan it opened with.
"use strict";

const KIND_WORDS = {call: "call", verify_passcode: "verify passcode", dispatch: "dispatch", notify: "notify",
  wait: "wait", instruction: "instruction"};

function stepLine(s) {
  const extra = s.call_order ? " (" + s.call_order + " list)" : s.target ? " → " + s.target.replace(/_/g, " ") :
    s.to ? " → " + s.to + (s.role ? " (" + s.role + ")" : "") : s.minutes ? " " + s.minutes + " min" : "";
  return (s.title || KIND_WORDS[s.kind] + extra) + (s.mandatory === false ? " (optional)" : "");
}

async function load() {
  const [p, d] = await Promise.all([GL.api("/api/plans"), GL.api("/api/dispositions")]);
  const f = p.file;
  document.getElementById("plans-file").textContent = "In force: " + (f.label || "plans") +
    (f.hash ? " (" + f.hash.slice(0, 12) + "), loaded by " + f.loaded_by + " at " + GL.fmtTime(f.loaded_at) +
      " from " + f.source : " (built in: no plans file loaded)") + ".";
  const box = GL.clear(document.getElementById("plans"));
  for (const pl of p.plans) {
    box.append(GL.h("div", {class: "card plan", dataset: {plan: pl.name}},
      GL.h("h3", null, pl.title + " ", GL.h("span", {class: "muted small", text: pl.name + " · " + pl.version})),
      GL.h("ol", null, pl.steps.map(s => GL.h("li", null, stepLine(s),
        s.text ? GL.h("div", {class: "muted small", text: s.text}) : null)))));
  }
  const rows = [["center", "default", p.fallback]];
  Object.entries(p.center).forEach(([k, v]) => rows.push(["center", k, v]));
  Object.entries(p.regions).forEach(([r, t]) => Object.entries(t).forEach(([k, v]) => rows.push(["region " + r, k, v])));
  Object.entries(p.sites).forEach(([a, t]) => Object.entries(t).forEach(([k, v]) => rows.push(["site " + a, k, v])));
  GL.clear(document.querySelector("#assignments tbody")).append(...rows.map(r =>
    GL.h("tr", null, r.map(x => GL.h("td", {text: x})))));
  const esc = p.escalation;
  const erows = [["default", esc.default.ack_within_s, esc.default.resolve_within_min]];
  Object.entries(esc.classes).forEach(([k, v]) => erows.push([GL.CLASS_LABEL[k] || k, v.ack_within_s, v.resolve_within_min]));
  Object.entries(esc.priorities).forEach(([k, v]) => erows.push(["priority " + k, v.ack_within_s, v.resolve_within_min]));
  GL.clear(document.querySelector("#escalation tbody")).append(...erows.map(r => GL.h("tr", null,
    GL.h("td", {text: r[0]}), GL.h("td", {text: r[1] ? r[1] + " s" : "(default)"}),
    GL.h("td", {text: r[2] ? r[2] + " min" : "(default)"}))));
  GL.clear(document.querySelector("#dispositions tbody")).append(...d.dispositions.map(x => GL.h("tr", null,
    GL.h("td", {text: x.code}), GL.h("td", {text: x.label + (x.pick ? "" : " (receiver only)")}),
    GL.h("td", {text: x.category}), GL.h("td", {text: x.classes.join(", ") || "all"}))));
  if (p.may_edit && !document.getElementById("plans-editor")) editor();
}

async function editor() {
  const box = document.getElementById("editor");
  for (const kind of ["plans", "dispositions"]) {
    let f;
    try { f = await GL.api("/api/workflow-files/" + kind); } catch (e) { continue; }
    const text = GL.h("textarea", {class: "editor", id: kind + "-editor", spellcheck: "false"});
    text.value = f.text;
    const out = GL.h("p", {id: kind + "-result", role: "status"});
    const send = async function (check) {
      out.className = "";
      try {
        const r = await GL.api("/api/workflow-files/" + kind, {method: "POST", body: {text: text.value, check: check}});
        out.textContent = check ? "The file is good (" + r.hash.slice(0, 12) + ")." :
          (r.changed ? "Saved: in force now (" + r.hash.slice(0, 12) + "). Open alarms keep the plan they opened with." :
            "Nothing changed: this version is in force already.");
        if (!check) load();
      } catch (e) { out.className = "error"; out.textContent = e.message; }
    };
    box.append(GL.h("h2", {text: "Edit " + kind + " (administrators)"}), GL.h("div", {class: "card"},
      GL.h("label", {for: kind + "-editor", text: kind + ".toml (TOML; examples/" + kind + ".toml is the annotated reference)"}), text,
      GL.h("div", {class: "toolbar"}, GL.h("button", {type: "button", id: kind + "-check", text: "Check", onclick: () => send(true)}),
        GL.h("button", {type: "button", class: "primary", id: kind + "-save", text: "Save", onclick: () => send(false)})), out,
      GL.h("h3", {text: "Versions"}), GL.h("ul", {class: "small"}, f.history.map(h => GL.h("li", null,
        GL.fmtTime(h.loaded_at) + " " + h.loaded_by + ": " + (h.label || h.hash.slice(0, 12)) + " (" + h.hash.slice(0, 12) + ", " +
        h.source + ")" + (h.active ? " — in force" : ""))))));
  }
  box.append(GL.h("span", {id: "plans-editor", class: "hidden"}));
}

document.addEventListener("DOMContentLoaded", function () {
  document.getElementById("q-go").addEventListener("click", async function () {
    const out = document.getElementById("q-answer");
    try {
      const r = await GL.api("/api/plans/resolve?account=" + encodeURIComponent(document.getElementById("q-account").value) +
        "&code=" + encodeURIComponent(document.getElementById("q-code").value));
      out.className = ""; out.textContent = r.sentence;
    } catch (e) { out.className = "error"; out.textContent = e.message; }
  });
});

GL.start("plans", {load: load});

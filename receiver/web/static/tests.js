// The centre's "On test" page: every account, partition and zone on test
// now (GET /api/tests: soonest ending first, each with its site, what it
// covers in words and its state from the receiver), the time left counting
// down, End test (test.place) after a confirmation, and the tests ended in
// the last 24 hours (GET /api/tests?all=1).  A placement whose time is up
// covers nothing: the receiver says so (state_words "ended (time up)"), and
// the page reloads when a countdown reaches zero.
"use strict";

const DAY_S = 86400;
let SKEW = 0;       // the receiver's clock minus this browser's, in seconds
let LIVE = [];      // the placements in the table

function serverNow() { return Date.now() / 1000 + SKEW; }

// "1 h 05 min", "12 min 30 s", "40 s"
function left(s) {
  s = Math.max(0, Math.floor(s));
  if (s >= 3600) return Math.floor(s / 3600) + " h " + GL.pad(Math.floor((s % 3600) / 60)) + " min";
  if (s >= 60) return Math.floor(s / 60) + " min " + GL.pad(s % 60) + " s";
  return s + " s";
}

function site(p) {
  return [GL.siteLink(p.account, p.site_name || "Account " + p.account),
    GL.h("span", {class: "muted small", text: " account " + p.account})];
}

// The placement whose End test is asking for a confirmation: a redraw (a
// live update from another site) keeps the question open.
let ASKING = null;

function endButton(p, cell) {
  const msg = GL.h("p", {class: "error", role: "alert"});
  const ask = GL.h("div", {class: "end-confirm hidden", role: "alertdialog"});
  const btn = GL.h("button", {type: "button", class: "end-test", text: "End test"});
  const close = () => { ASKING = null; ask.classList.add("hidden"); btn.classList.remove("hidden"); };
  const open = () => {
    ASKING = p.id;
    btn.classList.add("hidden");
    GL.clear(ask).classList.remove("hidden");
    ask.append(GL.h("span", {class: "end-question", text: "End the test of " + p.what + " at " +
        (p.site_name || "account " + p.account) + "? Its events raise alarms again at once."}),
      GL.h("button", {type: "button", class: "danger end-yes", text: "Yes, end it", onclick: async () => {
        msg.textContent = "";
        close();
        try {
          await GL.api("/api/tests/" + p.id + "/end", {method: "POST"});
        } catch (e) { msg.textContent = e.message; return; }  // (the row stays, with why)
        reload();
      }}),
      GL.h("button", {type: "button", class: "end-no", text: "Keep it on test", onclick: close}));
  };
  btn.addEventListener("click", open);
  cell.append(btn, ask, msg);
  if (ASKING === p.id) open();
}

function row(p) {
  const actions = GL.h("td", {class: "c-actions"});
  if (GL.can("test.place")) endButton(p, actions);
  return GL.h("tr", {dataset: {placementId: String(p.id), account: p.account}},
    GL.h("td", {class: "c-site"}, site(p)),
    GL.h("td", {class: "c-what"}, GL.h("span", {class: "pill warn", text: "ON TEST"}), " " + p.what),
    // data-label: the column's name where the table is stacked (narrow screens)
    GL.h("td", {class: "c-reason", text: p.reason, dataset: {label: "Reason"}}),
    GL.h("td", {class: "c-by", text: p.by, dataset: {label: "Placed by"}}),
    GL.h("td", {class: "num c-since", text: GL.fmtTime(p.starts_at), dataset: {label: "Since"}}),
    GL.h("td", {class: "num c-ends", text: GL.fmtTime(p.ends_at), dataset: {label: "Ends"}}),
    GL.h("td", {class: "num c-left", text: p.in_force ? left(p.ends_at - serverNow()) : p.state_words,
      dataset: {label: "Time left"}}),
    actions);
}

function ended(p) {
  const at = p.ended_at !== null ? p.ended_at : p.ends_at;
  return GL.h("li", {dataset: {placementId: String(p.id)}},
    GL.h("strong", {text: GL.fmtTime(at)}), " ", p.what + " at ", site(p), ": " + p.state_words +
    " (placed by " + p.by + ": " + p.reason + ")");
}

async function load() {
  let live, all;
  try {
    [live, all] = await Promise.all([GL.api("/api/tests"), GL.api("/api/tests?all=1")]);
  } catch (e) {
    // said as it is: never "Nothing is on test" for a list not loaded
    document.getElementById("tests-error").textContent = "Could not load what is on test: " + e.message;
    return;
  }
  document.getElementById("tests-error").textContent = "";
  SKEW = live.now - Date.now() / 1000;
  // on test, or placed to start later; one whose time is up covers nothing
  LIVE = live.placements.filter(p => p.state === "on_test" || p.state === "not_started");
  const table = document.getElementById("tests");
  const tbody = GL.clear(table.querySelector("tbody"));
  LIVE.forEach(p => tbody.append(row(p)));
  table.classList.toggle("hidden", !LIVE.length);
  document.getElementById("tests-none").classList.toggle("hidden", LIVE.length > 0);

  const since = live.now - DAY_S;
  const done = all.placements.filter(p => (p.state === "ended" || p.state === "time_up") &&
    (p.ended_at !== null ? p.ended_at : p.ends_at) >= since);
  done.sort((a, b) => (b.ended_at || b.ends_at) - (a.ended_at || a.ends_at));
  const ul = GL.clear(document.getElementById("tests-ended"));
  if (!done.length) ul.append(GL.h("li", {class: "muted", text: "No test ended in the last 24 hours."}));
  done.forEach(p => ul.append(ended(p)));
}

const reload = GL.debounce(load, 200);

// The countdown: each second; a test whose time is up leaves the table
// (the receiver, asked again, says "ended (time up)").
function tick() {
  const now = serverNow();
  let up = false;
  for (const p of LIVE) {
    const cell = document.querySelector('#tests tr[data-placement-id="' + p.id + '"] .c-left');
    if (!cell || !p.in_force) continue;
    if (p.ends_at <= now) up = true;
    cell.textContent = left(p.ends_at - now);
  }
  if (up) reload();
}

setInterval(tick, 1000);
GL.start("tests", {load: load, rules: reload});

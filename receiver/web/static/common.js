// Guardline console: what every page shares.  Plain JavaScript, no build.
//
// - GL.api(path, {method, body}) calls the JSON API with the session's CSRF
//   token on every non-GET request; a 401 sends the browser to /login.
// - GL.h(tag, attrs, ...children) builds DOM nodes.  Text always goes in
//   as text nodes, never as HTML: nothing a panel or a user typed can
//   become markup (zone names, notes, site names).
// - GL.start(page, handlers) renders the header, loads /api/me, calls
//   handlers.load() at once (the page shows its data without waiting for
//   the stream) and opens the live stream (server-sent events);
//   handlers.load() runs again once the stream is open and after a
//   reconnect or a "resync", so a page never misses a change made while it
//   was loading.  When the server refuses the stream (too many live pages
//   open), the page reloads its data every GL.POLL_MS and retries.
// - Every page shows the console-wide warnings (/api/warnings: a dispatch
//   output failing while an open alarm is routed to it) and the escalation
//   alerts (/api/escalations: an alarm nobody acknowledged in time) under
//   the header; supervisors' consoles beep for an escalation.
// - What the number in an event is (zone, user, path ...) and its words
//   come from the API (number_kind, number_label): never re-derived here.
"use strict";

const GL = {me: null};

GL.api = async function (path, opts) {
  opts = opts || {};
  const method = opts.method || "GET";
  const init = {method: method, credentials: "same-origin", headers: {"Accept": "application/json"}};
  if (opts.body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(opts.body);
  }
  if (method !== "GET") {
    init.headers["X-CSRF-Token"] = GL.me ? GL.me.csrf : "";
  }
  const r = await fetch(path, init);
  if (r.status === 401 && path !== "/api/login") {
    GL.toLogin();
    throw new Error("login required");
  }
  let data = {};
  try { data = await r.json(); } catch (e) { /* empty body */ }
  if (!r.ok) {
    const err = new Error(data.error || (r.status + " " + r.statusText));
    err.status = r.status;
    throw err;
  }
  return data;
};

GL.toLogin = function () {
  location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search);
};

GL.h = function (tag, attrs) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const k of Object.keys(attrs)) {
      const v = attrs[k];
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") el.className = v;
      else if (k === "text") el.textContent = v;
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (k === "dataset") Object.assign(el.dataset, v);
      else el.setAttribute(k, v === true ? "" : v);
    }
  }
  for (let i = 2; i < arguments.length; i++) {
    const c = arguments[i];
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) c.forEach(x => x !== null && x !== undefined && el.append(x));
    else el.append(c instanceof Node ? c : String(c));
  }
  return el;
};

GL.clear = function (el) { while (el.firstChild) el.removeChild(el.firstChild); return el; };

GL.pad = n => String(n).padStart(2, "0");

GL.fmtTime = function (t) {
  if (t === null || t === undefined) return "—";
  const d = new Date(t * 1000);
  return d.getFullYear() + "-" + GL.pad(d.getMonth() + 1) + "-" + GL.pad(d.getDate()) + " " +
    GL.pad(d.getHours()) + ":" + GL.pad(d.getMinutes()) + ":" + GL.pad(d.getSeconds());
};

GL.ago = function (t) {
  if (t === null || t === undefined) return "—";
  let s = Math.max(0, Math.round(Date.now() / 1000 - t));
  if (s < 60) return s + " s ago";
  if (s < 3600) return Math.floor(s / 60) + " min ago";
  if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min ago";
  return Math.floor(s / 86400) + " d ago";
};

GL.CLASS_LABEL = {
  holdup: "Hold-up", fire: "Fire", medical: "Medical", burglary: "Burglary",
  environmental: "Environmental", tamper: "Tamper", trouble: "Trouble", status: "Status",
  test: "Test", other: "Other",
};

GL.badge = function (cls) {
  return GL.h("span", {class: "badge " + cls, text: GL.CLASS_LABEL[cls] || cls});
};

GL.stateLabel = function (state) {
  return GL.h("span", {class: "state " + state, text: state});
};

// "never heard", "not heard since the receiver started", or the time: how a
// supervised path (or panel) was last heard, from the API's `heard` field.
GL.heardText = function (heard, lastHeard) {
  if (heard === "never") return "never heard";
  if (heard === "not since start") return "not heard since the receiver started";
  if (lastHeard === null || lastHeard === undefined) return "—";
  return GL.fmtTime(lastHeard) + " (" + GL.ago(lastHeard) + ")";
};

GL.siteLink = function (number, label) {
  return GL.h("a", {href: "/site/" + encodeURIComponent(number), text: label || number});
};

GL.can = function (perm) { return GL.me && GL.me.permissions.indexOf(perm) >= 0; };

// -- sound: a short two-tone beep through WebAudio (no audio file) ---------------------
GL.sound = {ctx: null, on: localStorage.getItem("gl.sound") === "on"};

GL.beep = function () {
  if (!GL.sound.on) return;
  try {
    if (!GL.sound.ctx) GL.sound.ctx = new (window.AudioContext || window.webkitAudioContext)();
    const ctx = GL.sound.ctx;
    [880, 660, 880].forEach(function (f, i) {
      const o = ctx.createOscillator();
      const g = ctx.createGain();
      o.frequency.value = f;
      o.type = "square";
      g.gain.value = 0.08;
      o.connect(g);
      g.connect(ctx.destination);
      const t0 = ctx.currentTime + i * 0.22;
      o.start(t0);
      o.stop(t0 + 0.18);
    });
  } catch (e) { /* no audio device: the visual cue remains */ }
};

// -- header -----------------------------------------------------------------------------
GL.PAGES = [
  ["queue", "/", "Alarms", "view"],
  ["panels", "/panels", "Panels", "view"],
  ["history", "/history", "History", "view"],
  ["dispatch", "/dispatch", "Dispatch", "view"],
  ["map", "/map", "Map", "view"],
  ["plans", "/plans", "Plans", "view"],
  ["tests", "/tests", "On test", "view"],
  ["supervisor", "/supervisor", "Supervisor queue", "alarm.override"],
  ["reports", "/reports", "Reports", "report.view"],
  ["security", "/security", "Security & audit", "security.view"],
  ["users", "/users", "Users", "users.manage"],
];

GL.header = function (current) {
  const ul = GL.h("ul");
  for (const p of GL.PAGES) {
    if (!GL.can(p[3])) continue;
    ul.append(GL.h("li", null, GL.h("a", {href: p[1], text: p[2],
      "aria-current": p[0] === current ? "page" : null})));
  }
  const soundBtn = GL.h("button", {type: "button", id: "sound", "aria-pressed": GL.sound.on ? "true" : "false",
    title: "Beep on new top-priority alarms", text: GL.sound.on ? "Sound on" : "Sound off"});
  soundBtn.addEventListener("click", function () {
    GL.sound.on = !GL.sound.on;
    localStorage.setItem("gl.sound", GL.sound.on ? "on" : "off");
    soundBtn.setAttribute("aria-pressed", GL.sound.on ? "true" : "false");
    soundBtn.textContent = GL.sound.on ? "Sound on" : "Sound off";
    if (GL.sound.on) GL.beep();  // a click is the user gesture WebAudio needs
  });
  const logout = GL.h("button", {type: "button", id: "logout", text: "Log out"});
  logout.addEventListener("click", async function () {
    try { await GL.api("/api/logout", {method: "POST"}); } catch (e) { /* going anyway */ }
    location.href = "/login";
  });
  const top = document.getElementById("top");
  if (!document.getElementById("warnings")) {
    top.after(GL.h("div", {id: "warnings", class: "warnings hidden", role: "alert", "aria-live": "assertive"}));
  }
  if (!document.getElementById("alerts")) {
    document.getElementById("warnings").after(
      GL.h("div", {id: "alerts", class: "alerts hidden", role: "alert", "aria-live": "assertive"}));
  }
  GL.clear(top).append(
    GL.h("span", {class: "brand", text: "GUARDLINE"}),
    GL.h("nav", {"aria-label": "Console"}, ul),
    GL.h("span", {class: "spacer"}),
    GL.h("span", {id: "live", class: "live off", role: "status", text: "connecting…"}),
    soundBtn,
    GL.h("span", {class: "who", id: "who", text: GL.me.name + " (" + GL.me.role + ")"}),
    logout);
};

GL.setLive = function (on, text) {
  const el = document.getElementById("live");
  if (!el) return;
  el.className = "live " + (on ? "on" : "off");
  el.textContent = text || (on ? "live" : "reconnecting…");
};

GL.POLL_MS = 10000;

// -- console-wide warnings ---------------------------------------------------------------
GL.loadWarnings = async function () {
  let d;
  try { d = await GL.api("/api/warnings"); } catch (e) { return; }
  const box = document.getElementById("warnings");
  if (!box) return;
  GL.clear(box).classList.toggle("hidden", !d.warnings.length);
  for (const w of d.warnings) {
    box.append(GL.h("p", {class: "warning", dataset: {output: w.name}},
      GL.h("strong", {text: "DISPATCH OUTPUT FAILING"}), " since " + GL.fmtTime(w.failing_since) + ". " + w.text + " ",
      GL.h("a", {href: "/dispatch", text: "Dispatch view"})));
  }
};
// -- escalation alerts: alarms nobody acknowledged in time ---------------------------------
// A state, not only a message: every page load shows them until someone
// acknowledges (a console that was reconnecting does not miss one).
GL.loadAlerts = async function () {
  let d;
  try { d = await GL.api("/api/escalations"); } catch (e) { return; }
  const box = document.getElementById("alerts");
  if (!box) return;
  GL.clear(box).classList.toggle("hidden", !d.alarms.length);
  for (const a of d.alarms) {
    const what = (GL.CLASS_LABEL[a.event_class] || a.event_class).toUpperCase() + " at " +
      (a.site_name ? a.site_name + " (account " + a.account + ")" : "account " + a.account);
    const take = GL.can("alarm.act") && !a.handler ? GL.h("button", {type: "button", class: "take", text: "Take it",
      onclick: async function () {
        try { await GL.api("/api/alarms/" + a.id + "/claim", {method: "POST", body: {}}); } catch (e) { /* shown there */ }
        // the queue opens it (a hash change there, a navigation elsewhere)
        if (location.pathname === "/" && location.hash === "#alarm-" + a.id) location.reload();
        else location.href = "/#alarm-" + a.id;
      }}) : null;
    box.append(GL.h("p", {class: "alert " + a.event_class, dataset: {alarmId: String(a.id)}},
      GL.h("strong", {text: "NOT ACKNOWLEDGED"}), " " + what + ": " + a.description +
      ", not acknowledged within " + a.ack_within_s + " s (raised " + GL.fmtTime(a.created_at) + ")" +
      (a.claim_banner ? "; " + a.claim_banner : "") + ". ",
      GL.h("a", {href: "/#alarm-" + a.id, text: "Show"}), take));
  }
};
GL.reloadAlerts = function () {
  if (GL.alertsTimer) return;
  GL.alertsTimer = setTimeout(function () { GL.alertsTimer = null; GL.loadAlerts(); }, 300);
};

GL.reloadWarnings = function () {
  if (GL.warningsTimer) return;
  GL.warningsTimer = setTimeout(function () { GL.warningsTimer = null; GL.loadWarnings(); }, 300);
};

// -- live stream ------------------------------------------------------------------------
GL.stream = function (handlers) {
  const es = new EventSource("/api/stream");
  es.addEventListener("hello", function () { GL.setLive(true); GL.loadWarnings(); GL.loadAlerts(); handlers.load && handlers.load(); });
  es.addEventListener("resync", function () { GL.loadWarnings(); GL.loadAlerts(); handlers.load && handlers.load(); });
  es.addEventListener("logout", function () { es.close(); GL.toLogin(); });
  for (const kind of ["alarm", "event", "supervision", "security", "output", "rules", "position",
                     "patrol", "workflow", "escalation", "site"]) {
    es.addEventListener(kind, function (ev) {
      let msg;
      try { msg = JSON.parse(ev.data); } catch (e) { return; }
      // an output started or stopped failing; an alarm opened or closed
      if (kind === "output" || kind === "alarm") GL.reloadWarnings();
      // an alarm acknowledged ends its alert; an escalation fires one
      if (kind === "alarm" || kind === "escalation" || kind === "workflow") GL.reloadAlerts();
      if (kind === "escalation" && msg.escalation === "ack" && GL.can("alarm.override")) GL.beep();
      if (handlers[kind]) handlers[kind](msg);
    });
  }
  es.onerror = async function () {
    if (es.readyState === EventSource.CLOSED) {
      // Refused (429: too many live pages open): EventSource gives up, so
      // keep the data fresh by polling and try the stream again.
      GL.setLive(false, "not live: too many console pages open; refreshing every " +
        (GL.POLL_MS / 1000) + " s");
      setTimeout(function () { handlers.load && handlers.load(); GL.stream(handlers); }, GL.POLL_MS);
      return;
    }
    GL.setLive(false);
    // EventSource retries by itself; find out whether the session ended.
    try { await GL.api("/api/me"); } catch (e) { if (e.message === "login required") es.close(); }
  };
  return es;
};

// Run fn at most once per `ms` while events keep coming.
GL.debounce = function (fn, ms) {
  let t = null;
  return function () {
    if (t) return;
    t = setTimeout(function () { t = null; fn(); }, ms);
  };
};

GL.start = async function (page, handlers) {
  try {
    GL.me = await GL.api("/api/me");
  } catch (e) {
    return;
  }
  GL.header(page);
  handlers = handlers || {};
  if (handlers.load) handlers.load();  // the data first, over the API; the stream then updates it
  GL.loadWarnings();
  GL.loadAlerts();
  GL.stream(handlers);
  // the stream says when an output starts or stops failing; look again now
  // and then in case a message was missed (or the stream was refused)
  setInterval(GL.loadWarnings, 15000);
  setInterval(GL.loadAlerts, 15000);
};

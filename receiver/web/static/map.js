// The map (issue 19): vehicle units, patrols and fixed sites, live; open
// alarms flash where they are (the position their event carried, else the
// site); route corridors and allowed zones of each van.  Select a van or
// a patrol: its last positions, speed, state and open alarms, and a track
// replay for a time range.  Select an alarm: the nearest available
// patrols (straight line) and Dispatch.
//
// Data: GET /api/map/units (everything drawn), /api/tracks/{account}
// (positions), the live stream's "position" (a unit moved), "alarm",
// "patrol" and "event" messages (reload what they change).
"use strict";

const M = {map: null, layers: {}, data: null, unit: null, alarm: null, markers: {},
  replay: null, shapesDrawn: false, corridors: []};

const KIND_LABEL = {vehicle: "Cash van", patrol: "Patrol car"};

function fmtSpeed(p) { return p.speed_kmh === null || p.speed_kmh === undefined ? "—" : p.speed_kmh.toFixed(0) + " km/h"; }
function yesNo(v) { return v === null || v === undefined ? "not said" : v ? "yes" : "no"; }

// metres per pixel at a latitude and zoom (Web Mercator), for a corridor's width
function metresPerPixel(lat, zoom) {
  return 40075016.686 * Math.cos(lat * Math.PI / 180) / Math.pow(2, zoom + 8);
}

function drawCorridorWidths() {
  const z = M.map.getZoom();
  for (const c of M.corridors) {
    const lat = c.line.getBounds().getCenter().lat;
    c.band.setStyle({weight: Math.max(2, c.width / metresPerPixel(lat, z))});
  }
}

function drawShapes(shapes) {
  const g = M.layers.shapes;
  g.clearLayers();
  M.corridors = [];
  for (const acct of Object.keys(shapes)) {
    for (const s of shapes[acct]) {
      const label = GL.h("span", {text: "account " + acct + ": " + (s.kind === "corridor" ? "corridor " : "allowed ") + s.name});
      if (s.kind === "corridor") {
        const pts = s.geometry.coordinates.map(c => [c[1], c[0]]);
        const band = L.polyline(pts, {color: "#4da3ff", opacity: 0.18, lineCap: "round", lineJoin: "round", interactive: false}).addTo(g);
        const line = L.polyline(pts, {color: "#4da3ff", weight: 2, dashArray: "6 6", className: "corridor-line"})
          .bindTooltip(label).addTo(g);
        M.corridors.push({band: band, line: line, width: s.width_m});
      } else if (s.geometry.type === "Point") {
        const c = s.geometry.coordinates;
        L.circle([c[1], c[0]], {radius: s.radius_m, color: "#3fbf6f", weight: 1, fillOpacity: 0.1})
          .bindTooltip(label).addTo(g);
      } else {
        L.polygon(s.geometry.coordinates[0].map(c => [c[1], c[0]]), {color: "#3fbf6f", weight: 1, fillOpacity: 0.1})
          .bindTooltip(label).addTo(g);
      }
    }
  }
  drawCorridorWidths();
}

function unitIcon(u) {
  const cls = "unit " + u.kind + (u.status ? " " + u.status : "") + (u.open_alarms.length ? " in-alarm" : "") +
    (u.last && u.last.position.valid === false ? " stale" : "");
  const el = GL.h("div", {class: cls, dataset: {account: u.account}},
    GL.h("span", {class: "glyph", text: u.kind === "patrol" ? "P" : "V"}),
    GL.h("span", {class: "name", text: u.name || u.account}));
  return L.divIcon({className: "unit-icon", html: el, iconSize: null, iconAnchor: [12, 12]});
}

function drawUnits(units) {
  const g = M.layers.units;
  g.clearLayers();
  M.markers = {};
  for (const u of units) {
    if (!u.last) continue;
    const p = u.last.position;
    const m = L.marker([p.lat, p.lon], {icon: unitIcon(u), keyboard: true,
      title: (KIND_LABEL[u.kind] || u.kind) + " " + (u.name || u.account), riseOnHover: true, zIndexOffset: 500});
    m.on("click", () => selectUnit(u.account));
    m.addTo(g);
    M.markers[u.account] = m;
  }
}

function drawSites(sites) {
  const g = M.layers.sites;
  g.clearLayers();
  for (const s of sites) {
    L.circle([s.lat, s.lon], {radius: s.radius_m, color: "#9fb0c3", weight: 1, dashArray: "3 4", fillOpacity: 0.05, interactive: false}).addTo(g);
    const el = GL.h("div", {class: "site" + (s.open_alarms.length ? " in-alarm" : ""), dataset: {account: s.account}},
      GL.h("span", {class: "glyph", text: "S"}), GL.h("span", {class: "name", text: s.name || s.account}));
    L.marker([s.lat, s.lon], {icon: L.divIcon({className: "site-icon", html: el, iconSize: null, iconAnchor: [9, 9]}),
      title: "Site " + (s.name || s.account) + (s.address ? ", " + s.address : ""), keyboard: false}).addTo(g);
  }
}

function drawAlarms(alarms) {
  const g = M.layers.alarms;
  g.clearLayers();
  for (const a of alarms) {
    if (!a.where) continue;
    const el = GL.h("div", {class: "alarm-marker alarm-flash " + a.event_class, dataset: {alarmId: String(a.id)}},
      GL.h("span", {class: "glyph", text: "!"}));
    const m = L.marker([a.where.lat, a.where.lon], {icon: L.divIcon({className: "alarm-icon", html: el, iconSize: null, iconAnchor: [16, 16]}),
      title: (GL.CLASS_LABEL[a.event_class] || a.event_class) + ": " + a.description + " (account " + a.account + ")",
      zIndexOffset: 1000, keyboard: true});
    m.on("click", () => selectAlarm(a.id));
    m.addTo(g);
  }
}

// Markers at one place stack (a van, the patrol on scene, the hold-up):
// the lists under the panels pick any unit or alarm, and centre the map.
function pick(text, data, onPick) {
  return GL.h("button", {type: "button", class: "pick", dataset: data, text: text, onclick: onPick});
}

function drawLists(d) {
  const units = GL.clear(document.getElementById("unit-list"));
  for (const u of d.vehicles) {
    const n = u.open_alarms.length;
    units.append(GL.h("li", null, pick((u.name || KIND_LABEL[u.kind] || u.kind) + " (" + u.account + ")" +
      (u.kind === "patrol" ? ", " + u.status_text : "") + (n ? ", " + n + " open alarm" + (n > 1 ? "s" : "") : "") +
      (u.last ? "" : ", no position yet"), {account: u.account}, () => {
      selectUnit(u.account);
      if (u.last) M.map.panTo([u.last.position.lat, u.last.position.lon]);
    })));
  }
  const alarms = GL.clear(document.getElementById("alarm-list"));
  for (const a of d.alarms) {
    alarms.append(GL.h("li", null, GL.badge(a.event_class), " ", pick(a.description + ", " + (a.site_name || a.account) +
      (a.where ? "" : " (no place known)"), {alarmId: String(a.id)}, () => {
      selectAlarm(a.id);
      if (a.where) M.map.panTo([a.where.lat, a.where.lon]);
    })));
  }
  if (!d.alarms.length) alarms.append(GL.h("li", {class: "muted", text: "No open alarm."}));
}

async function load() {
  let d;
  try { d = await GL.api("/api/map/units"); } catch (e) { return; }
  M.data = d;
  if (!M.shapesDrawn) { drawShapes(d.shapes); M.shapesDrawn = true; }
  drawSites(d.sites);
  drawUnits(d.vehicles);
  drawAlarms(d.alarms);
  drawLists(d);
  const placed = d.alarms.filter(a => a.where).length;
  document.getElementById("counts").textContent = d.vehicles.length + " units, " + d.sites.length + " sites, " +
    d.alarms.length + " open alarms" + (placed < d.alarms.length ? " (" + (d.alarms.length - placed) + " without a place)" : "");
  if (M.unit) renderUnit();
  if (M.alarm !== null) renderAlarm();
}

const reload = GL.debounce(load, 200);

// -- the selected unit --------------------------------------------------------------------

function selectUnit(account) {
  M.unit = account;
  renderUnit();
}

function kv(pairs) {
  const dl = GL.h("dl", {class: "kv"});
  for (const [k, v] of pairs) dl.append(GL.h("dt", {text: k}), GL.h("dd", null, v === null || v === "" ? "—" : v));
  return dl;
}

async function renderUnit() {
  const u = M.data && M.data.vehicles.find(x => x.account === M.unit);
  const box = GL.clear(document.getElementById("unit-panel"));
  box.dataset.account = M.unit;
  if (!u) { box.append(GL.h("h2", {text: "Unit"}), GL.h("p", {class: "muted", text: "Unit " + M.unit + " is not on the map."})); return; }
  const p = u.last ? u.last.position : null;
  box.append(GL.h("h2", {id: "unit-title", text: u.name || (KIND_LABEL[u.kind] || u.kind) + " " + u.account}),
    GL.h("p", {class: "muted small", text: (KIND_LABEL[u.kind] || u.kind) + ", account " + u.account}));
  const pairs = [["Account", GL.siteLink(u.account)]];
  if (u.kind === "patrol") pairs.push(["Status", GL.h("span", {id: "patrol-status", class: "pill " + (u.status === "available" ? "ok" : u.status ? "warn" : ""),
    text: u.status_text + (u.status_by ? " (" + u.status_by + ", " + GL.ago(u.status_at) + ")" : "")})]);
  if (p) {
    pairs.push(["Last position", GL.fmtTime(u.last.at) + " (" + GL.ago(u.last.at) + ")" + (p.valid === false ? ", last known (no fix)" : "")]);
    pairs.push(["Speed", GL.h("span", {id: "unit-speed", text: fmtSpeed(p)})]);
    pairs.push(["Where", p.lat.toFixed(5) + ", " + p.lon.toFixed(5)]);
    pairs.push(["Ignition", yesNo(p.ignition)], ["Moving", yesNo(p.moving)], ["Unit in alarm", yesNo(p.alarm)]);
  } else {
    pairs.push(["Last position", "none yet"]);
  }
  if (u.checks) {
    pairs.push(["Receiver checks", Object.keys(u.checks).filter(k => k !== "raised").map(k => k + ": " + u.checks[k]).join("; ") || "—"]);
  }
  box.append(kv(pairs));
  if (u.kind === "patrol" && GL.can("alarm.act")) {
    const msg = GL.h("p", {class: "error", role: "alert"});
    const row = GL.h("div", {class: "actions status-actions"});
    for (const [st, label] of [["available", "Available"], ["dispatched", "Dispatched"], ["on_scene", "On scene"]]) {
      row.append(GL.h("button", {type: "button", dataset: {status: st}, text: label, disabled: st === u.status,
        onclick: async () => {
          msg.textContent = "";
          try { await GL.api("/api/patrols/" + encodeURIComponent(u.account) + "/status", {method: "POST", body: {status: st}}); }
          catch (e) { msg.textContent = e.message; return; }
          await load();
        }}));
    }
    box.append(GL.h("p", {class: "muted small", text: "Set the patrol's status (its crew can set it at the keypad too):"}), row, msg);
  }
  box.append(GL.h("h3", {text: "Open alarms"}));
  if (!u.open_alarms.length) box.append(GL.h("p", {class: "muted", text: "None."}));
  else box.append(GL.h("ul", {id: "unit-alarms"}, u.open_alarms.map(a => GL.h("li", null, GL.badge(a.event_class), " ",
    GL.h("a", {href: "/#alarm-" + a.id, text: a.description}), " (" + GL.ago(a.created_at) + ")"))));
  box.append(GL.h("h3", {text: "Last positions"}));
  const table = GL.h("table", {id: "last-positions"}, GL.h("thead", null, GL.h("tr", null,
    ["Time", "Speed", "Why", "Where"].map(t => GL.h("th", {scope: "col", text: t})))), GL.h("tbody"));
  box.append(table);
  box.append(replayForm(u));
  let d;
  try { d = await GL.api("/api/tracks/" + encodeURIComponent(u.account)); } catch (e) { return; }
  if (M.unit !== u.account) return;
  const tb = table.querySelector("tbody");
  for (const tp of d.points.slice().reverse()) {
    tb.append(GL.h("tr", null, GL.h("td", {class: "num", text: GL.fmtTime(tp.at).slice(11)}),
      GL.h("td", {class: "num", text: fmtSpeed(tp.position)}), GL.h("td", {text: tp.source === "event" ? "event" : tp.reason_text || ""}),
      GL.h("td", {class: "num", text: tp.position.lat.toFixed(5) + ", " + tp.position.lon.toFixed(5)})));
  }
  drawTrail(d.points, "trail");
}

function drawTrail(points, cls) {
  M.layers.trail.clearLayers();
  if (!points.length) return null;
  const line = L.polyline(points.map(tp => [tp.position.lat, tp.position.lon]),
    {color: cls === "replay" ? "#ffd34d" : "#c17cff", weight: 3, opacity: 0.9, className: cls}).addTo(M.layers.trail);
  for (const tp of points) {
    L.circleMarker([tp.position.lat, tp.position.lon], {radius: 3, color: "#c17cff", weight: 1, fillOpacity: 0.8, interactive: false})
      .addTo(M.layers.trail);
  }
  return line;
}

// -- track replay ---------------------------------------------------------------------------

function localInput(t) {
  const d = new Date(t * 1000);
  return d.getFullYear() + "-" + GL.pad(d.getMonth() + 1) + "-" + GL.pad(d.getDate()) + "T" + GL.pad(d.getHours()) + ":" + GL.pad(d.getMinutes());
}

function replayForm(u) {
  const now = Date.now() / 1000;
  const from = GL.h("input", {type: "datetime-local", id: "replay-from", value: localInput(now - 3600)});
  const to = GL.h("input", {type: "datetime-local", id: "replay-to", value: localInput(now + 60)});
  const status = GL.h("p", {class: "muted small", id: "replay-status", role: "status"});
  const go = GL.h("button", {type: "button", id: "replay", class: "primary", text: "Replay"});
  go.addEventListener("click", () => replay(u.account, new Date(from.value).getTime() / 1000,
    new Date(to.value).getTime() / 1000, status));
  return GL.h("div", {class: "replay"}, GL.h("h3", {text: "Track replay"}),
    GL.h("label", {for: "replay-from", text: "From"}), from, GL.h("label", {for: "replay-to", text: "To"}), to, go, status);
}

async function replay(account, since, until, status) {
  if (M.replay) { clearInterval(M.replay.timer); M.replay = null; }
  if (!(until > since)) { status.textContent = "Give a range whose end is after its start."; return; }
  let d;
  try { d = await GL.api("/api/tracks/" + encodeURIComponent(account) + "?since=" + since + "&until=" + until); }
  catch (e) { status.textContent = e.message; return; }
  if (!d.points.length) { status.textContent = "No positions in that range."; return; }
  const line = drawTrail(d.points, "replay");
  M.map.fitBounds(line.getBounds(), {maxZoom: 17, padding: [30, 30]});
  const el = GL.h("div", {class: "unit replay-marker"}, GL.h("span", {class: "glyph", text: "R"}));
  const marker = L.marker([d.points[0].position.lat, d.points[0].position.lon],
    {icon: L.divIcon({className: "unit-icon", html: el, iconSize: null, iconAnchor: [12, 12]}), zIndexOffset: 2000}).addTo(M.layers.trail);
  let i = 0;
  const step = function () {
    const tp = d.points[i];
    marker.setLatLng([tp.position.lat, tp.position.lon]);
    status.textContent = "Replaying " + (i + 1) + " of " + d.points.length + " positions: " + GL.fmtTime(tp.at) +
      ", " + fmtSpeed(tp.position) + (d.more ? " (more in the range: narrow it)" : "");
    status.dataset.done = i + 1 === d.points.length ? "true" : "false";
    i += 1;
    if (i >= d.points.length) { clearInterval(M.replay.timer); M.replay = null; }
  };
  M.replay = {timer: setInterval(step, 120)};
  step();
}

// -- the selected alarm ---------------------------------------------------------------------

function selectAlarm(id) {
  M.alarm = id;
  renderAlarm();
}

async function renderAlarm() {
  const a = M.data && M.data.alarms.find(x => x.id === M.alarm);
  const box = GL.clear(document.getElementById("alarm-panel"));
  box.dataset.alarmId = String(M.alarm);
  if (!a) { box.append(GL.h("h2", {text: "Alarm"}), GL.h("p", {class: "muted", text: "Alarm #" + M.alarm + " is no longer open."})); return; }
  box.append(GL.h("h2", null, "Alarm ", GL.badge(a.event_class)),
    GL.h("p", null, GL.h("a", {href: "/#alarm-" + a.id, id: "alarm-title", text: a.description})),
    kv([["Account", GL.siteLink(a.account, (a.site_name || a.account))],
      ["Raised", GL.fmtTime(a.created_at) + " (" + GL.ago(a.created_at) + ")"],
      ["Where", a.where ? a.where.lat.toFixed(5) + ", " + a.where.lon.toFixed(5) + " (" + a.where.source + ")" : "not known"]]));
  box.append(GL.h("h3", {text: "Patrols"}));
  await GLV.patrolPanel(box, a.id, {onChange: load});
}

// -- live ---------------------------------------------------------------------------------------

function moved(msg) {
  const tp = msg.point;
  if (!M.data) return;
  const u = M.data.vehicles.find(x => x.account === tp.account);
  if (!u) { reload(); return; }
  if (u.last && tp.at < u.last.at) return;  // a late point: the marker stays at the newest
  u.last = tp;
  const m = M.markers[tp.account];
  if (m) m.setLatLng([tp.position.lat, tp.position.lon]); else drawUnits(M.data.vehicles);
  if (M.unit === tp.account) renderUnitSoon();
}

const renderUnitSoon = GL.debounce(() => renderUnit(), 500);

async function start() {
  M.map = L.map("map", {zoomSnap: 0.5});
  for (const k of ["shapes", "sites", "trail", "units", "alarms"]) M.layers[k] = L.layerGroup();
  await GLV.base(M.map, true);
  for (const k of ["shapes", "sites", "trail", "units", "alarms"]) M.layers[k].addTo(M.map);
  M.map.on("zoomend", drawCorridorWidths);
  GL.start("map", {
    load: load,
    position: moved,
    alarm: reload,
    patrol: reload,
    event: msg => { if (msg.event && msg.event.code >= 470 && msg.event.code <= 472) reload(); },
  });
}

start();

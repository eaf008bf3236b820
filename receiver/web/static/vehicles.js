// Guardline console: what the map page and the alarm detail share about
// vehicle units (issue 19).  Leaflet comes from the receiver itself
// (/static/vendor/leaflet/, no CDN).
//
// - GLV.base(map): the base layers.  Tiles from [map] tile_url when one is
//   configured, and always the districts layer (a GeoJSON file the
//   receiver serves), so the map is never blank without internet.
// - GLV.smallMap(el, where): a small map of one place (an alarm).
// - GLV.lastKnown(box, p, label): a vehicle's last known position for an
//   alarm whose event carried none.
// - GLV.patrolPanel(box, alarmId): the nearest available patrols to an
//   alarm (straight-line distance, as the API says), a Dispatch button
//   each, and the patrols already dispatched with their time to arrive.
// Text from the receiver goes into the page as text (GL.h), never as HTML:
// Leaflet is given DOM nodes for tooltips and popups, not strings.
"use strict";

const GLV = {config: null, districts: null};

GLV.loadConfig = async function () {
  if (!GLV.config) GLV.config = await GL.api("/api/map/config");
  return GLV.config;
};

GLV.loadDistricts = async function () {
  if (!GLV.districts) GLV.districts = await GL.api("/api/map/districts");
  return GLV.districts;
};

// Leaflet's attribution control writes HTML: give it text only.
GLV.escape = function (s) {
  return String(s).replace(/[&<>"']/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"})[c]);
};

// A map must have a view before layers go on it: `fit` gives it the
// districts' bounds first (the map page); a small map sets its own view.
GLV.base = async function (map, fit) {
  const cfg = await GLV.loadConfig();
  const d = await GLV.loadDistricts();
  const layer = L.geoJSON(d, {
    interactive: false,
    style: function (f) {
      const k = f.properties && f.properties.kind;
      if (k === "district") return {color: "#6b7b90", weight: 1, fillColor: "#263140", fillOpacity: cfg.tile_url ? 0.12 : 0.7};
      if (k === "canal") return {color: "#3b82c4", weight: 7, opacity: 0.75};
      return {color: "#8a97a8", weight: 4, opacity: 0.85};
    },
    onEachFeature: function (f, l) {
      const p = f.properties || {};
      if (p.name) {
        l.bindTooltip(GL.h("span", {text: p.name}), {permanent: true, direction: "center",
          className: "map-label " + (p.kind || ""), interactive: false});
      }
    },
  });
  const bounds = layer.getBounds();
  if (fit) map.fitBounds(bounds);
  if (cfg.tile_url) {
    L.tileLayer(cfg.tile_url, {attribution: GLV.escape(cfg.tile_attribution || ""),
      maxZoom: cfg.tile_max_zoom}).addTo(map);
  }
  layer.addTo(map);
  map.attributionControl.addAttribution("districts: Guardline demo city");
  return bounds;
};

GLV.distance = function (m) {
  return m < 1000 ? Math.round(m) + " m" : (m / 1000).toFixed(1) + " km";
};

GLV.elapsed = function (s) {
  s = Math.max(0, Math.round(s));
  if (s < 60) return s + " s";
  if (s < 3600) return Math.floor(s / 60) + " min" + (s % 60 ? " " + (s % 60) + " s" : "");
  return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
};

// A small map of one place: `where` {lat, lon, radius_m, label}.
GLV.smallMap = async function (el, where) {
  const map = L.map(el, {scrollWheelZoom: false}).setView([where.lat, where.lon], 16);
  await GLV.base(map, false);
  if (where.radius_m) {
    L.circle([where.lat, where.lon], {radius: where.radius_m, color: "#ff3b6b", weight: 1,
      fillOpacity: 0.08, interactive: false}).addTo(map);
  }
  L.circleMarker([where.lat, where.lon], {radius: 9, color: "#ff3b6b", weight: 3,
    fillColor: "#ff3b6b", fillOpacity: 0.6, className: "alarm-flash"})
    .bindTooltip(GL.h("span", {text: where.label || ""}), {direction: "top"}).addTo(map);
  map.setView([where.lat, where.lon], 16);
  return map;
};

// An alarm whose event carried no position, of a vehicle unit: its last
// known position (the patrols' answer `p`, target source "vehicle's last
// known position") in words and on a small map; nothing otherwise.
GLV.lastKnown = function (box, p, label) {
  const t = p && p.target;
  if (!t || t.source !== "vehicle's last known position") return;
  box.append(GL.h("p", {id: "last-known"}, GL.h("strong", {text: "Last known position: "}),
    t.lat.toFixed(5) + ", " + t.lon.toFixed(5) + " at " + GL.fmtTime(t.at) + " (" + GL.ago(t.at) +
    "); the alarm's event carried none."));
  const el = GL.h("div", {class: "small-map", id: "alarm-map", role: "img",
    "aria-label": "The vehicle's last known position: " + t.lat.toFixed(5) + ", " + t.lon.toFixed(5)});
  box.append(el);
  GLV.smallMap(el, {lat: t.lat, lon: t.lon, label: label + " (last known position)"});
};

// The patrols of one alarm.  opts.onChange() after a dispatch.
GLV.patrolPanel = async function (box, alarmId, opts) {
  opts = opts || {};
  let d;
  try { d = await GL.api("/api/alarms/" + alarmId + "/patrols"); } catch (e) {
    box.append(GL.h("p", {class: "error", text: "Patrols: " + e.message}));
    return null;
  }
  const sec = GL.h("div", {class: "patrols", id: "patrols", dataset: {alarmId: String(alarmId)}});
  const msg = GL.h("p", {class: "error", role: "alert"});
  if (d.dispatches.length) {
    sec.append(GL.h("ul", {class: "dispatches", id: "dispatches"}, d.dispatches.map(x =>
      GL.h("li", {dataset: {patrol: x.patrol}}, GL.h("strong", {text: "Patrol " + x.patrol + (x.name ? " (" + x.name + ")" : "")}),
        " dispatched by " + x.dispatched_by + " at " + GL.fmtTime(x.dispatched_at) + ": ",
        x.arrived_at ? GL.h("span", {class: "pill ok", text: "on scene after " + x.arrival_text})
          : GL.h("span", {class: "pill warn", text: "on the way (" + GLV.elapsed(Date.now() / 1000 - x.dispatched_at) + ")"})))));
  }
  if (!d.target) {
    sec.append(GL.h("p", {class: "muted", text: "No patrol can be proposed: " + d.why_none + "."}));
  } else {
    sec.append(GL.h("p", {class: "muted small", text: "Nearest available patrols to the " + d.target.source +
      ", measured in a " + d.distance + " (not by road)."}));
    if (!d.proposals.length) {
      sec.append(GL.h("p", {class: "muted", id: "no-patrol", text: d.available ? "Every available patrol is dispatched here already."
        : "No patrol is available."}));
    }
    const ol = GL.h("ol", {class: "proposals", id: "proposals"});
    for (const p of d.proposals) {
      const btn = GL.can("alarm.act") ? GL.h("button", {type: "button", class: "primary dispatch",
        dataset: {patrol: p.account}, text: "Dispatch"}) : null;
      if (btn) {
        btn.addEventListener("click", async function () {
          msg.textContent = "";
          btn.disabled = true;
          try {
            await GL.api("/api/alarms/" + alarmId + "/dispatch", {method: "POST", body: {patrol: p.account}});
          } catch (e) { msg.textContent = e.message; btn.disabled = false; return; }
          if (opts.onChange) opts.onChange();
        });
      }
      ol.append(GL.h("li", {dataset: {patrol: p.account}}, GL.h("span", {class: "what", text: p.text}), " ", btn));
    }
    sec.append(ol);
  }
  sec.append(msg);
  box.append(sec);
  return d;
};

// The centre's rules in the site view (issue 18): what is on test (with
// End test) and the Place on test form; each partition's opening schedule
// (today, the coming week, the changes in force) and the Change a day
// form; the periodic test; held zones (with Release); the rules' audit.
// Loaded after common.js on the site page; site.js calls
// GL.siteRules.load(number, account) with every reload.
"use strict";

GL.siteRules = {};

function _card(title, id, children) {
  return [GL.h("h2", {text: title}), GL.h("div", {class: "card", id: id}, children)];
}

function _error() { return GL.h("p", {class: "error", role: "alert"}); }

async function _act(msg, fn) {
  msg.textContent = "";
  try { await fn(); } catch (e) { msg.textContent = e.message; return false; }
  GL.siteRules.reload();
  return true;
}

GL.siteRules.load = async function (number, account) {
  GL.siteRules.number = number;
  GL.siteRules.account = account;
  let d;
  try { d = await GL.api("/api/sites/" + encodeURIComponent(number) + "/rules"); } catch (e) { return; }
  GL.siteRules.render(d, account);
};

GL.siteRules.reload = function () {
  GL.siteRules.load(GL.siteRules.number, GL.siteRules.account);
};

// The forms are built once and kept (a live update while someone types
// must not take their words away); the lists around them are drawn anew.
GL.siteRules.render = function (d, account) {
  const number = account.number;
  // the banner: on test, for everyone to see, all the time it lasts
  // (a placement whose time is up covers nothing, even before the
  // receiver's timer writes its end: not on test)
  const live = d.placements.filter(p => p.in_force);
  const banner = GL.clear(document.getElementById("test-banner"));
  banner.classList.toggle("hidden", !live.length);
  for (const p of live) {
    const msg = _error();
    banner.append(GL.h("div", {class: "on-test", dataset: {placementId: String(p.id)}},
      GL.h("strong", {text: "ON TEST"}), " " + p.words + " until " + GL.fmtTime(p.ends_at) +
        " (" + p.by + ": " + p.reason + "). Its events are stored, no alarm is raised. ",
      GL.can("test.place") ? GL.h("button", {type: "button", class: "end-test", text: "End test",
        onclick: () => _act(msg, () => GL.api("/api/tests/" + p.id + "/end", {method: "POST"}))}) : null,
      msg));
  }
  const box = document.getElementById("rules");
  if (!GL.siteRules.built) {
    GL.siteRules.built = true;
    if (GL.can("test.place")) box.append.apply(box, _card("Place on test", "place-test", _placeForm(d, number)));
    box.append.apply(box, _card("Opening schedule", "schedules", [GL.h("div", {id: "schedule-list"}),
      GL.can("schedule.change") ? GL.h("div", {id: "change-box"}) : null]));
    box.append(GL.h("div", {id: "periodic-box"}), GL.h("div", {id: "holds-box"}));
    box.append.apply(box, _card("Rules audit", "rules-audit", []));
  }
  GL.clear(document.getElementById("schedule-list")).append.apply(
    document.getElementById("schedule-list"), _schedules(d, account));
  const changeBox = document.getElementById("change-box");
  const parts = d.schedules.map(s => s.partition).join(",");
  if (changeBox && changeBox.dataset.partitions !== parts) {
    changeBox.dataset.partitions = parts;
    GL.clear(changeBox);
    if (d.schedules.length) changeBox.append(_changeForm(d, account));
  }
  const periodic = GL.clear(document.getElementById("periodic-box"));
  if (d.periodic) {
    const p = d.periodic;
    periodic.append.apply(periodic, _card("Periodic test", "periodic", [
      GL.h("p", {text: p.words[0].toUpperCase() + p.words.slice(1) + "."}),
      GL.h("p", null, p.failed ? GL.h("span", {class: "pill bad", text: "MISSED"}) : GL.h("span", {class: "pill ok", text: "on time"}),
        " last test " + (p.last_test ? GL.fmtTime(p.last_test) : "never received") +
        (p.due_by ? "; the next is due by " + GL.fmtTime(p.due_by) : ""))]));
  }
  const holds = GL.clear(document.getElementById("holds-box"));
  if (d.holds.length) {
    holds.append.apply(holds, _card("Held zones", "holds", d.holds.map(h => {
      const msg = _error();
      return GL.h("div", {class: "hold-line", dataset: {zone: String(h.zone)}},
        GL.h("span", {class: "pill warn", text: "HELD"}), " " + h.sentence + " since " + GL.fmtTime(h.since) + " ",
        GL.h("a", {href: "/#alarm-" + h.alarm_id, text: "alarm #" + h.alarm_id}), " ",
        GL.can("zone.release") ? GL.h("button", {type: "button", text: "Release zone " + h.zone, onclick: () => _act(msg, () =>
          GL.api("/api/accounts/" + encodeURIComponent(number) + "/zones/" + h.zone + "/release", {method: "POST"}))}) : null, msg);
    })));
  }
  const audit = GL.clear(document.getElementById("rules-audit"));
  audit.append(d.audit.length ?
    GL.h("ol", {class: "audit"}, d.audit.map(a => GL.h("li", null, GL.h("strong", {text: GL.fmtTime(a.at)}), " ",
      GL.h("span", {class: "what", text: a.sentence})))) :
    GL.h("p", {class: "muted", text: "No schedule, test or zone changes yet."}));
};

function _placeForm(d, number) {
  const scope = GL.h("select", {id: "test-scope"},
    GL.h("option", {value: "account", text: "the whole account"}),
    GL.h("option", {value: "partition", text: "a partition"}),
    GL.h("option", {value: "zone", text: "a zone"}));
  const which = GL.h("input", {id: "test-number", type: "number", min: "1", placeholder: "number", disabled: true});
  scope.addEventListener("change", () => { which.disabled = scope.value === "account"; });
  const minutes = GL.h("input", {id: "test-minutes", type: "number", min: "1",
    max: String(d.test_limits.max_hours * 60), value: String(d.test_limits.default_minutes)});
  const reason = GL.h("input", {id: "test-reason", placeholder: "detector swap, walk test ...", maxlength: "200"});
  const msg = _error();
  const form = GL.h("form", {class: "form-row"},
    GL.h("div", null, GL.h("label", {for: "test-scope", text: "Place"}), scope),
    GL.h("div", null, GL.h("label", {for: "test-number", text: "Partition or zone"}), which),
    GL.h("div", null, GL.h("label", {for: "test-minutes", text: "Minutes (at most " + d.test_limits.max_hours + " h)"}), minutes),
    GL.h("div", {class: "grow"}, GL.h("label", {for: "test-reason", text: "Reason"}), reason),
    GL.h("div", null, GL.h("button", {type: "submit", id: "place-test-button", text: "Place on test"})));
  form.addEventListener("submit", async ev => {
    ev.preventDefault();
    const body = {account: number, minutes: parseInt(minutes.value, 10), reason: reason.value};
    if (scope.value !== "account") body[scope.value] = parseInt(which.value, 10);
    if (await _act(msg, () => GL.api("/api/tests", {method: "POST", body: body}))) reason.value = "";
  });
  return [form, msg];
}

function _schedules(d, account) {
  if (!d.schedules.length) return [GL.h("p", {class: "muted", text: "No opening schedule: no fail-to-open or fail-to-close is raised for this site."})];
  const out = [];
  for (const s of d.schedules) {
    const name = "Partition " + s.partition + (s.partition_name ? " · " + s.partition_name : "");
    out.push(GL.h("div", {class: "schedule", dataset: {partition: String(s.partition)}},
      GL.h("h3", {text: name}),
      GL.h("p", {class: "today"}, GL.h("strong", {text: "Today: "}), s.today.replace(/^\w+ [\d-]+ /, "")),
      GL.h("p", {class: "muted small", text: s.words}),
      GL.h("ul", {class: "week small"}, s.week.slice(1).map(w => GL.h("li", {text: w})))));
  }
  for (const c of d.changes) {
    const msg = _error();
    out.push(GL.h("p", {class: "change", dataset: {changeId: String(c.id)}},
      GL.h("span", {class: "pill warn", text: "CHANGED"}), " partition " + c.partition + " on " + c.day + ": " +
        c.plan_words + ", by " + c.by + " until " + GL.fmtTime(c.expires_at) + (c.reason ? " (" + c.reason + ")" : "") + " ",
      GL.can("schedule.change") ? GL.h("button", {type: "button", text: "Cancel change", onclick: () => _act(msg, () =>
        GL.api("/api/schedules/" + encodeURIComponent(account.number) + "/" + c.partition + "/changes/" + c.id, {method: "DELETE"}))}) : null,
      msg));
  }
  return out;
}

function _changeForm(d, account) {
  const part = GL.h("select", {id: "change-partition"}, d.schedules.map(s =>
    GL.h("option", {value: String(s.partition), text: s.partition + (s.partition_name ? " · " + s.partition_name : "")})));
  const date = GL.h("input", {id: "change-date", type: "date", value: d.schedules[0].date});
  const open = GL.h("input", {id: "change-open", placeholder: "10:30-11:00", size: "11"});
  const close = GL.h("input", {id: "change-close", placeholder: "17:00-17:30", size: "11"});
  const closed = GL.h("input", {id: "change-closed", type: "checkbox"});
  const reason = GL.h("input", {id: "change-reason", placeholder: "staff training", maxlength: "200"});
  const msg = _error();
  const form = GL.h("form", {class: "form-row change-form"},
    GL.h("div", null, GL.h("label", {for: "change-partition", text: "Partition"}), part),
    GL.h("div", null, GL.h("label", {for: "change-date", text: "Day"}), date),
    GL.h("div", null, GL.h("label", {for: "change-open", text: "Open"}), open),
    GL.h("div", null, GL.h("label", {for: "change-close", text: "Close"}), close),
    GL.h("div", null, GL.h("label", {for: "change-closed", text: "Closed"}), closed),
    GL.h("div", {class: "grow"}, GL.h("label", {for: "change-reason", text: "Reason"}), reason),
    GL.h("div", null, GL.h("button", {type: "submit", id: "change-button", text: "Change this day"})));
  form.addEventListener("submit", async ev => {
    ev.preventDefault();
    const body = closed.checked ? {closed: true} : {open: open.value, close: close.value};
    body.date = date.value;
    body.reason = reason.value;
    if (await _act(msg, () => GL.api("/api/schedules/" + encodeURIComponent(account.number) + "/" + part.value + "/changes",
      {method: "POST", body: body}))) reason.value = "";
  });
  return GL.h("div", null, GL.h("h3", {text: "Change a day's hours (until the end of that day)"}), form, msg);
}

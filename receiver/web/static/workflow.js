// The operator's workflow on an alarm (issue 17): the site's notes, what the
// panel said after the alarm (a cancel, a recent closing, a confirmation),
// who handles it, its plan step by step, the call list with tel: links and
// outcome buttons, the passcode check, and resolving with a disposition.
// queue.js renders an alarm's detail and calls these with
// /api/alarms/{id}/workflow (receiver/web/workflow_api.py).
//
// - Everything goes into the DOM as text nodes (GL.h).
// - Acting on an alarm nobody handles takes it (the server decides, with a
//   compare-and-set); another's alarm has its buttons disabled with the
//   banner as the reason, and "Take over" asks first.
// - What the operator typed (note, reasons, the chosen disposition) survives
//   the live re-render; a passcode is never kept: the field is cleared after
//   the check.
"use strict";

const WF = {drafts: {}, results: {}};

// "40 s", "12 min", "3 h 5 min" (receiver.supervision.duration_text)
WF.duration = function (s) {
  s = Math.max(0, Math.floor(s));
  if (s < 120) return s + " s";
  if (s < 7200) return Math.floor(s / 60) + " min";
  return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
};

WF.clock = function (t) {
  const d = new Date(t * 1000);
  return GL.pad(d.getHours()) + ":" + GL.pad(d.getMinutes()) + ":" + GL.pad(d.getSeconds());
};

// "being handled by olga, 40 s" (short, for the queue's state column:
// "olga, 40 s" with the sentence as its title): counted up every second
WF.bannerText = function (handler, since, short) {
  if (!handler) return "";
  const age = WF.duration(Date.now() / 1000 - since);
  return short ? handler + ", " + age : "being handled by " + handler + ", " + age;
};
WF.tick = function () {
  document.querySelectorAll("[data-handler]").forEach(function (el) {
    el.textContent = WF.bannerText(el.dataset.handler, parseFloat(el.dataset.since), el.dataset.short);
    if (el.dataset.short) el.title = WF.bannerText(el.dataset.handler, parseFloat(el.dataset.since));
  });
  document.querySelectorAll("[data-due]").forEach(function (el) {
    const left = parseFloat(el.dataset.due) - Date.now() / 1000;
    el.textContent = left > 0 ? "recheck in " + WF.duration(left) : "recheck now";
    el.classList.toggle("overdue", left <= 0);
  });
};
setInterval(WF.tick, 1000);

WF.claimBanner = function (handler, since, short) {
  const data = {handler: handler, since: String(since)};
  if (short) data.short = "1";
  return GL.h("span", {class: "claim-banner", dataset: data, text: WF.bannerText(handler, since, short),
    title: WF.bannerText(handler, since)});
};

WF.draft = function (id) {
  if (!WF.drafts[id]) WF.drafts[id] = {note: "", disposition: "", reasons: {}, override: ""};
  return WF.drafts[id];
};

// -- top of the alarm: notes, the panel's follow-ups, the claim ------------------------------

WF.top = function (box, w, ctx) {
  if (w.notes.length) {
    box.append(GL.h("div", {class: "notes-band", id: "site-notes"}, w.notes.map(n =>
      GL.h("p", {class: n.permanent ? "note-permanent" : "note-temporary"},
        n.permanent ? null : GL.h("strong", {text: (n.when || "temporary") + ": "}), n.text,
        GL.h("span", {class: "muted small", text: " — " + n.author})))));
  }
  if (w.cancel) {
    const a = ctx.alarm;
    const closed = a.state === "resolved" && a.resolved_by === "receiver";
    box.append(GL.h("div", {class: "cancel-band", id: "cancel-band", role: "status"},
      GL.h("strong", {text: w.cancel.words.toUpperCase()}),
      " — the user disarmed at the panel (CP-01 cancel report) at " + WF.clock(w.cancel.at) + ". ",
      closed ? "The receiver closed the alarm: nobody was working it." :
        a.state === "resolved" ? "" : "The alarm stays open: decide with the plan."));
  }
  if (w.confirmed) {
    box.append(GL.h("div", {class: "confirmed-band", id: "confirmed-band"},
      GL.h("strong", {text: "CONFIRMED ALARM"}),
      " — a second detector of the partition tripped within the panel's confirmation window."));
  }
  if (w.recent_close_user !== null && w.recent_close_user !== undefined) {
    box.append(GL.h("div", {class: "recent-band", id: "recent-close"},
      GL.h("strong", {text: "RECENT CLOSING"}),
      " — user " + w.recent_close_user + " armed the partition just before this alarm."));
  }
  if (w.raised_from) {
    box.append(GL.h("p", {class: "duress-from"}, "Raised by a duress passcode given on a call of ",
      GL.h("a", {href: "/#alarm-" + w.raised_from, text: "alarm #" + w.raised_from}), "."));
  }
  if (w.state === "resolved") return;
  const c = w.claim;
  const mine = c.handler === GL.me.name;
  const banner = GL.h("div", {class: "claim " + (c.handler ? (mine ? "mine" : "theirs") : "nobody"), id: "claim"});
  if (!c.handler) {
    banner.append(GL.h("span", {text: "Nobody handles this alarm."}));
    if (GL.can("alarm.act")) banner.append(GL.h("button", {type: "button", class: "primary", id: "take",
      text: "Take it", onclick: () => WF.post(ctx, "/claim", {})}));
  } else if (mine) {
    banner.append(GL.h("span", {text: "You handle this alarm. "}), WF.claimBanner(c.handler, c.since));
    banner.append(GL.h("button", {type: "button", id: "release", text: "Release",
      onclick: () => WF.post(ctx, "/release", {})}));
  } else {
    banner.append(WF.claimBanner(c.handler, c.since));
    if (GL.can("alarm.act")) {
      const ask = GL.h("span", {class: "confirm hidden", id: "take-over-confirm"},
        "Take this alarm over from " + c.handler + "? ",
        GL.h("button", {type: "button", class: "danger", id: "take-over-yes", text: "Take over",
          onclick: () => WF.post(ctx, "/take-over", {seen_rev: c.rev})}),
        GL.h("button", {type: "button", text: "Cancel", onclick: () => ask.classList.add("hidden")}));
      banner.append(GL.h("button", {type: "button", id: "take-over", text: "Take over…",
        onclick: () => ask.classList.remove("hidden")}), ask);
    }
    if (GL.can("alarm.override")) banner.append(GL.h("button", {type: "button", id: "release",
      text: "Release", onclick: () => WF.post(ctx, "/release", {})}));
  }
  box.append(banner);
};

// May this console act on the alarm now (its handler, or nobody)?
WF.mayAct = function (w) {
  return w.state !== "resolved" && GL.can("alarm.act") && (!w.claim.handler || w.claim.handler === GL.me.name);
};

WF.post = async function (ctx, path, body, out) {
  const msg = ctx.msg;
  msg.textContent = "";
  try {
    const r = await GL.api("/api/alarms/" + ctx.alarm.id + path, {method: "POST", body: body});
    await ctx.reload();
    return r;
  } catch (e) {
    (out || msg).textContent = e.message;
    if (e.status === 409) ctx.reload();  // the alarm moved: show it as it is now
    return null;
  }
};

// -- the plan ---------------------------------------------------------------------------

WF.stateWords = function (s) {
  if (s.state === "completed") return "completed by " + s.changed_by + " at " + WF.clock(s.changed_at) +
    (s.reason ? ": " + s.reason : "");
  if (s.state === "skipped") return "skipped by " + s.changed_by + ": " + s.reason;
  if (s.state === "failed") return "failed (" + s.changed_by + "): " + s.reason;
  if (s.state === "waiting") return "started by " + s.changed_by + " at " + WF.clock(s.started_at);
  return s.mandatory ? "to do" : "optional";
};

WF.plan = function (box, w, ctx) {
  box.append(GL.h("h3", {text: "Plan"}));
  if (!w.plan) {
    box.append(GL.h("p", {class: "muted", text: "No plan: the alarm was raised before plans were in use."}));
    return;
  }
  box.append(GL.h("p", {class: "plan-sentence", id: "plan-sentence", text: w.plan.sentence}));
  const may = WF.mayAct(w);
  const draft = WF.draft(w.alarm_id);
  const ol = GL.h("ol", {class: "steps", id: "steps"});
  for (const s of w.steps) {
    const li = GL.h("li", {class: "step " + s.state + (s.mandatory ? " mandatory" : ""),
      dataset: {position: String(s.position), state: s.state}});
    li.append(GL.h("div", {class: "step-head"},
      GL.h("span", {class: "step-title", text: s.position + ". " + s.title}),
      s.mandatory ? GL.h("span", {class: "pill warn", text: "mandatory"}) : null,
      GL.h("span", {class: "step-state", text: WF.stateWords(s)})));
    if (s.text) li.append(GL.h("div", {class: "step-text", text: s.text}));
    if (s.state === "waiting" && s.due_at) {
      li.append(GL.h("div", {class: "step-due" + (s.reminded_at ? " overdue" : ""),
        dataset: {due: String(s.due_at)}, text: ""}));
    }
    if (may && (s.state === "open" || s.state === "waiting")) {
      const err = GL.h("span", {class: "error small"});
      const buttons = GL.h("div", {class: "step-actions"});
      if (s.kind === "verify_passcode") {
        buttons.append(GL.h("span", {class: "muted small", text: "done by a correct passcode on a call "}));
      } else {
        buttons.append(GL.h("button", {type: "button", class: "primary", text: "Done",
          dataset: {action: "complete"}, onclick: () => WF.step(ctx, s, "complete", null, err)}));
      }
      if (s.kind === "wait" && s.state === "open") {
        buttons.append(GL.h("button", {type: "button", text: "Start " + (s.params.minutes || "") + " min",
          dataset: {action: "start"}, onclick: () => WF.step(ctx, s, "start", null, err)}));
      }
      for (const [action, label] of [["skip", "Skip…"], ["fail", "Failed…"]]) {
        const key = s.position + ":" + action;
        const input = GL.h("input", {type: "text", class: "reason", maxlength: "2000",
          placeholder: action === "skip" ? "why it is not needed" : "why it could not be done",
          "aria-label": "Reason"});
        input.value = draft.reasons[key] || "";
        input.addEventListener("input", () => { draft.reasons[key] = input.value; });
        const form = GL.h("span", {class: "reason-form" + (draft.reasons[key] !== undefined ? "" : " hidden"),
          dataset: {for: action}}, input,
          GL.h("button", {type: "button", text: action === "skip" ? "Skip" : "Mark failed",
            dataset: {confirm: action}, onclick: () => WF.step(ctx, s, action, input.value, err)}));
        buttons.append(GL.h("button", {type: "button", text: label, dataset: {action: action},
          onclick: () => { draft.reasons[key] = draft.reasons[key] || ""; form.classList.remove("hidden"); input.focus(); }}), form);
      }
      buttons.append(err);
      li.append(buttons);
    }
    ol.append(li);
  }
  box.append(ol);
};

WF.step = async function (ctx, s, action, reason, err) {
  const r = await WF.post(ctx, "/steps/" + s.position, {action: action, reason: reason}, err);
  if (r) {
    const d = WF.draft(ctx.alarm.id);
    delete d.reasons[s.position + ":skip"];
    delete d.reasons[s.position + ":fail"];
  }
};

// -- the call list ------------------------------------------------------------------------

WF.calls = function (box, w, ctx) {
  box.append(GL.h("h3", {text: "Call list"}));
  box.append(GL.h("p", {class: "muted small", text: "Calls are made by you; record each outcome. " +
    w.call_list.words.charAt(0).toUpperCase() + w.call_list.words.slice(1) + "."}));
  const may = WF.mayAct(w);
  const result = GL.h("div", {id: "passcode-result", role: "status"});
  const last = WF.results[w.alarm_id];
  if (last) WF.showResult(result, last);
  const ul = GL.h("ul", {class: "call-list", id: "call-list"});
  if (!w.call_list.entries.length) ul.append(GL.h("li", {class: "muted", text: "The site has no contacts on file."}));
  for (const e of w.call_list.entries) {
    const c = e.contact;
    const li = GL.h("li", {class: "contact" + (e.available ? "" : " unavailable") +
      (w.next_to_call === c.name ? " next" : ""), dataset: {contact: c.name}});
    li.append(GL.h("div", {class: "contact-head"},
      GL.h("strong", {text: c.name}), c.role ? " · " + c.role : "",
      w.next_to_call === c.name ? GL.h("span", {class: "pill ok", text: "call next"}) : null,
      e.available ? null : GL.h("span", {class: "muted small", text: " not available now: " + e.availability})));
    for (const p of c.phones) {
      const row = GL.h("div", {class: "phone-row"},
        GL.h("a", {href: p.tel, class: "tel", text: (p.label ? p.label + " " : "") + p.number}));
      if (may) {
        for (const [outcome, label] of [["reached", "Reached"], ["no_answer", "No answer"], ["wrong_number", "Wrong number"]]) {
          row.append(GL.h("button", {type: "button", class: "outcome", text: label, dataset: {outcome: outcome},
            onclick: () => WF.post(ctx, "/calls", {contact: c.name, phone: p.number, outcome: outcome})}));
        }
      }
      li.append(row);
    }
    if (may && c.has_passcode && c.phones.length) {
      const code = GL.h("input", {type: "password", class: "passcode", autocomplete: "off", maxlength: "64",
        "aria-label": "Passcode " + c.name + " gave", placeholder: "passcode as said"});
      const check = async function () {
        const given = code.value;
        code.value = "";  // never kept, never shown again
        if (!given) return;
        const r = await WF.post(ctx, "/passcode", {contact: c.name, phone: c.phones[0].number, passcode: given}, result);
        if (r) {
          WF.results[w.alarm_id] = {outcome: r.outcome, sentence: r.sentence, duress: r.duress_alarm_id,
            tries: e.wrong_tries + (r.outcome === "passcode_wrong" ? 1 : 0), max: w.max_passcode_tries};
          WF.showResult(document.getElementById("passcode-result") || result, WF.results[w.alarm_id]);
        }
      };
      code.addEventListener("keydown", ev => { if (ev.key === "Enter") { ev.preventDefault(); check(); } });
      li.append(GL.h("div", {class: "passcode-row"}, code,
        GL.h("button", {type: "button", class: "check", text: "Check", onclick: check}),
        e.wrong_tries ? GL.h("span", {class: "muted small", text: " " + e.wrong_tries + " wrong of " + w.max_passcode_tries}) : null));
    }
    ul.append(li);
  }
  box.append(result, ul);
  if (w.calls.length) {
    box.append(GL.h("ol", {class: "calls-made", id: "calls-made"}, w.calls.map(c =>
      GL.h("li", null, GL.h("span", {class: "num", text: WF.clock(c.at) + " "}),
        c.contact + " on " + c.phone + ": ", GL.h("strong", {class: "outcome-" + c.outcome, text: c.words}),
        GL.h("span", {class: "muted small", text: " (" + c.by + ")"})))));
  }
};

WF.showResult = function (el, r) {
  GL.clear(el);
  el.className = "passcode-result " + r.outcome;
  if (r.outcome === "duress") {
    el.append(GL.h("strong", {text: "DURESS PASSCODE: hold-up alarm raised. Stay calm; do not let on. "}),
      r.duress ? GL.h("a", {href: "/#alarm-" + r.duress, id: "duress-link", text: "Open the hold-up (#" + r.duress + ")"}) : null);
  } else if (r.outcome === "passcode_correct") {
    el.append(GL.h("strong", {text: "Correct passcode. "}), r.sentence);
  } else {
    el.append(GL.h("strong", {text: "Wrong passcode (try " + r.tries + " of " + r.max + "). "}), r.sentence);
  }
};

// -- acknowledge and resolve ----------------------------------------------------------------

WF.resolve = function (box, w, ctx) {
  if (w.state === "resolved") {
    if (w.disposition) {
      box.append(GL.h("p", {class: "disposition", id: "disposition-shown"}, "Resolved as ",
        GL.h("strong", {text: w.disposition.label}),
        w.disposition.override_reason ? " (supervisor override: " + w.disposition.override_reason + ")" : "", "."));
    }
    return;
  }
  if (!GL.can("alarm.act")) return;
  const may = WF.mayAct(w);
  const draft = WF.draft(w.alarm_id);
  const actions = GL.h("div", {class: "actions", id: "resolve-box"});
  if (!may) {
    actions.append(GL.h("p", {class: "muted", text: "Take the alarm over to act on it (" + WF.bannerText(w.claim.handler, w.claim.since) + ")."}));
  }
  if (w.state === "pending") {
    actions.append(GL.h("button", {type: "button", class: "primary", id: "ack", text: "Acknowledge",
      disabled: !may, onclick: () => WF.post(ctx, "/acknowledge", {})}));
  }
  const sel = GL.h("select", {id: "disposition", disabled: !may},
    GL.h("option", {value: "", text: "How did the alarm end?"}),
    w.dispositions.map(d => GL.h("option", {value: d.code, text: d.label + (d.note_required ? " (note required)" : "")})));
  sel.value = draft.disposition;
  sel.addEventListener("change", () => { draft.disposition = sel.value; });
  const note = GL.h("textarea", {id: "note", disabled: !may,
    placeholder: "What was done (police dispatched, key holder called, false alarm…)"});
  note.value = draft.note;
  note.addEventListener("input", () => { draft.note = note.value; ctx.typing(); });
  actions.append(GL.h("label", {for: "disposition", text: "Disposition"}), sel,
    GL.h("label", {for: "note", text: "Note"}), note);
  const open = w.open_mandatory;
  const go = GL.h("button", {type: "button", id: "resolve", disabled: !may || open.length > 0,
    text: open.length ? open.length + " mandatory step" + (open.length === 1 ? "" : "s") + " open" : "Resolve",
    title: open.length ? open.join("; ") : "",
    onclick: () => WF.doResolve(ctx, sel.value, note.value, null)});
  actions.append(go);
  if (open.length && w.may_override && may) {
    const reason = GL.h("input", {type: "text", id: "override-reason", maxlength: "2000",
      placeholder: "why it is resolved with steps open"});
    reason.value = draft.override;
    reason.addEventListener("input", () => { draft.override = reason.value; });
    const form = GL.h("div", {class: "override-form" + (draft.override ? "" : " hidden")},
      GL.h("label", {for: "override-reason", text: "Supervisor override: the reason goes in the trail"}), reason,
      GL.h("button", {type: "button", class: "danger", id: "override-confirm", text: "Resolve with override",
        onclick: () => WF.doResolve(ctx, sel.value, note.value, reason.value)}));
    actions.append(GL.h("button", {type: "button", id: "override", text: "Resolve anyway…",
      onclick: () => { form.classList.remove("hidden"); reason.focus(); }}), form);
  }
  actions.append(ctx.msg);
  box.append(actions);
};

WF.doResolve = async function (ctx, disposition, note, override) {
  const r = await WF.post(ctx, "/resolve", {disposition: disposition, note: note, override_reason: override});
  if (r) {
    delete WF.drafts[ctx.alarm.id];
    delete WF.results[ctx.alarm.id];
  }
};

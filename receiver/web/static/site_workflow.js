// The site view's workflow sections (issue 17): the site's notes (anyone
// adds one; temporary notes end by themselves), its contacts and call
// lists (edited by supervisors and administrators: sites.manage; a passcode
// is typed in, hashed by the receiver and never shown again), and, for
// supervisors and administrators only (panel.command), the panel commands:
// each asks a confirmation naming the site and the partition and shows the
// panel's answer in words.  An operator's page never builds the commands
// section: it is not in the DOM, and the API refuses it anyway.
"use strict";

const SW = {number: decodeURIComponent(location.pathname.split("/").pop()), view: null, reply: null};

SW.api = function (path, opts) {
  return GL.api("/api/sites/" + encodeURIComponent(SW.number) + path, opts);
};

SW.card = function (id, title) {
  const card = GL.h("div", {class: "card", id: id});
  return [GL.h("h2", {text: title}), card];
};

SW.load = async function () {
  const root = document.getElementById("site-workflow");
  if (!root) return;
  let v;
  try { v = await SW.api("/workflow"); } catch (e) { return; }
  SW.view = v;
  const active = document.activeElement && document.activeElement.id;
  const keep = {};
  root.querySelectorAll("input, textarea, select").forEach(el => { if (el.id) keep[el.id] = el.value; });
  GL.clear(root);
  SW.notes(root, v);
  SW.contacts(root, v);
  if (GL.can("panel.command")) await SW.commands(root);
  SW.changes(root, v);
  for (const id of Object.keys(keep)) {
    const el = document.getElementById(id);
    if (el && el.type !== "password") el.value = keep[id];
  }
  if (active) { const el = document.getElementById(active); if (el) el.focus(); }
};

// -- notes ----------------------------------------------------------------------------------

SW.notes = function (root, v) {
  const [h, card] = SW.card("site-notes-card", "Site notes");
  const ul = GL.h("ul", {class: "site-notes", id: "notes-list"});
  if (!v.notes.length) ul.append(GL.h("li", {class: "muted", text: "No notes."}));
  for (const n of v.notes) {
    const mayDelete = GL.can("alarm.act") && (n.author === GL.me.name || GL.can("alarm.override"));
    ul.append(GL.h("li", {dataset: {noteId: String(n.id)}},
      n.permanent ? null : GL.h("strong", {class: "note-when", text: n.when + ": "}), n.text,
      GL.h("span", {class: "muted small", text: " — " + n.author + ", " + GL.fmtTime(n.created_at)}),
      mayDelete ? GL.h("button", {type: "button", class: "small delete-note", text: "Delete",
        onclick: async () => { try { await SW.api("/notes/" + n.id, {method: "DELETE"}); } catch (e) { err.textContent = e.message; } SW.load(); }}) : null));
  }
  card.append(ul);
  const err = GL.h("p", {class: "error", role: "alert", id: "note-error"});
  if (GL.can("alarm.act")) {
    const text = GL.h("textarea", {id: "new-note", maxlength: "500", placeholder: "Access, key box, a dog, owner on holiday…"});
    const until = GL.h("input", {type: "datetime-local", id: "note-until"});
    const from = GL.h("input", {type: "datetime-local", id: "note-from"});
    card.append(GL.h("label", {for: "new-note", text: "Add a note"}), text,
      GL.h("div", {class: "form-row"},
        GL.h("div", null, GL.h("label", {for: "note-until", text: "Until (site time, " + v.time_zone + "; empty: permanent)"}), until),
        GL.h("div", null, GL.h("label", {for: "note-from", text: "From (optional)"}), from),
        GL.h("div", null, GL.h("button", {type: "button", class: "primary", id: "add-note", text: "Add note",
          onclick: async () => {
            err.textContent = "";
            try {
              await SW.api("/notes", {method: "POST", body: {text: text.value, expires_at: until.value || null,
                starts_at: from.value || null}});
              text.value = ""; until.value = ""; from.value = "";
            } catch (e) { err.textContent = e.message; return; }
            SW.load();
          }}))), err);
  }
  root.append(h, card);
};

// -- contacts and call lists ------------------------------------------------------------------

SW.contacts = function (root, v) {
  const [h, card] = SW.card("site-contacts-card", "Contacts and call lists");
  const manage = v.may_manage;
  const err = GL.h("p", {class: "error", role: "alert", id: "contact-error"});
  const ul = GL.h("ul", {class: "site-contacts", id: "contacts"});
  if (!v.contacts.length) ul.append(GL.h("li", {class: "muted", text: "No contacts on file."}));
  for (const c of v.contacts) {
    const li = GL.h("li", {dataset: {contact: c.name}},
      GL.h("strong", {text: c.name}), c.role ? " · " + c.role : "", " ",
      c.phones.map(p => GL.h("a", {class: "tel", href: p.tel, text: (p.label ? p.label + " " : "") + p.number})),
      GL.h("span", {class: "muted small", text: c.availability + (c.available_now ? "" : " (not available now)") +
        " · passcode " + (c.has_passcode ? "set" : "not set") + (c.has_duress_passcode ? ", duress passcode set" : "")}));
    if (manage) {
      const code = GL.h("input", {type: "password", autocomplete: "new-password", placeholder: "passcode (a phrase)",
        "aria-label": "Passcode of " + c.name});
      const duress = GL.h("input", {type: "password", autocomplete: "new-password", placeholder: "duress passcode (optional)",
        "aria-label": "Duress passcode of " + c.name});
      const form = GL.h("span", {class: "reason-form hidden"}, code, duress,
        GL.h("button", {type: "button", text: "Save passcode", onclick: async () => {
          err.textContent = "";
          const body = {passcode: code.value, duress: duress.value || null};
          code.value = ""; duress.value = "";
          try { await SW.api("/contacts/" + encodeURIComponent(c.name) + "/passcode", {method: "POST", body: body}); }
          catch (e) { err.textContent = e.message; return; }
          SW.load();
        }}));
      li.append(" ", GL.h("button", {type: "button", class: "small", text: "Set passcode…",
        onclick: () => form.classList.remove("hidden")}), form,
        GL.h("button", {type: "button", class: "small", text: "Delete", onclick: async () => {
          try { await SW.api("/contacts/" + encodeURIComponent(c.name), {method: "DELETE"}); }
          catch (e) { err.textContent = e.message; return; }
          SW.load();
        }}));
    }
    ul.append(li);
  }
  card.append(ul);
  const orders = Object.keys(v.call_orders);
  card.append(GL.h("h3", {text: "Call lists"}), GL.h("dl", {class: "kv", id: "call-orders"},
    orders.length ? orders.map(k => [GL.h("dt", {text: k === "default" ? "default" : (GL.CLASS_LABEL[k] || k)}),
      GL.h("dd", {text: v.call_orders[k].join(", ")})]).flat() :
      [GL.h("dt", {text: "none"}), GL.h("dd", {text: "every contact, in the order above"})]));
  if (manage) {
    const name = GL.h("input", {id: "contact-name", placeholder: "name"});
    const role = GL.h("input", {id: "contact-role", placeholder: "role (key holder, owner…)"});
    const phones = GL.h("input", {id: "contact-phones", placeholder: "+00 555 0101, +00 555 0111"});
    const avail = GL.h("input", {id: "contact-available", placeholder: "mon-fri 08:00-18:00 (empty: any time)"});
    const lists = GL.h("textarea", {id: "call-orders-text", text: orders.map(k => k + ": " + v.call_orders[k].join(", ")).join("\n"),
      placeholder: "holdup: Anna Berg, Piotr Nowak\ndefault: Anna Berg"});
    const split = t => t.split(",").map(x => x.trim()).filter(Boolean);
    card.append(GL.h("h3", {text: "Add or change a contact"}),
      GL.h("div", {class: "form-row"}, name, role, phones, avail,
        GL.h("button", {type: "button", id: "save-contact", text: "Save contact", onclick: async () => {
          err.textContent = "";
          try {
            await SW.api("/contacts", {method: "POST", body: {name: name.value.trim(), role: role.value.trim() || undefined,
              phones: split(phones.value), available: split(avail.value)}});
          } catch (e) { err.textContent = e.message; return; }
          name.value = ""; role.value = ""; phones.value = ""; avail.value = "";
          SW.load();
        }})),
      GL.h("label", {for: "call-orders-text", text: "Call lists: one per line, \"class: names in order\" (classes: hold-up is holdup; default for the others)"}),
      lists, GL.h("button", {type: "button", id: "save-call-orders", text: "Save call lists", onclick: async () => {
        err.textContent = "";
        const body = {};
        for (const line of lists.value.split("\n")) {
          if (!line.trim()) continue;
          const i = line.indexOf(":");
          body[(i < 0 ? line : line.slice(0, i)).trim()] = i < 0 ? [] : split(line.slice(i + 1));
        }
        try { await SW.api("/call-orders", {method: "POST", body: body}); } catch (e) { err.textContent = e.message; return; }
        SW.load();
      }}));
  }
  card.append(err);
  root.append(h, card);
};

// -- panel commands (supervisors and administrators) ---------------------------------------------

SW.commands = async function (root) {
  let d;
  try { d = await SW.api("/commands"); } catch (e) { return; }
  const [h, card] = SW.card("commands-card", "Panel commands");
  card.classList.add("commands-card");
  if (!d.native) {
    card.append(GL.h("p", {class: "muted", text: "Commands go to native-protocol panels only."}));
    root.append(h, card);
    return;
  }
  const part = GL.h("select", {id: "command-partition", "aria-label": "Partition"},
    d.partitions.map(p => GL.h("option", {value: String(p.partition),
      text: "partition " + p.partition + (p.name ? " (" + p.name + ")" : "")})));
  const ask = GL.h("div", {class: "command-confirm hidden", id: "command-confirm", role: "alertdialog"});
  const out = GL.h("div", {id: "command-reply"});
  const words = {"status": "Status", "arm-away": "Arm away", "arm-stay": "Arm stay", "disarm": "Disarm"};
  const buttons = GL.h("div", {class: "toolbar"}, GL.h("label", {for: "command-partition", text: "Partition"}), part,
    d.commands.map(c => GL.h("button", {type: "button", class: c === "disarm" ? "danger" : "", dataset: {command: c},
      text: words[c] || c, onclick: () => {
        const p = d.partitions.find(x => String(x.partition) === part.value);
        GL.clear(ask).classList.remove("hidden");
        ask.append(GL.h("span", {id: "command-question", text: p.confirm[c]}),
          GL.h("button", {type: "button", class: "primary", id: "command-yes", text: "Yes, send it",
            onclick: () => SW.send(c, p.partition, ask, out)}),
          GL.h("button", {type: "button", id: "command-no", text: "Cancel", onclick: () => ask.classList.add("hidden")}));
      }})));
  card.append(GL.h("p", {class: "muted small", text: d.connected ? "The panel is connected to this receiver." :
    "The panel has no open connection to this receiver: commands cannot reach it now."}), buttons, ask, out);
  if (SW.reply) SW.showReply(out, SW.reply);
  root.append(h, card);
};

SW.send = async function (command, partition, ask, out) {
  ask.classList.add("hidden");
  GL.clear(out).append(GL.h("p", {class: "muted", text: "Sent; waiting for the panel's answer…"}));
  try {
    const r = await GL.api("/api/accounts/" + encodeURIComponent(SW.number) + "/command",
      {method: "POST", body: {command: command, partition: partition}});
    SW.reply = {ok: r.result_name === "ok", lines: r.words, at: Date.now() / 1000};
  } catch (e) {
    SW.reply = {ok: false, lines: [e.message], at: Date.now() / 1000};
  }
  SW.showReply(out, SW.reply);
};

SW.showReply = function (out, r) {
  GL.clear(out).append(GL.h("div", {class: "command-reply" + (r.ok ? "" : " refused")},
    GL.h("p", {class: "muted small", text: "The panel's answer at " + GL.fmtTime(r.at) + ":"}),
    r.lines.map(l => GL.h("p", {text: l}))));
};

// -- who changed what --------------------------------------------------------------------

SW.changes = function (root, v) {
  if (!v.changes.length) return;
  const [h, card] = SW.card("site-changes-card", "Site changes");
  const words = {"site.import": "site file imported", "site.contact": "contact", "site.passcode": "passcode set",
    "site.call_orders": "call lists changed", "site.note": "note", "site.time_zone": "time zone set"};
  card.append(GL.h("ul", {class: "small", id: "site-changes"}, v.changes.slice(0, 10).map(c => GL.h("li", null,
    GL.fmtTime(c.at) + " " + c.actor + ": " + (words[c.action] || c.action) +
    (c.detail.contact ? " " + c.detail.contact : "") + (c.detail.change ? " " + c.detail.change : "")))));
  root.append(h, card);
};

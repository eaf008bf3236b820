// Administrators: console users, roles, passwords.
"use strict";

const ROLES = ["operator", "supervisor", "administrator"];

function showError(e) { document.getElementById("users-error").textContent = e ? e.message : ""; }

async function update(name, body) {
  showError(null);
  try { await GL.api("/api/users/" + encodeURIComponent(name), {method: "POST", body: body}); }
  catch (e) { showError(e); }
  load();
}

async function load() {
  const d = await GL.api("/api/users");
  const tb = GL.clear(document.querySelector("#users tbody"));
  for (const u of d.users) {
    const role = GL.h("select", {"aria-label": "Role of " + u.name},
      ROLES.map(r => GL.h("option", {value: r, text: r, selected: r === u.role})));
    role.addEventListener("change", () => update(u.name, {role: role.value}));
    const toggle = GL.h("button", {type: "button", text: u.disabled ? "Enable" : "Disable",
      onclick: () => update(u.name, {disabled: !u.disabled})});
    const pw = GL.h("button", {type: "button", text: "Set password", onclick: function () {
      const p = prompt("New password for " + u.name + " (10+ characters):");
      if (p) update(u.name, {password: p});
    }});
    const del = GL.h("button", {type: "button", class: "danger", text: "Delete", onclick: async function () {
      if (!confirm("Delete user " + u.name + "?")) return;
      showError(null);
      try { await GL.api("/api/users/" + encodeURIComponent(u.name), {method: "DELETE"}); } catch (e) { showError(e); }
      load();
    }});
    tb.append(GL.h("tr", null, GL.h("td", {text: u.name}), GL.h("td", null, role),
      GL.h("td", null, GL.h("span", {class: "pill " + (u.disabled ? "bad" : "ok"), text: u.disabled ? "disabled" : "active"})),
      GL.h("td", {class: "num", text: u.last_login_at ? GL.fmtTime(u.last_login_at) : "never"}),
      GL.h("td", null, GL.h("div", {class: "toolbar"}, toggle, pw, del))));
  }
}

document.getElementById("add-user").addEventListener("submit", async function (ev) {
  ev.preventDefault();
  showError(null);
  try {
    await GL.api("/api/users", {method: "POST", body: {name: document.getElementById("new-name").value,
      role: document.getElementById("new-role").value, password: document.getElementById("new-password").value}});
    this.reset();
  } catch (e) { showError(e); }
  load();
});

GL.start("users", {load: load});

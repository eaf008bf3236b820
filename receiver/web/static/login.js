// Login: POST /api/login, then go where the user was going: a path on
// this console only, so /login cannot send anyone elsewhere.  The server
// decides (it answers "next", parsed, not pattern-matched); the browser's
// own URL parser checks the answer again before the page goes there.
"use strict";

function sameOrigin(path) {
  try {
    const u = new URL(path, location.origin);
    return u.origin === location.origin ? u.href : location.origin + "/";
  } catch (e) {
    return location.origin + "/";
  }
}

document.getElementById("login-form").addEventListener("submit", async function (ev) {
  ev.preventDefault();
  const err = document.getElementById("login-error");
  err.textContent = "";
  const btn = this.querySelector("button");
  btn.disabled = true;
  try {
    const r = await GL.api("/api/login", {method: "POST", body: {
      name: document.getElementById("name").value,
      password: document.getElementById("password").value,
      next: new URLSearchParams(location.search).get("next") || "/",
    }});
    location.href = sameOrigin(r.next || "/");
  } catch (e) {
    err.textContent = e.message;
    document.getElementById("password").value = "";
    document.getElementById("password").focus();
  } finally {
    btn.disabled = false;
  }
});

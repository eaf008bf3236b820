// Login: POST /api/login, then go where the user was going (a path on
// this site only: never an absolute URL, so /login cannot be used to
// redirect someone elsewhere).
"use strict";

function nextPath() {
  const n = new URLSearchParams(location.search).get("next") || "/";
  return (n.startsWith("/") && !n.startsWith("//") && !n.startsWith("/\\")) ? n : "/";
}

document.getElementById("login-form").addEventListener("submit", async function (ev) {
  ev.preventDefault();
  const err = document.getElementById("login-error");
  err.textContent = "";
  const btn = this.querySelector("button");
  btn.disabled = true;
  try {
    await GL.api("/api/login", {method: "POST", body: {
      name: document.getElementById("name").value,
      password: document.getElementById("password").value,
    }});
    location.href = nextPath();
  } catch (e) {
    err.textContent = e.message;
    document.getElementById("password").value = "";
    document.getElementById("password").focus();
  } finally {
    btn.disabled = false;
  }
});

// The pages' one script (no inline script: the Content-Security-Policy allows only files).
// The API key lives in sessionStorage (this tab only) and goes out as a Bearer header on
// every htmx request and every button's POST; a 401 sends the user to the login page.
(function () {
  "use strict";
  var KEY = "dualmcp.api_key";
  var LOGIN = "/ui/login";

  function apiKey() {
    return window.sessionStorage.getItem(KEY);
  }

  function toLogin() {
    var here = window.location.pathname + window.location.search;
    window.location.assign(LOGIN + "?next=" + encodeURIComponent(here));
  }

  function flash(text) {
    var box = document.getElementById("flash");
    if (!box) return;
    box.textContent = text;
    box.hidden = !text;
  }

  function errorText(status, body) {
    try {
      var error = JSON.parse(body).error;
      if (error && error.message) return error.message + " (" + status + ")";
    } catch (ignored) { /* not JSON */ }
    return "the server answered " + status;
  }

  // Only our own pages under /ui may follow a login.
  function nextPage() {
    var next = new URLSearchParams(window.location.search).get("next") || "";
    return /^\/ui(\/|$)/.test(next) && next.indexOf("//") === -1 ? next : "/ui/";
  }

  document.addEventListener("htmx:configRequest", function (event) {
    var key = apiKey();
    if (key) event.detail.headers["Authorization"] = "Bearer " + key;
  });

  document.addEventListener("htmx:responseError", function (event) {
    var xhr = event.detail.xhr;
    if (xhr.status === 401) return toLogin();
    flash(errorText(xhr.status, xhr.responseText));
  });

  document.addEventListener("htmx:sendError", function () {
    flash("The server cannot be reached; retrying while the page is open.");
  });

  document.addEventListener("htmx:afterSwap", function () {
    var box = document.getElementById("flash");
    if (box && box.textContent.indexOf("cannot be reached") !== -1) flash("");
  });

  // A live fragment is swapped whole every few seconds: keep the <details> the user opened.
  var opened = new Set();
  document.addEventListener("toggle", function (event) {
    var details = event.target;
    if (!details.id || details.tagName !== "DETAILS") return;
    if (details.open) opened.add(details.id); else opened.delete(details.id);
  }, true);
  document.addEventListener("htmx:afterSettle", function () {
    opened.forEach(function (id) {
      var details = document.getElementById(id);
      if (details && !details.open) details.open = true;
    });
  });

  // Retry and cancel: the existing API endpoints, with the key; then the run they answer.
  document.addEventListener("click", function (event) {
    var button = event.target.closest("button[data-post]");
    if (!button) return;
    if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
    button.disabled = true;
    window.fetch(button.dataset.post, {
      method: "POST",
      headers: {
        "Authorization": "Bearer " + (apiKey() || ""),
        "Content-Type": "application/json"
      },
      body: button.dataset.body || "{}"
    }).then(function (response) {
      return response.text().then(function (body) {
        if (response.status === 401) return toLogin();
        if (!response.ok) {
          button.disabled = false;
          return flash(errorText(response.status, body));
        }
        window.location.assign("/ui/runs/" + encodeURIComponent(JSON.parse(body).run_id));
      });
    }, function () {
      button.disabled = false;
      flash("The server cannot be reached.");
    });
  });

  document.addEventListener("click", function (event) {
    if (!event.target.closest("button[data-logout]")) return;
    window.sessionStorage.removeItem(KEY);
    window.location.assign(LOGIN);
  });

  // The login form: check the key against a fragment, keep it, go where the user was going.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.id !== "login") return;
    event.preventDefault();
    var key = form.querySelector("#api-key").value.trim();
    var problem = form.querySelector(".login-error");
    window.fetch("/ui/fragments/whoami", {
      headers: { "Authorization": "Bearer " + key }
    }).then(function (response) {
      if (response.ok) {
        window.sessionStorage.setItem(KEY, key);
        window.location.assign(nextPage());
        return;
      }
      problem.textContent = response.status === 401
        ? "That key is not valid."
        : "The server answered " + response.status + ".";
      problem.hidden = false;
    }, function () {
      problem.textContent = "The server cannot be reached.";
      problem.hidden = false;
    });
  });

  // A page with data and no key: straight to the login page, no request wasted.
  if (!document.body.hasAttribute("data-public") && !apiKey()) toLogin();
})();

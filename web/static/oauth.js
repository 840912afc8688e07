// Dashboard sign-in with the proxy's OAuth issuer: the authorization code
// flow with PKCE (S256) and state, for a public client (no secret).
//
// On load it reads GET /api/ui-config. When OAuth is configured it renders
// a "Sign in with <issuer host>" button into #signin-oauth. The button
// sends the browser to the issuer's authorization endpoint with
// redirect_uri = this origin + "/"; the issuer sends it back to "/?code=...
// &state=...", where this script checks the state, exchanges the code at
// the token endpoint (the issuer must answer CORS for this origin), keeps
// the access token in sessionStorage "mbp.token", removes the query from
// the address bar and calls window.mbpSignedIn(token) when the dashboard
// defines it.
(function () {
  "use strict";

  var TOKEN_KEY = "mbp.token";
  var PENDING_KEY = "mbp.oauth.pending";

  function redirectURI() {
    return window.location.origin + "/";
  }

  function slot() {
    return document.getElementById("signin-oauth");
  }

  // say shows a status line in #signin-oauth, as text (never HTML).
  function say(text, isError) {
    var el = slot();
    if (!el) {
      return;
    }
    var p = el.querySelector(".oauth-status");
    if (!p) {
      p = document.createElement("p");
      p.className = "oauth-status";
      el.appendChild(p);
    }
    p.textContent = text;
    p.setAttribute("role", isError ? "alert" : "status");
    if (isError) {
      p.classList.add("error");
    } else {
      p.classList.remove("error");
    }
  }

  function base64url(bytes) {
    var s = "";
    for (var i = 0; i < bytes.length; i++) {
      s += String.fromCharCode(bytes[i]);
    }
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function randomString() {
    var b = new Uint8Array(32);
    window.crypto.getRandomValues(b);
    return base64url(b);
  }

  function challengeOf(verifier) {
    return window.crypto.subtle
      .digest("SHA-256", new TextEncoder().encode(verifier))
      .then(function (d) {
        return base64url(new Uint8Array(d));
      });
  }

  function hostOf(u) {
    try {
      return new URL(u).host;
    } catch (e) {
      return u;
    }
  }

  function notifySignedIn(token) {
    var call = function () {
      if (typeof window.mbpSignedIn === "function") {
        window.mbpSignedIn(token);
      }
    };
    // app.js may load after this script: wait for the page if needed.
    if (document.readyState === "complete") {
      call();
    } else {
      window.addEventListener("load", call, { once: true });
    }
  }

  function start(cfg) {
    if (!window.crypto || !window.crypto.subtle) {
      say("Sign-in with " + hostOf(cfg.issuer) + " needs a secure page (https or localhost).", true);
      return;
    }
    var verifier = randomString();
    var state = randomString();
    challengeOf(verifier).then(function (challenge) {
      sessionStorage.setItem(PENDING_KEY, JSON.stringify({
        state: state,
        verifier: verifier,
        redirectURI: redirectURI(),
        tokenEndpoint: cfg.tokenEndpoint,
        clientId: cfg.clientId,
        resource: cfg.resource || ""
      }));
      var u = new URL(cfg.authorizationEndpoint);
      var q = u.searchParams;
      q.set("response_type", "code");
      q.set("client_id", cfg.clientId);
      q.set("redirect_uri", redirectURI());
      q.set("scope", (cfg.scopes || []).join(" "));
      q.set("state", state);
      q.set("code_challenge", challenge);
      q.set("code_challenge_method", "S256");
      if (cfg.resource) {
        q.set("resource", cfg.resource); // RFC 8707: a token for this proxy
      }
      window.location.assign(u.toString());
    }, function () {
      say("Could not prepare the sign-in (no SHA-256 in this browser).", true);
    });
  }

  function renderButton(cfg) {
    var el = slot();
    if (!el) {
      return;
    }
    var b = document.createElement("button");
    b.type = "button";
    b.className = "oauth-signin";
    b.textContent = "Sign in with " + hostOf(cfg.issuer);
    b.addEventListener("click", function () {
      b.disabled = true;
      start(cfg);
    });
    el.appendChild(b);
  }

  // cleanURL drops the OAuth answer from the address bar and the history.
  function cleanURL() {
    window.history.replaceState(null, "", window.location.pathname + window.location.hash);
  }

  // finish handles a return from the issuer; it reports whether there was
  // one to handle.
  function finish() {
    var params = new URLSearchParams(window.location.search);
    var code = params.get("code");
    var err = params.get("error");
    if (!code && !err) {
      return false;
    }
    var raw = sessionStorage.getItem(PENDING_KEY);
    if (!raw) {
      return false; // not ours
    }
    sessionStorage.removeItem(PENDING_KEY);
    var pending;
    try {
      pending = JSON.parse(raw);
    } catch (e) {
      pending = null;
    }
    cleanURL();
    if (!pending || params.get("state") !== pending.state) {
      say("Sign-in failed: the answer does not belong to this sign-in (state mismatch). Try again.", true);
      return true;
    }
    if (err) {
      say("Sign-in failed: " + err + (params.get("error_description") ? " (" + params.get("error_description") + ")" : "") + ".", true);
      return true;
    }
    say("Signing in...", false);
    var form = new URLSearchParams();
    form.set("grant_type", "authorization_code");
    form.set("code", code);
    form.set("redirect_uri", pending.redirectURI);
    form.set("client_id", pending.clientId);
    form.set("code_verifier", pending.verifier);
    if (pending.resource) {
      form.set("resource", pending.resource);
    }
    fetch(pending.tokenEndpoint, {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json" },
      body: form.toString(),
      credentials: "omit"
    }).then(function (resp) {
      return resp.json().then(function (body) {
        return { ok: resp.ok, status: resp.status, body: body };
      }, function () {
        return { ok: false, status: resp.status, body: null };
      });
    }, function () {
      return null; // a network or CORS failure: no answer to read
    }).then(function (r) {
      if (r === null) {
        say("Sign-in failed: the token endpoint could not be reached from this page (it must allow CORS for " + window.location.origin + ").", true);
        return;
      }
      if (!r.ok || !r.body || typeof r.body.access_token !== "string" || r.body.access_token === "") {
        var why = r.body && typeof r.body.error === "string" ? r.body.error : "HTTP " + r.status;
        say("Sign-in failed at the token endpoint: " + why + ".", true);
        return;
      }
      var token = r.body.access_token;
      sessionStorage.setItem(TOKEN_KEY, token);
      say("Signed in.", false);
      // Outside this promise chain, so that an error of the dashboard's
      // handler shows as the page's own, not as a failed sign-in.
      window.setTimeout(function () {
        notifySignedIn(token);
      }, 0);
    });
    return true;
  }

  function init() {
    fetch("/api/ui-config", { headers: { "Accept": "application/json" }, credentials: "same-origin" })
      .then(function (resp) {
        if (!resp.ok) {
          throw new Error("HTTP " + resp.status);
        }
        return resp.json();
      })
      .then(function (cfg) {
        if (!cfg || !cfg.oauth) {
          return; // token sign-in only
        }
        if (!finish()) {
          renderButton(cfg.oauth);
        }
      })
      .catch(function () {
        if (finish()) {
          return;
        }
        say("Sign-in with the identity provider is unavailable right now; sign in with a token.", true);
      });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init, { once: true });
  } else {
    init();
  }
})();

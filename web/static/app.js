// The dashboard of mcp-browser-proxy: plain DOM code, no framework. The
// bearer token lives in this tab's sessionStorage ("mbp.token") and goes
// only into Authorization headers, never into a URL. Every value from the
// server is put into the page as text, never as HTML.
"use strict";
(() => {
  const TOKEN_KEY = "mbp.token";
  const PERMS = ["browser:read", "browser:write", "browser:script", "browser:all-tabs", "admin"];
  // The tool groups of tools.Toolsets; a key without any gets its creator's.
  const TOOLSETS = ["core", "input", "network", "console", "emulation", "performance", "storage", "extensions"];
  const $ = (id) => document.getElementById(id);

  const state = {
    overview: null,
    abort: null,   // AbortController of the event stream
    retry: 1000,   // next reconnect delay of the event stream
    timer: 0,      // reconnect timer
    thumbs: new Map(), // "session/page" -> blob URL
    armed: null,   // {key, until}: the confirm button waiting for its second click
  };

  // el builds an element: el("div", {class: "x", onclick: fn}, child, "text", ...).
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else e.setAttribute(k, v === true ? "" : v);
    }
    for (const kid of kids.flat()) {
      if (kid === null || kid === undefined || kid === false) continue;
      e.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    }
    return e;
  }

  function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

  function notice(msg, bad) {
    const n = $("notice");
    n.textContent = msg || "";
    n.classList.toggle("bad", !!bad);
    n.hidden = !msg;
  }

  // api calls the proxy with the bearer token; it resolves to the parsed
  // JSON (or null) and rejects with an Error carrying the server's message.
  async function api(method, path, body) {
    const opts = { method, headers: { Authorization: "Bearer " + token() } };
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    const resp = await fetch(path, opts);
    if (resp.status === 401) {
      signOut("Your token was refused (expired, revoked or not valid here); sign in again.");
      throw new Error("signed out");
    }
    if (!resp.ok) {
      let msg = resp.status + " " + resp.statusText;
      try { const j = await resp.json(); if (j && j.message) msg = (j.code ? j.code + ": " : "") + j.message; } catch (_) { /* not JSON */ }
      throw new Error(msg);
    }
    const type = resp.headers.get("Content-Type") || "";
    if (resp.status === 204) return null;
    if (type.startsWith("application/json")) return resp.json();
    return resp.blob();
  }

  // act runs an action from a button, showing its failure as a notice.
  async function act(button, fn) {
    if (button) button.disabled = true;
    try { await fn(); } catch (e) { if (e.message !== "signed out") notice(e.message, true); } finally { if (button) button.disabled = false; }
  }

  // confirmButton is a button that asks for a second click within 4 s
  // before it runs fn: no modal dialog, nothing to dismiss. Its armed state
  // is kept by key, so that a re-render by a live update keeps it.
  function confirmButton(key, label, confirmLabel, fn, extra) {
    const armed = () => state.armed && state.armed.key === key && Date.now() < state.armed.until;
    const b = el("button", Object.assign({ type: "button", class: "danger small", "data-confirm": key }, extra), armed() ? confirmLabel : label);
    b.classList.toggle("armed", armed());
    b.addEventListener("click", () => {
      if (!armed()) {
        state.armed = { key, until: Date.now() + 4000 };
        b.textContent = confirmLabel;
        b.classList.add("armed");
        setTimeout(() => {
          if (armed()) return;
          const cur = document.querySelector('[data-confirm="' + CSS.escape(key) + '"]');
          if (cur) { cur.textContent = label; cur.classList.remove("armed"); }
        }, 4100);
        return;
      }
      state.armed = null;
      b.textContent = label;
      b.classList.remove("armed");
      act(b, fn);
    });
    return b;
  }

  function plural(n, one, many) { return n + " " + (n === 1 ? one : many); }

  function ago(iso) {
    if (!iso) return "never";
    const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
    if (s < 60) return s + " s ago";
    if (s < 3600) return Math.floor(s / 60) + " min ago";
    if (s < 86400) return Math.floor(s / 3600) + " h ago";
    return Math.floor(s / 86400) + " d ago";
  }

  function age(seconds) {
    if (seconds < 60) return seconds + " s";
    if (seconds < 3600) return Math.floor(seconds / 60) + " min";
    return Math.floor(seconds / 3600) + " h " + Math.floor((seconds % 3600) / 60) + " min";
  }

  // ---- sign-in ----

  async function signIn(tok) {
    sessionStorage.setItem(TOKEN_KEY, tok);
    await start();
  }

  // start shows the dashboard for the stored token, after checking it.
  async function start() {
    $("signin-error").hidden = true;
    if (!token()) { showSignIn(); return; }
    let ov;
    try {
      ov = await api("GET", "/api/overview");
    } catch (e) {
      if (e.message !== "signed out") {
        showSignIn();
        $("signin-error").textContent = e.message;
        $("signin-error").hidden = false;
      }
      return;
    }
    $("signin").hidden = true;
    $("app").hidden = false;
    $("whoami").hidden = false;
    notice("");
    render(ov);
    setupForms(ov.me);
    loadKeys();
    connect();
  }

  function showSignIn() {
    $("signin").hidden = false;
    $("app").hidden = true;
    $("whoami").hidden = true;
  }

  function signOut(msg) {
    sessionStorage.removeItem(TOKEN_KEY);
    stopStream();
    for (const url of state.thumbs.values()) URL.revokeObjectURL(url);
    state.thumbs.clear();
    state.overview = null;
    $("users").replaceChildren();
    $("keys").replaceChildren();
    $("key-secret").hidden = true;
    $("token-secret").hidden = true;
    $("token").value = "";
    showSignIn();
    if (msg) { $("signin-error").textContent = msg; $("signin-error").hidden = false; }
  }

  // ---- live updates: SSE read with fetch(), so that the token travels in
  // the Authorization header (EventSource cannot send one) ----

  function setLive(cls, text) {
    const l = $("live");
    l.className = "live " + cls;
    l.textContent = text;
  }

  function stopStream() {
    clearTimeout(state.timer);
    if (state.abort) state.abort.abort();
    state.abort = null;
    setLive("", "offline");
  }

  function connect() {
    stopStream();
    const ctrl = new AbortController();
    state.abort = ctrl;
    readStream(ctrl).catch(() => { /* handled in readStream */ });
  }

  async function readStream(ctrl) {
    let why = "";
    try {
      const resp = await fetch("/api/events", { headers: { Authorization: "Bearer " + token() }, signal: ctrl.signal });
      if (resp.status === 401) { signOut("Your token was refused; sign in again."); return; }
      if (!resp.ok || !resp.body) {
        try { const j = await resp.json(); why = j.message || ""; } catch (_) { /* not JSON */ }
        throw new Error(why || "status " + resp.status);
      }
      setLive("on", "live");
      state.retry = 1000;
      const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const raw = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const ev = parseEvent(raw);
          if (ev.event === "overview") render(JSON.parse(ev.data));
          if (ev.event === "end") {
            const reason = (JSON.parse(ev.data || "{}").reason) || "the stream ended";
            if (/sign in again/.test(reason)) { signOut(reason); return; }
            why = reason;
          }
        }
      }
    } catch (e) {
      if (ctrl.signal.aborted) return;
      why = why || e.message;
    }
    if (ctrl.signal.aborted || !token()) return;
    setLive("retry", "reconnecting");
    if (why) notice("Live updates paused (" + why + "); retrying in " + Math.round(state.retry / 1000) + " s.");
    state.timer = setTimeout(() => { if (state.abort === ctrl) { notice(""); connect(); } }, state.retry);
    state.retry = Math.min(state.retry * 2, 15000);
  }

  function parseEvent(raw) {
    const ev = { event: "message", data: "" };
    for (const line of raw.split("\n")) {
      if (line.startsWith(":")) continue;
      const j = line.indexOf(":");
      const field = j < 0 ? line : line.slice(0, j);
      const val = j < 0 ? "" : line.slice(j + 1).replace(/^ /, "");
      if (field === "event") ev.event = val;
      if (field === "data") ev.data += (ev.data ? "\n" : "") + val;
    }
    return ev;
  }

  // ---- rendering ----

  function badge(status) {
    return el("span", { class: "badge state-" + status, "data-state": status }, status);
  }

  function fact(label, value, cls) {
    return el("div", { class: cls }, el("dt", {}, label), el("dd", { class: cls === "wide err" ? "err" : undefined }, value));
  }

  function render(ov) {
    state.overview = ov;
    const me = ov.me;
    $("me").textContent = me.userId + (me.admin ? " (admin)" : "");
    $("me").title = "perms: " + me.perms.join(", ") + (me.expiresAt ? "; expires " + new Date(me.expiresAt).toLocaleString() : "");
    $("users-title").textContent = me.admin ? "Users" : "Your browser";
    const nSessions = ov.sessions.length;
    const sessionsText = plural(nSessions, "open session", "open sessions");
    $("summary").textContent = me.admin ? plural(ov.users.length, "user", "users") + ", " + sessionsText : sessionsText;
    const bySession = new Map();
    for (const s of ov.sessions) {
      if (!bySession.has(s.userId)) bySession.set(s.userId, []);
      bySession.get(s.userId).push(s);
    }
    const live = new Set();
    const cards = ov.users.map((u) => userCard(u, bySession.get(u.userId) || [], me, live));
    if (!cards.length) cards.push(el("p", { class: "empty" }, "No registered users yet."));
    $("users").replaceChildren(...cards);
    for (const [k, url] of state.thumbs) {
      if (!live.has(k)) { URL.revokeObjectURL(url); state.thumbs.delete(k); }
    }
  }

  function browserText(u) {
    if (!u.registered) return "not registered";
    if (u.tunnel) return "tunnel (" + (u.tunnel.connected ? "agent connected" + (u.tunnel.agentVersion ? ", " + u.tunnel.agentVersion : "") : "agent not connected") + ")";
    return u.browserURL + (u.managed ? " (managed)" : "");
  }

  function userCard(u, sessions, me, live) {
    const head = el("div", { class: "user-head" },
      el("h3", {}, u.userId),
      badge(u.browserStatus),
      u.registered && me.perms.includes("browser:write")
        ? confirmButton("user:" + u.userId, "Unregister", "Really unregister?", () => unregister(u.userId), { "data-action": "unregister" })
        : null);
    const facts = el("dl", { class: "facts" },
      fact("Browser", browserText(u), "wide"),
      u.browserError ? fact("Last error", u.browserError, "wide err") : null,
      fact("Sessions", String(u.sessions)),
      fact("Last activity", ago(u.lastActivity)),
      fact("Calls / min", String(u.callsPerMinute)),
      fact("Errors / min", String(u.errorsPerMinute)));
    const list = sessions.length
      ? el("ul", { class: "sessions" }, sessions.map((s) => sessionItem(s, me, live)))
      : el("p", { class: "empty" }, "No open MCP sessions.");
    return el("article", { class: "user", "data-user": u.userId }, head, facts, list);
  }

  function sessionItem(s, me, live) {
    const head = el("div", { class: "session-head" },
      el("span", { class: "mono", title: s.id }, s.id.length > 20 ? s.id.slice(0, 12) + "…" + s.id.slice(-4) : s.id),
      el("span", { class: "muted" }, s.transport + " · " + age(s.ageSeconds) + " old · active " + ago(s.lastActivity) + " · " + plural(s.calls, "call", "calls") + (s.inUse ? " · in use" : "")),
      confirmButton("session:" + s.id, "Close session", "Really close?", () => closeSession(s.id), { "data-action": "close-session" }));
    const tabs = s.tabs.length
      ? el("div", { class: "tabs" }, s.tabs.map((t) => tabItem(s, t, me, live)))
      : el("p", { class: "empty" }, "No tabs yet.");
    return el("li", { class: "session", "data-session": s.id }, head, tabs);
  }

  function tabItem(s, t, me, live) {
    const key = s.id + "/" + t.pageId;
    live.add(key);
    const box = el("div", { class: "tab", "data-page": String(t.pageId) },
      el("span", {}, "Page " + t.pageId + (t.owned ? "" : " (attached)")));
    const url = state.thumbs.get(key);
    if (url) box.append(el("img", { src: url, alt: "Screenshot of page " + t.pageId }));
    if (me.perms.includes("browser:read")) {
      const b = el("button", { type: "button", class: "secondary small", "data-action": "screenshot" }, url ? "Refresh screenshot" : "Screenshot");
      b.addEventListener("click", () => act(b, () => screenshot(s.id, t.pageId)));
      box.append(b);
    }
    return box;
  }

  // ---- actions ----

  async function refresh() {
    render(await api("GET", "/api/overview"));
  }

  async function screenshot(sessionID, pageID) {
    const blob = await api("GET", "/api/sessions/" + encodeURIComponent(sessionID) + "/tabs/" + pageID + "/screenshot");
    const key = sessionID + "/" + pageID;
    const old = state.thumbs.get(key);
    if (old) URL.revokeObjectURL(old);
    state.thumbs.set(key, URL.createObjectURL(blob));
    if (state.overview) render(state.overview);
  }

  async function closeSession(id) {
    await api("DELETE", "/api/sessions/" + encodeURIComponent(id));
    notice("Session closed; its client gets 404 next and reconnects.");
    await refresh();
  }

  async function unregister(user) {
    await api("DELETE", "/api/users/" + encodeURIComponent(user));
    notice(user + " is unregistered; their sessions are closed.");
    await refresh();
  }

  function permBoxes(fieldset, perms, checked) {
    const legend = fieldset.querySelector("legend");
    fieldset.replaceChildren(legend);
    for (const p of perms) {
      const id = fieldset.id + "-" + p.replace(/[^a-z-]/g, "-");
      fieldset.append(el("label", { for: id },
        el("input", { type: "checkbox", id, value: p, checked: checked(p) }), p));
    }
  }

  // toolsetsText shows a key's toolsets: null is every one the proxy offers.
  function toolsetsText(sets) {
    if (!sets) return "all";
    return sets.length ? sets.join(", ") : "none";
  }

  function checkedPerms(fieldset) {
    return Array.from(fieldset.querySelectorAll("input:checked"), (i) => i.value);
  }

  function setupForms(me) {
    const own = PERMS.filter((p) => me.perms.includes(p));
    permBoxes($("key-perms"), own, (p) => ["browser:read", "browser:write", "browser:script"].includes(p));
    permBoxes($("token-perms"), own, () => true);
    permBoxes($("key-toolsets"), TOOLSETS, () => false);
    $("key-user").hidden = $("key-user-label").hidden = !me.admin;
    for (const f of [$("key-form"), $("token-form")]) {
      for (const c of f.querySelectorAll("input, select, button")) c.disabled = me.derived;
    }
    if (me.derived) {
      $("key-secret").hidden = $("token-secret").hidden = false;
      const why = "You signed in with an API key or a token the proxy minted; it cannot make new credentials. Sign in with your own user token.";
      $("key-secret").textContent = why;
      $("token-secret").textContent = why;
    }
  }

  function showSecret(box, what, secret, detail) {
    const copy = el("button", { type: "button", class: "secondary small" }, "Copy");
    copy.addEventListener("click", () => {
      navigator.clipboard.writeText(secret).then(() => { copy.textContent = "Copied"; }, () => { copy.textContent = "Select and copy it"; });
    });
    box.replaceChildren(el("strong", {}, what + " (shown this once; it is not stored here):"), el("code", {}, secret), el("span", { class: "muted" }, detail), " ", copy);
    box.hidden = false;
  }

  async function loadKeys() {
    const keys = await api("GET", "/api/apikeys").catch((e) => { if (e.message !== "signed out") notice(e.message, true); return null; });
    if (!keys) return;
    const items = keys.map((k) => el("li", { "data-key": k.id },
      el("span", { class: "grow" }, el("span", { class: "mono" }, k.id), " ", k.name || "", " · ", k.userId, " · ", k.perms.join(", "), " · toolsets ", toolsetsText(k.toolsets),
        el("br"), el("span", { class: "muted" }, "created " + ago(k.createdAt) + (k.lastUsed ? ", used " + ago(k.lastUsed) : ", never used"))),
      confirmButton("key:" + k.id, "Revoke", "Really revoke?", async () => {
        await api("DELETE", "/api/apikeys/" + encodeURIComponent(k.id));
        notice("API key " + k.id + " is revoked; its next request is refused.");
        await loadKeys();
      }, { "data-action": "revoke-key" })));
    if (!items.length) items.push(el("li", { class: "empty" }, "No API keys."));
    $("keys").replaceChildren(...items);
  }

  function bindForms() {
    $("signin-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const tok = $("token").value.trim();
      if (tok) signIn(tok).catch(() => { /* start reports errors */ });
    });
    $("signout").addEventListener("click", () => signOut(""));
    $("key-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const b = ev.submitter;
      act(b, async () => {
        const body = { name: $("key-name").value.trim(), perms: checkedPerms($("key-perms")) };
        const sets = checkedPerms($("key-toolsets"));
        if (sets.length) body.toolsets = sets;
        const user = $("key-user").value.trim();
        if (user) body.user = user;
        const k = await api("POST", "/api/apikeys", body);
        showSecret($("key-secret"), "API key " + k.id, k.key, "for " + k.userId + ": " + k.perms.join(", ") + "; toolsets " + toolsetsText(k.toolsets));
        for (const i of $("key-toolsets").querySelectorAll("input")) i.checked = false;
        $("key-name").value = "";
        await loadKeys();
      });
    });
    $("token-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      act(ev.submitter, async () => {
        const t = await api("POST", "/api/tokens", { perms: checkedPerms($("token-perms")), ttl: $("token-ttl").value });
        showSecret($("token-secret"), "Token", t.token, "for " + t.userId + ": " + t.perms.join(", ") + "; expires " + new Date(t.expiresAt).toLocaleString());
      });
    });
    // Relative times stay fresh between events.
    setInterval(() => { if (state.overview && !$("app").hidden) render(state.overview); }, 10000);
  }

  // mbpSignedIn is the hook of the proxy's own sign-in (oauth.js): once it
  // has stored a token under sessionStorage "mbp.token", it calls this.
  window.mbpSignedIn = () => { start().catch(() => { /* start reports errors */ }); };

  bindForms();
  if (token()) start().catch(() => { /* start reports errors */ });
})();

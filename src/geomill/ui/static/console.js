/* geomill console: shared helpers. Every call goes to the JSON API with the session cookie; state-changing calls
   carry the page's CSRF token in X-CSRF-Token (the server refuses them with 403 otherwise). */
"use strict";
const GM = (() => {
  const meta = (name) => (document.querySelector(`meta[name="${name}"]`) || {}).content || "";
  const root = meta("geomill-root");
  const csrf = meta("geomill-csrf");
  const scopes = meta("geomill-scopes").split(" ").filter(Boolean);
  const LEVEL = { read: 0, submit: 1, admin: 2 };

  function can(scope) { return scopes.some((s) => (LEVEL[s] ?? -1) >= LEVEL[scope]); }

  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    if (method !== "GET") headers["X-CSRF-Token"] = csrf;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(root + path, {
      method, headers, credentials: "same-origin", body: body === undefined ? undefined : JSON.stringify(body),
    });
    let doc = null;
    try { doc = await response.json(); } catch (e) { doc = null; }
    if (response.status === 401) {
      location.href = `${root}/ui/login?next=${encodeURIComponent(location.pathname.slice(root.length) + location.search)}`;
    }
    if (!response.ok) {
      const err = new Error((doc && (doc.detail || doc.title)) || response.statusText);
      err.status = response.status;
      err.doc = doc;
      throw err;
    }
    return doc;
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) node.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
    return node;
  }

  function flash(message, kind) {
    const box = document.getElementById("flash");
    box.textContent = message;
    box.className = `flash ${kind || "info"}`;
    box.hidden = false;
  }

  function time(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    return d.toISOString().replace("T", " ").slice(0, 19);
  }

  function seconds(s) {
    if (s === null || s === undefined) return "";
    if (s < 60) return `${s.toFixed(1)} s`;
    if (s < 3600) return `${(s / 60).toFixed(1)} min`;
    return `${(s / 3600).toFixed(1)} h`;
  }

  function status(s) { return el("span", { class: `status s-${s}`, text: s }); }

  /* An <input type=datetime-local> value as RFC 3339 (UTC), what the API's time filters take. */
  function rfc3339(local) { return local ? new Date(local).toISOString() : ""; }

  function query(params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== "" && v !== null && v !== undefined) q.set(k, v);
    const s = q.toString();
    return s ? `?${s}` : "";
  }

  function formValues(form) {
    const values = {};
    for (const [k, v] of new FormData(form).entries()) values[k] = typeof v === "string" ? v.trim() : v;
    return values;
  }

  /* Run `fn` now and every `ms` while the page is visible; `fn` returning false stops the polling. */
  function poll(fn, ms) {
    let timer = null;
    let stopped = false;
    const tick = async () => {
      let again = true;
      if (!document.hidden) {
        try { again = (await fn()) !== false; } catch (e) { flash(e.message, "error"); }
      }
      if (again && !stopped) timer = setTimeout(tick, ms);
    };
    tick();
    return { stop() { stopped = true; clearTimeout(timer); } };
  }

  /* An action behind a confirmation: the button's data-confirm text, then the call, then a message. */
  async function confirmed(message, action, done) {
    if (!window.confirm(message)) return;
    try {
      const doc = await action();
      flash(done(doc), "ok");
    } catch (e) {
      flash(`refused: ${e.message}`, "error");
    }
  }

  function json(value) { return value === null || value === undefined ? "" : JSON.stringify(value, null, 2); }

  return { root, csrf, can, api, el, flash, time, seconds, status, rfc3339, query, formValues, poll, confirmed, json };
})();

"use strict";
// Sluice's status page: polls /admin/status and /admin/rates every 2 s and draws them; the
// admin actions (drain, split weights, promote, rollback, pause, resume) go to the same admin
// API after a confirmation. No framework: the view is rebuilt as a detached tree and patched
// into the page, so focus and scroll survive a refresh. Event handlers are delegated (data-act).

const POLL_MS = 2000;
const TOKEN_KEY = "sluice.adminToken";
const SVG = "http://www.w3.org/2000/svg";
const needsToken = document.body.dataset.auth === "token";
const state = { status: null, rates: null, error: null, updated: 0 };
let timer = 0;
let inFlight = false;

// ---- admin API ------------------------------------------------------------------------

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

async function api(method, path, body) {
  const headers = {};
  if (token()) headers.Authorization = "Bearer " + token();
  const init = { method, headers, cache: "no-store", credentials: "omit" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const r = await fetch(path, init);
  let data = null;
  try {
    data = await r.json();
  } catch (e) {
    data = null;
  }
  return { status: r.status, data };
}

async function poll() {
  clearTimeout(timer);
  if (needsToken && !token()) {
    showLogin("");
    return;
  }
  if (inFlight) return;
  inFlight = true;
  try {
    const [st, rt] = await Promise.all([api("GET", "/admin/status"), api("GET", "/admin/rates")]);
    if (st.status === 401 || rt.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      showLogin("The token was not accepted.");
      return;
    }
    if (st.status !== 200 || rt.status !== 200 || !st.data || !rt.data)
      throw new Error("HTTP " + st.status + " / " + rt.status);
    state.status = st.data;
    state.rates = rt.data;
    state.error = null;
    state.updated = Date.now();
  } catch (e) {
    state.error = "Sluice is not answering: " + e.message;
  } finally {
    inFlight = false;
  }
  render();
  if (!document.hidden) timer = setTimeout(poll, POLL_MS);
}

document.addEventListener("visibilitychange", () => {
  if (!document.hidden) poll();
});

// ---- login ----------------------------------------------------------------------------

function showLogin(message) {
  document.getElementById("login").hidden = false;
  document.getElementById("app").hidden = true;
  document.getElementById("signout").hidden = true;
  document.getElementById("login-error").textContent = message;
  document.getElementById("summary").textContent = "sign in to see the status";
  document.getElementById("token").focus();
}

document.getElementById("login-form").addEventListener("submit", (ev) => {
  ev.preventDefault();  // the token never goes into a URL (and form-action is 'none')
  const input = document.getElementById("token");
  sessionStorage.setItem(TOKEN_KEY, input.value);
  input.value = "";
  document.getElementById("login").hidden = true;
  document.getElementById("app").hidden = false;
  poll();
});

document.getElementById("signout").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  state.status = state.rates = null;
  document.getElementById("app").replaceChildren();
  showLogin("");
});

// ---- building the view ----------------------------------------------------------------

// h("div", {class: "x", "data-pool": "p"}, child, "text", [more]) -> Element
function h(tag, attrs, ...kids) {
  const svg = tag.startsWith("svg:");
  const el = svg ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const k of kids.flat(Infinity)) {
    if (k === null || k === undefined || k === false) continue;
    el.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
  return el;
}

function fmtRate(v) {
  if (v === null || v === undefined) return "–";
  if (v === 0) return "0";
  if (v < 10) return v.toFixed(2);
  if (v < 100) return v.toFixed(1);
  return Math.round(v).toLocaleString("en");
}

function fmtMs(v) {
  if (v === null || v === undefined) return "–";
  if (v < 10) return v.toFixed(1) + " ms";
  if (v < 1000) return Math.round(v) + " ms";
  return (v / 1000).toFixed(2) + " s";
}

// A quantile estimated from the histogram: below the first bucket bound (5 ms) it only says
// "under 5 ms".
function fmtQuantile(v) {
  if (v !== null && v !== undefined && v < 5) return "< 5 ms";
  return fmtMs(v);
}

function fmtRatio(v) {
  if (v === null || v === undefined) return "–";
  if (v === 0) return "0%";
  const p = v * 100;
  return (p < 1 ? p.toFixed(2) : p < 10 ? p.toFixed(1) : Math.round(p)) + "%";
}

function fmtTime(iso) {
  const d = new Date(iso);
  if (isNaN(d)) return iso;
  const s = Math.max(0, Math.round((Date.now() - d.getTime()) / 1000));
  const ago = s < 60 ? s + " s ago" : s < 3600 ? Math.round(s / 60) + " min ago"
    : Math.round(s / 3600) + " h ago";
  return d.toLocaleTimeString("en-GB") + " (" + ago + ")";
}

function badge(text, cls) {
  return h("span", { class: "badge s-" + (cls || text).replace(/[^a-z_-]/gi, "-") }, text);
}

function stat(label, value, key) {
  return h("div", { class: "stat" }, h("span", { class: "k" }, label),
    h("span", { class: "v", "data-stat": key || null }, value));
}

// A sparkline of `values` (null = no data: a gap), newest last.
function spark(values, cls, label) {
  const pts = values || [];
  const n = Math.max(pts.length, 2);
  const max = Math.max(0, ...pts.filter((v) => v !== null));
  let d = "";
  let pen = false;
  pts.forEach((v, i) => {
    if (v === null) {
      pen = false;
      return;
    }
    const x = (i / (n - 1)) * 100;
    const y = max > 0 ? 22 - (v / max) * 20 : 22;
    // A point after a gap starts a segment of its own (a dot when it stays alone).
    d += (pen ? "L" : "M") + x.toFixed(1) + " " + y.toFixed(1) + (pen ? "" : "l0.1 0");
    pen = true;
  });
  const svg = h("svg:svg", { viewBox: "0 0 100 24", preserveAspectRatio: "none", role: "img",
    "aria-label": label + ", last minute" },
  h("svg:path", { class: "base", d: "M0 23L100 23" }),
  d ? h("svg:path", { class: cls, d }) : null);
  return h("span", { class: "spark" }, svg, label);
}

// Rate, 5xx ratio and latency quantiles of the last minute, with sparklines. `what` says
// which latency it is (a route's whole answer, a pool's backend time to first byte).
function trafficStats(r, what) {
  if (!r) return h("p", { class: "sub" }, "no requests yet");
  return [
    h("div", { class: "stats", title: what },
      stat("req/s", fmtRate(r.rps), "rps"),
      stat("5xx", fmtRatio(r.error_ratio), "errors"),
      stat("p50", fmtQuantile(r.p50_ms), "p50"),
      stat("p95", fmtQuantile(r.p95_ms), "p95"),
      stat("p99", fmtQuantile(r.p99_ms), "p99")),
    h("div", { class: "sparks" }, spark(r.rps_series, "rate", "req/s"),
      spark(r.p95_series, "p95", "p95"), h("span", { class: "sub" }, what)),
  ];
}

function byName(list) {
  const m = new Map();
  for (const x of list || []) m.set(x.name, x);
  return m;
}

function summary(st) {
  const parts = ["v" + st.version, "generation " + st.generation, st.workers + " workers"];
  const lr = st.last_reload;
  if (lr) parts.push("last reload " + (lr.result === "success" ? "ok" : "FAILED") + " " +
    fmtTime(lr.at));
  return parts.join(" · ");
}

function viewHeader(st) {
  const lr = st.last_reload;
  return h("section", { class: "block", id: "overview" },
    h("div", { class: "card" },
      h("header", {}, h("h2", {}, "Overview"), badge(st.ready ? "ready" : "not ready",
        st.ready ? "ready" : "not-ready")),
      h("div", { class: "stats" },
        stat("generation", st.generation, "generation"),
        stat("backend revision", st.backend_revision),
        stat("workers", st.workers),
        stat("reloads ok", st.reloads.success),
        stat("reloads failed", st.reloads.error)),
      lr ? h("p", { class: "decision", id: "last-reload", "data-result": lr.result },
        "Last reload: ", badge(lr.result === "success" ? "ok" : "failed",
          lr.result === "success" ? "ok" : "error"), " ", fmtTime(lr.at),
        lr.reason ? " — " + lr.reason : "",
        (lr.errors || []).length ? h("br") : null,
        (lr.errors || []).map((e) => h("code", { class: "mono" }, e, h("br")))) : null));
}

function viewListeners(st, rates) {
  const live = byName(rates.listeners);
  const tls = rates.tls || { handshakes: 0, errors: 0 };
  return h("section", { class: "block", id: "listeners" }, h("h2", {}, "Listeners"),
    h("div", { class: "card" },
      h("ul", { class: "rows" }, st.listeners.map((l) => {
        const r = live.get(l.name);
        return h("li", { "data-listener": l.name },
          h("span", { class: "name" }, h("strong", {}, l.name), " ",
            h("span", { class: "mono sub" }, l.listen)),
          h("span", { class: "num", "data-stat": "active" },
            (r ? r.active : 0) + " open"),
          h("span", { class: "num" }, fmtRate(r ? r.cps : null) + " conn/s"));
      })),
      tls.handshakes || tls.errors ? h("p", { class: "sub" }, "TLS handshakes in the last " +
        "minute: " + tls.handshakes + (tls.errors ? ", failed: " + tls.errors : "")) : null));
}

function routeTarget(r) {
  if (r.return) return "return " + r.return;
  if (r.split) return "split " + r.split.map((a) => a.pool).join(" / ");
  return "→ " + r.pool;
}

function viewRoutes(st, rates) {
  const live = byName(rates.routes);
  const cards = st.routes.map((r) => h("article", { class: "card", "data-route": r.name },
    h("header", {}, h("h3", {}, r.name),
      h("span", { class: "sub mono" }, (r.host || "*") + " " + (r.regex ? "~ " : "") +
        r.path + (r.exact ? " (exact)" : "")),
      h("span", { class: "sub" }, routeTarget(r))),
    trafficStats(live.get(r.name), "whole answer")));
  const unrouted = live.get("");
  if (unrouted && unrouted.requests > 0)
    cards.push(h("article", { class: "card", "data-route": "" },
      h("header", {}, h("h3", {}, "(no route)"),
        h("span", { class: "sub" }, "answered by the proxy: no match, bad requests")),
      trafficStats(unrouted, "whole answer")));
  return h("section", { class: "block", id: "routes" }, h("h2", {}, "Routes"),
    h("div", { class: "grid" }, cards));
}

function weightsBar(pools, weights) {
  const total = pools.reduce((s, p) => s + (weights[p] || 0), 0) || 1;
  let x = 0;
  const rects = pools.map((p, i) => {
    const w = ((weights[p] || 0) / total) * 100;
    const r = h("svg:rect", { x: x.toFixed(2), y: 0, width: w.toFixed(2), height: 10,
      class: "c" + (i % 6) }, h("svg:title", {}, p + ": " + (weights[p] || 0)));
    x += w;
    return r;
  });
  return h("svg:svg", { class: "bar", viewBox: "0 0 100 10", preserveAspectRatio: "none",
    role: "img", "aria-label": "live weights " +
      pools.map((p) => p + " " + (weights[p] || 0)).join(", ") }, rects);
}

function viewRelease(r) {
  const rel = r.release || {};
  const pools = r.split.map((a) => a.pool);
  const file = {};
  for (const a of r.split) file[a.pool] = a.weight;
  const weights = r.live_weights || {};
  const d = rel.last_decision;
  const stateBadge = rel.paused ? badge("paused") : badge(rel.state || "steady");
  const steps = rel.steps ? "step " + rel.step + " of " + rel.steps.length + " (" +
    rel.steps.join(" → ") + " %)" : null;
  const win = rel.window || {};
  return h("article", { class: "card", "data-split": r.name },
    h("header", {}, h("h3", {}, r.name), stateBadge,
      h("span", { class: "sub" }, "set by " + (rel.source || "file"))),
    weightsBar(pools, weights),
    h("div", { class: "legend" }, pools.map((p, i) => h("span", { "data-weight": p },
      h("svg:svg", { viewBox: "0 0 10 10", "aria-hidden": "true" },
        h("svg:rect", { width: 10, height: 10, class: "c" + (i % 6) })),
      p + " " + (weights[p] || 0) + (weights[p] !== file[p] ? " (file " + file[p] + ")" : "")))),
    steps ? h("p", { class: "sub", "data-stat": "step" }, steps +
      (rel.next_step_in_ms !== undefined ? ", next in " + Math.ceil(rel.next_step_in_ms / 1000) +
        " s" : "")) : null,
    h("ul", { class: "rows" }, pools.map((p) => {
      const w = win[p] || {};
      return h("li", {}, h("span", { class: "name" }, p),
        h("span", { class: "num" }, (w.requests || 0) + " req"),
        h("span", { class: "num" }, fmtRatio(w.error_rate || 0) + " err"),
        h("span", { class: "num" }, "p99 " + fmtMs(w.p99_ms)),
        w.rollbacks ? h("span", { class: "num" }, w.rollbacks + " rollbacks") : null);
    })),
    h("p", { class: "decision", "data-decision": d ? d.action : "" },
      d ? ["Last decision: ", h("strong", {}, d.action), d.pool ? " " + d.pool : "", " — ",
        d.reason, " · ", fmtTime(d.at)] : h("span", { class: "sub" }, "No decision yet.")),
    h("div", { class: "actions" },
      h("button", { type: "button", "data-act": "weights", "data-route": r.name },
        "Set weights…"),
      h("button", { type: "button", class: "quiet", "data-act": "promote",
        "data-route": r.name }, "Promote"),
      h("button", { type: "button", class: "danger", "data-act": "rollback",
        "data-route": r.name }, "Roll back"),
      rel.steps ? h("button", { type: "button", class: "quiet",
        "data-act": rel.paused ? "resume" : "pause", "data-route": r.name },
      rel.paused ? "Resume" : "Pause") : null));
}

function viewReleases(st) {
  const splits = st.routes.filter((r) => r.split);
  if (!splits.length) return null;
  return h("section", { class: "block", id: "releases" }, h("h2", {}, "Splits and releases"),
    h("div", { class: "grid" }, splits.map(viewRelease)));
}

function viewPools(st, rates) {
  const live = byName(rates.pools);
  const cards = Object.entries(st.pools).map(([name, p]) => {
    const up = p.backends.filter((b) => b.up).length;
    return h("article", { class: "card", "data-pool": name },
      h("header", {}, h("h3", {}, name),
        badge(up + "/" + p.backends.length + " up", up ? (up === p.backends.length ? "ok" :
          "draining") : "bad"),
        h("span", { class: "sub" }, p.balance + (p.health_checks ? ", health checks" : ""))),
      trafficStats(live.get(name), "backend time to first byte"),
      h("ul", { class: "rows" },
        p.backends.map((b) => h("li", { "data-backend": b.address, "data-state": b.state },
          h("span", { class: "name mono" }, b.name), badge(b.state),
          h("span", { class: "num", "data-stat": "active" }, b.active + " active"),
          h("span", { class: "num" }, "w " + b.weight),
          b.consecutive_failures ? h("span", { class: "num" },
            b.consecutive_failures + " failures") : null,
          h("button", { type: "button", class: b.draining ? "quiet" : "danger",
            "data-act": b.draining ? "undrain" : "drain", "data-pool": name,
            "data-address": b.address,
            "aria-label": (b.draining ? "Undrain " : "Drain ") + b.address + " in " + name },
          b.draining ? "Undrain" : "Drain"))),
        p.unresolved.map((u) => h("li", {}, h("span", { class: "name mono" }, u),
          badge("unresolved")))));
  });
  return h("section", { class: "block", id: "pools" }, h("h2", {}, "Pools and backends"),
    h("div", { class: "grid" }, cards));
}

function viewRateLimits(rates) {
  if (!rates.ratelimit || !rates.ratelimit.length) return null;
  return h("section", { class: "block", id: "ratelimits" },
    h("h2", {}, "Rate limits (last minute)"),
    h("div", { class: "card" }, h("ul", { class: "rows" }, rates.ratelimit.map((m) =>
      h("li", { "data-middleware": m.middleware },
        h("span", { class: "name" }, m.middleware),
        h("span", { class: "num", "data-stat": "allowed" }, m.allowed + " allowed"),
        h("span", { class: "num", "data-stat": "limited" }, m.limited + " limited"),
        m.store_error ? badge(m.store_error + " store errors", "error") : null)))));
}

function view() {
  const st = state.status;
  const rates = state.rates;
  if (!st || !rates) return h("main", { id: "app" }, h("p", { class: "empty" }, "Loading…"));
  return h("main", { id: "app", "data-generation": st.generation },
    viewHeader(st), viewListeners(st, rates), viewReleases(st), viewRoutes(st, rates),
    viewPools(st, rates), viewRateLimits(rates));
}

// Make `old` look like `fresh` (same structure mostly: update in place).
function patch(old, fresh) {
  if (old.nodeType !== fresh.nodeType || old.nodeName !== fresh.nodeName) {
    old.replaceWith(fresh);
    return;
  }
  if (old.nodeType === Node.TEXT_NODE) {
    if (old.data !== fresh.data) old.data = fresh.data;
    return;
  }
  for (const a of Array.from(old.attributes))
    if (!fresh.hasAttribute(a.name)) old.removeAttribute(a.name);
  for (const a of Array.from(fresh.attributes))
    if (old.getAttribute(a.name) !== a.value) old.setAttribute(a.name, a.value);
  const a = Array.from(old.childNodes);
  const b = Array.from(fresh.childNodes);
  for (let i = 0; i < b.length; i++) {
    if (i < a.length) patch(a[i], b[i]);
    else old.append(b[i]);
  }
  for (let i = b.length; i < a.length; i++) a[i].remove();
}

function render() {
  const app = document.getElementById("app");
  app.hidden = false;
  document.getElementById("login").hidden = true;
  document.getElementById("signout").hidden = !token();
  const sum = document.getElementById("summary");
  sum.textContent = state.status ? summary(state.status) : "connecting…";
  const note = document.getElementById("notice");
  if (state.error) {
    note.hidden = false;
    note.className = "notice bad";
    note.textContent = state.error + (state.updated ? " (showing the state of " +
      new Date(state.updated).toLocaleTimeString("en-GB") + ")" : "");
  } else if (note.dataset.kind !== "action") {
    note.hidden = true;
  }
  patch(app, view());
  document.body.dataset.updated = String(state.updated);
}

// ---- actions --------------------------------------------------------------------------

const dialog = document.getElementById("confirm");
let answer = null;

// Shows the dialog; resolves with the form's values on Confirm, null on Cancel / Escape.
function confirmAction(title, text, okLabel, fields) {
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-fields").replaceChildren(...(fields || []));
  document.getElementById("confirm-ok").textContent = okLabel;
  dialog.showModal();
  return new Promise((resolve) => {
    answer = resolve;
  });
}

function closeDialog(value) {
  if (dialog.open) dialog.close();
  if (answer) {
    const a = answer;
    answer = null;
    a(value);
  }
}

document.getElementById("confirm-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const values = {};
  for (const input of dialog.querySelectorAll("input"))
    values[input.name] = input.type === "checkbox" ? input.checked : input.value;
  closeDialog(values);
});
document.getElementById("confirm-cancel").addEventListener("click", () => closeDialog(null));
// Escape closes the dialog by itself. A close event can also arrive late, after the dialog was
// opened again for the next action (input runs before it): only a closed dialog cancels.
dialog.addEventListener("close", () => {
  if (!dialog.open) closeDialog(null);
});

let noticeTimer = 0;

// The outcome of an action, for a while (errors longer).
function notify(text, bad) {
  const note = document.getElementById("notice");
  note.hidden = false;
  note.dataset.kind = "action";
  note.className = bad ? "notice bad" : "notice";
  note.textContent = text;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => {
    delete note.dataset.kind;
    note.hidden = !state.error;
  }, bad ? 20000 : 8000);
}

function forceField() {
  return h("div", { class: "field" },
    h("input", { type: "checkbox", id: "f-force", name: "force" }),
    h("label", { for: "f-force" }, "force (even if a pool raised from 0 has no usable backend)"));
}

function routeOf(name) {
  return (state.status.routes || []).find((r) => r.name === name);
}

async function act(btn) {
  const kind = btn.dataset.act;
  const route = btn.dataset.route;
  let method = "POST";
  let path;
  let body;
  let values;
  if (kind === "drain" || kind === "undrain") {
    const pool = btn.dataset.pool;
    const address = btn.dataset.address;
    values = await confirmAction(kind === "drain" ? "Drain backend" : "Undrain backend",
      kind === "drain"
        ? "No new request will go to " + address + " in pool " + pool +
          "; requests in flight finish."
        : address + " in pool " + pool + " takes new requests again.",
      kind === "drain" ? "Drain" : "Undrain");
    path = "/admin/pools/" + encodeURIComponent(pool) + "/backends/" +
      encodeURIComponent(address) + "/" + kind;
  } else if (kind === "weights") {
    const r = routeOf(route);
    if (!r) return;
    const fields = r.split.map((a, i) => h("div", { class: "field" },
      h("label", { for: "f-w" + i }, a.pool),
      h("input", { type: "number", id: "f-w" + i, name: "w:" + a.pool, min: 0, max: 1000000,
        step: 1, required: true, value: (r.live_weights || {})[a.pool] ?? a.weight })));
    fields.push(forceField());
    values = await confirmAction("Split weights of " + route,
      "The new weights apply to the next request on every worker (a reload re-applies the " +
      "file's weights). A running promotion is paused.", "Set weights", fields);
    if (values) {
      method = "PUT";
      body = {};
      for (const [k, v] of Object.entries(values))
        if (k.startsWith("w:")) body[k.slice(2)] = Number(v);
    }
    path = "/admin/routes/" + encodeURIComponent(route) + "/split";
  } else if (["promote", "rollback", "pause", "resume"].includes(kind)) {
    const text = {
      promote: "Move the canary of " + route + " to its next step now.",
      rollback: "Send all of " + route + "'s traffic back to the baseline pool.",
      pause: "Stop the automatic promotion of " + route + " (automatic rollback stays on).",
      resume: "Restart the automatic promotion of " + route + ".",
    }[kind];
    const label = kind === "rollback" ? "Roll back" : kind[0].toUpperCase() + kind.slice(1);
    values = await confirmAction(label + " " + route, text, label,
      kind === "promote" ? [forceField()] : []);
    path = "/admin/routes/" + encodeURIComponent(route) + "/" + kind;
  } else {
    return;
  }
  if (!values) return;
  if (values.force) path += "?force=1";
  try {
    const r = await api(method, path, body);
    if (r.status === 200) {
      notify(btn.dataset.act + " " + (route || btn.dataset.address) + ": done");
    } else if (r.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      showLogin("The token was not accepted.");
      return;
    } else {
      const e = r.data || {};
      notify(kind + " failed: " + r.status + " " + (e.error || "") +
        (e.detail ? " — " + e.detail : ""), true);
    }
  } catch (e) {
    notify(kind + " failed: " + e.message, true);
  }
  poll();
}

document.addEventListener("click", (ev) => {
  const btn = ev.target.closest("button[data-act]");
  if (btn) act(btn);
});

poll();

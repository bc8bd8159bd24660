// canaryd dashboard. Plain ES2020, no modules, no dependencies.
//
// The page holds no data. It needs the admin token: typed into the form, or
// passed once in the URL fragment (/dashboard#token=…; fragments are never
// sent to the server). The token is kept in sessionStorage (this tab only)
// and removed from the address bar at once. Every POLL_MS the page fetches
// the four JSON endpoints with an Authorization: Bearer header and keeps the
// last HISTORY_MS of figures for its charts.
"use strict";

(function () {
  const POLL_MS = 1500;
  const HISTORY_MS = 5 * 60 * 1000;
  const TOKEN_KEY = "canaryd.token";
  const ENDPOINTS = {
    check: "/canary_check",
    overview: "/dashboard/canary_overview",
    health: "/dashboard/health_summary",
    integrity: "/dashboard/integrity_details",
  };
  const COLORS = { stable: "#2f6fde", canary: "#e8871e", p50: "#3aa757", p95: "#e8871e", p99: "#c8352d", slo: "#888" };

  const $ = (id) => document.getElementById(id);
  let timer = null;
  let generation = 0; // bumps on every login/logout so stale polls are ignored
  const points = []; // {t, check}

  // ---- token handling -------------------------------------------------

  function takeTokenFromFragment() {
    const hash = window.location.hash.replace(/^#/, "");
    if (!hash) return;
    const params = new URLSearchParams(hash);
    const token = params.get("token");
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    // Remove the token from the address bar and the tab's history.
    history.replaceState(null, "", window.location.pathname + window.location.search);
  }

  function token() {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  }

  function showLogin(message) {
    stop();
    sessionStorage.removeItem(TOKEN_KEY);
    $("board").hidden = true;
    $("logout").hidden = true;
    $("login").hidden = false;
    setConn("not connected", "");
    showMessage(message);
    $("token-input").value = "";
    $("token-input").focus();
  }

  function showMessage(text) {
    const m = $("message");
    m.textContent = text || "";
    m.hidden = !text;
  }

  function setConn(text, cls) {
    const c = $("conn");
    c.textContent = text;
    c.className = cls || "muted";
  }

  function start() {
    stop();
    generation++;
    points.length = 0;
    $("login").hidden = true;
    $("board").hidden = false;
    $("logout").hidden = false;
    showMessage("");
    poll(generation);
  }

  function stop() {
    if (timer !== null) clearTimeout(timer);
    timer = null;
    generation++;
  }

  // ---- polling --------------------------------------------------------

  class AuthError extends Error {}
  class LimitError extends Error {
    constructor(retry) {
      super("rate limited");
      this.retry = retry;
    }
  }

  async function fetchJSON(path, tok) {
    const res = await fetch(path, {
      headers: { Authorization: "Bearer " + tok, Accept: "application/json" },
      cache: "no-store",
      credentials: "omit",
      referrerPolicy: "no-referrer",
    });
    if (res.status === 401) throw new AuthError("unauthorized");
    if (res.status === 429) throw new LimitError(res.headers.get("Retry-After") || "a few");
    if (!res.ok) throw new Error(path + ": HTTP " + res.status);
    return res.json();
  }

  async function poll(gen) {
    const tok = token();
    if (!tok) {
      showLogin("");
      return;
    }
    try {
      const [check, overview, health, integrity] = await Promise.all([
        fetchJSON(ENDPOINTS.check, tok),
        fetchJSON(ENDPOINTS.overview, tok),
        fetchJSON(ENDPOINTS.health, tok),
        fetchJSON(ENDPOINTS.integrity, tok),
      ]);
      if (gen !== generation) return;
      render(check, overview, health, integrity);
      setConn("updated " + new Date().toLocaleTimeString(), "ok");
    } catch (err) {
      if (gen !== generation) return;
      if (err instanceof AuthError) {
        showLogin("The token was not accepted. Enter the admin token again.");
        return;
      }
      if (err instanceof LimitError) {
        showLogin("Too many failed attempts from this address; try again in " + err.retry + " s.");
        return;
      }
      setConn("connection problem: " + err.message, "bad");
    }
    if (gen === generation) timer = setTimeout(() => poll(gen), POLL_MS);
  }

  // ---- rendering ------------------------------------------------------

  function text(id, value, cls) {
    const el = $(id);
    el.textContent = value;
    if (cls !== undefined) el.className = "big " + cls;
  }

  function cell(row, value, cls) {
    const td = document.createElement("td");
    td.textContent = value;
    if (cls) td.className = cls;
    row.appendChild(td);
    return td;
  }

  function fillRows(tbodyId, items, build) {
    const tbody = $(tbodyId);
    const rows = items.map((item) => {
      const tr = document.createElement("tr");
      build(tr, item);
      return tr;
    });
    tbody.replaceChildren(...rows);
  }

  function fillList(id, items) {
    const ul = $(id);
    ul.replaceChildren(...items.map((s) => {
      const li = document.createElement("li");
      li.textContent = s;
      return li;
    }));
  }

  const fmt = (v, digits) => (typeof v === "number" && isFinite(v) ? v.toFixed(digits) : "–");
  const pct = (ratio) => fmt(ratio * 100, 2) + " %";
  const verdictClass = (v) => (v === "pass" || v === "healthy" || v === "VERIFIED" || v === "proceed" || v === "complete"
    ? "ok" : v === "fail" || v === "unhealthy" || v === "FAILED" || String(v).startsWith("rollback") ? "bad" : "warn");

  // Go duration text ("5m0s", "1h30m", "90s") to seconds.
  function durationSeconds(s) {
    const units = { h: 3600, m: 60, s: 1, ms: 0.001, us: 1e-6, "µs": 1e-6, ns: 1e-9 };
    let total = 0;
    const re = /([0-9.]+)(h|ms|m|s|us|µs|ns)/g;
    let m;
    while ((m = re.exec(s || "")) !== null) total += parseFloat(m[1]) * units[m[2]];
    return total;
  }

  function formatGate(v, unit) {
    if (unit === "ratio") return pct(v);
    if (unit === "ms") return fmt(v, 1) + " ms";
    if (unit === "requests") return fmt(v, 0);
    return fmt(v, 3);
  }

  function render(check, overview, health, integrity) {
    text("weight", fmt(check.weight, 2).replace(/\.?0+$/, "") + " %");
    text("recommendation", check.recommendation || "–", verdictClass(check.recommendation));
    text("state", check.state || overview.state || "–");
    text("overall-health", health.overall_health || "–", verdictClass(health.overall_health));
    text("integrity-status", integrity.status || "–", verdictClass(integrity.status));
    $("release").textContent = check.release ? "release " + check.release : "";
    $("window").textContent = check.window ? "(window " + check.window + ")" : "";

    fillList("reasons", check.reasons || []);
    const rb = $("rollback-reason");
    rb.hidden = !overview.rollback_required;
    rb.textContent = overview.rollback_required ? "Rollback required: " + (overview.rollback_reason || "") : "";

    fillRows("gates", check.gates || [], (tr, g) => {
      cell(tr, g.name);
      cell(tr, formatGate(g.value, g.unit));
      cell(tr, formatGate(g.threshold, g.unit));
      cell(tr, fmt(g.samples, 0));
      cell(tr, g.verdict, verdictClass(g.verdict));
      cell(tr, g.detail || "");
    });

    const windowSec = durationSeconds(check.window) || 1;
    for (const name of ["stable", "canary"]) {
      const b = check[name] || {};
      const hc = (health[name] || {}).health_checks || {};
      const tr = $(name + "-figures");
      const th = document.createElement("th");
      th.textContent = name;
      tr.replaceChildren(th);
      cell(tr, fmt(b.requests, 0));
      cell(tr, fmt((b.requests || 0) / windowSec, 2) + " /s");
      cell(tr, fmt(b.errors, 0));
      cell(tr, pct(b.error_rate || 0));
      cell(tr, fmt(b.p50_ms, 1) + " ms");
      cell(tr, fmt(b.p95_ms, 1) + " ms");
      cell(tr, fmt(b.p99_ms, 1) + " ms");
      cell(tr, !hc.enabled ? "off" : (hc.healthy ? "healthy" : "unhealthy") + " (" + fmt(hc.failures, 0) + "/" + fmt(hc.checks, 0) + " failed)",
        !hc.enabled ? "" : hc.healthy ? "ok" : "bad");
    }
    fillList("health-reasons", health.reasons || []);

    // The fleet: a single canaryd is a fleet of one, its own leader.
    const fl = check.fleet || {};
    $("fleet-store").textContent = fl.store ? "(" + fl.store + " store, " + (fl.store_ok ? "answering" : "NOT answering") + ")" : "";
    fillRows("fleet", fl.replicas || [], (tr, r) => {
      cell(tr, r.id + (r.id === fl.self ? " (this one)" : ""));
      cell(tr, r.leader ? "leader" : "replica", r.leader ? "ok" : "");
      cell(tr, fmt(r.last_report_ms, 0) + " ms ago", r.last_report_ms > 3000 ? "warn" : "");
      cell(tr, fmt(r.requests, 0));
      cell(tr, fmt(r.canary_requests, 0));
    });

    fillRows("plan", overview.plan || [], (tr, s) => {
      cell(tr, String(s.index + 1));
      cell(tr, fmt(s.weight, 2).replace(/\.?0+$/, "") + " %");
      cell(tr, s.observe || "");
      cell(tr, s.status || "", s.status === "current" ? "warn" : s.status === "done" ? "ok" : "");
      cell(tr, s.remaining || "");
    });

    const hist = (overview.history || []).slice().reverse();
    fillRows("history", hist, (tr, h) => {
      cell(tr, h.time ? new Date(h.time).toLocaleString() : "");
      cell(tr, fmt(h.from, 2).replace(/\.?0+$/, "") + " %");
      cell(tr, fmt(h.to, 2).replace(/\.?0+$/, "") + " %");
      cell(tr, (h.from_state || "") + " → " + (h.to_state || ""));
      cell(tr, h.reason || "", String(h.reason || "").startsWith("rollback") ? "bad" : "");
      cell(tr, (h.who || "") + (h.replica ? " on " + h.replica : ""));
    });

    $("integrity-summary").textContent = integrity.summary || "";
    fillRows("integrity-failures", integrity.failures || [], (tr, f) => {
      cell(tr, f.path);
      cell(tr, f.problem, "bad");
    });

    const now = Date.now();
    points.push({ t: now, c: check });
    while (points.length && points[0].t < now - HISTORY_MS) points.shift();
    drawCharts(now, check);
  }

  // ---- charts ---------------------------------------------------------

  function series(label, color, pick, dash) {
    return { label, color, dash: dash || [], data: points.map((p) => [p.t, pick(p.c)]) };
  }

  function drawCharts(now, check) {
    const slo = check.slo || {};
    drawChart($("chart-requests"), now, [
      series("stable", COLORS.stable, (c) => (c.stable || {}).requests || 0),
      series("canary", COLORS.canary, (c) => (c.canary || {}).requests || 0),
    ], null);
    drawChart($("chart-errors"), now, [
      series("stable", COLORS.stable, (c) => ((c.stable || {}).error_rate || 0) * 100),
      series("canary", COLORS.canary, (c) => ((c.canary || {}).error_rate || 0) * 100),
    ], slo.error_rate ? { label: "SLO", value: slo.error_rate * 100 } : null);
    for (const name of ["canary", "stable"]) {
      drawChart($("chart-" + name + "-latency"), now, [
        series("p50", COLORS.p50, (c) => (c[name] || {}).p50_ms || 0),
        series("p95", COLORS.p95, (c) => (c[name] || {}).p95_ms || 0),
        series("p99", COLORS.p99, (c) => (c[name] || {}).p99_ms || 0),
      ], slo.p95_ms ? { label: "SLO p95", value: slo.p95_ms } : null);
    }
    drawChart($("chart-weight"), now, [series("weight", COLORS.canary, (c) => c.weight || 0)], null, 100);
  }

  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
    return 10 * p;
  }

  function drawChart(canvas, now, list, threshold, fixedMax) {
    const dpr = window.devicePixelRatio || 1;
    const cssW = canvas.clientWidth || canvas.width;
    const cssH = canvas.clientHeight || canvas.height;
    if (canvas.width !== Math.round(cssW * dpr) || canvas.height !== Math.round(cssH * dpr)) {
      canvas.width = Math.round(cssW * dpr);
      canvas.height = Math.round(cssH * dpr);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, cssW, cssH);
    const pad = { l: 48, r: 8, t: 18, b: 20 };
    const w = cssW - pad.l - pad.r;
    const h = cssH - pad.t - pad.b;
    let max = 0;
    for (const s of list) for (const [, v] of s.data) max = Math.max(max, v);
    if (threshold) max = Math.max(max, threshold.value);
    max = fixedMax || niceMax(max * 1.1);
    const t0 = now - HISTORY_MS;
    const x = (t) => pad.l + ((t - t0) / HISTORY_MS) * w;
    const y = (v) => pad.t + h - (Math.min(v, max) / max) * h;

    ctx.font = "11px system-ui, sans-serif";
    ctx.strokeStyle = "#ddd";
    ctx.fillStyle = "#666";
    ctx.lineWidth = 1;
    ctx.setLineDash([]);
    for (let i = 0; i <= 4; i++) {
      const v = (max * i) / 4;
      const yy = Math.round(y(v)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(pad.l, yy);
      ctx.lineTo(pad.l + w, yy);
      ctx.stroke();
      ctx.textAlign = "right";
      ctx.fillText(v >= 100 ? v.toFixed(0) : v.toPrecision(3).replace(/\.?0+$/, ""), pad.l - 4, yy + 4);
    }
    ctx.textAlign = "left";
    ctx.fillText("−5 min", pad.l, cssH - 4);
    ctx.textAlign = "right";
    ctx.fillText("now", pad.l + w, cssH - 4);

    if (threshold) {
      ctx.strokeStyle = COLORS.slo;
      ctx.setLineDash([4, 4]);
      ctx.beginPath();
      ctx.moveTo(pad.l, y(threshold.value));
      ctx.lineTo(pad.l + w, y(threshold.value));
      ctx.stroke();
      ctx.setLineDash([]);
    }

    let lx = pad.l + 4;
    for (const s of list) {
      ctx.strokeStyle = s.color;
      ctx.lineWidth = 1.5;
      ctx.setLineDash(s.dash);
      ctx.beginPath();
      s.data.forEach(([t, v], i) => (i === 0 ? ctx.moveTo(x(t), y(v)) : ctx.lineTo(x(t), y(v))));
      if (s.data.length === 1) ctx.arc(x(s.data[0][0]), y(s.data[0][1]), 1.5, 0, 2 * Math.PI);
      ctx.stroke();
      ctx.setLineDash([]);
      ctx.fillStyle = s.color;
      ctx.fillRect(lx, 5, 10, 3);
      ctx.fillStyle = "#333";
      ctx.textAlign = "left";
      ctx.fillText(s.label, lx + 13, 11);
      lx += 20 + ctx.measureText(s.label).width;
    }
    if (threshold) {
      ctx.fillStyle = COLORS.slo;
      ctx.fillText(threshold.label, lx, 11);
    }
  }

  // ---- wiring ---------------------------------------------------------

  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const value = $("token-input").value.trim();
    if (!value) return;
    sessionStorage.setItem(TOKEN_KEY, value);
    $("token-input").value = "";
    start();
  });
  $("logout").addEventListener("click", () => showLogin("Token forgotten."));

  takeTokenFromFragment();
  if (token()) start();
  else showLogin("");
})();

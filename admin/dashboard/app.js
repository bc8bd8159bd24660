// canaryd dashboard. Plain ES2020, no modules, no dependencies.
//
// The page holds no data. It needs the admin token: typed into the form, or
// passed once in the URL fragment (/dashboard#token=…; fragments are never
// sent to the server). The token is kept in sessionStorage (this tab only)
// and removed from the address bar at once.
//
// On start it reads the server's last hour of figures (/dashboard/history),
// then every POLL_MS it asks the JSON endpoints again, and the history for
// the points taken since the last one it has. When a poll fails the page
// greys out and says since when its figures are; it recovers by itself.
// Controls are shown to operate tokens only (GET /dashboard/session); each
// asks for confirmation in the page and shows the API's answer.
"use strict";

(function () {
  const POLL_MS = 1500;
  const MIN_RANGE_MS = 2 * 60 * 1000;
  const FETCH_TIMEOUT_MS = 8000;
  const TOKEN_KEY = "canaryd.token";
  const ENDPOINTS = {
    check: "/canary_check",
    overview: "/dashboard/canary_overview",
    health: "/dashboard/health_summary",
    integrity: "/dashboard/integrity_details",
    session: "/dashboard/session",
    history: "/dashboard/history",
  };
  // Read from the style sheet so the page has one palette.
  const css = getComputedStyle(document.documentElement);
  const color = (name, fallback) => css.getPropertyValue(name).trim() || fallback;
  const COLORS = {
    stable: color("--stable", "#2f6fde"),
    canary: color("--canary", "#e8871e"),
    slo: color("--slo", "#444"),
    bad: color("--bad", "#c8352d"),
    ok: color("--ok", "#1f8a3b"),
    warn: color("--warn", "#b7791f"),
  };

  const $ = (id) => document.getElementById(id);
  let timer = null;
  let generation = 0; // bumps on every login/logout so stale polls are ignored
  let inFlight = false; // a poll is waiting for its answers
  let again = false; // poll again as soon as the one in flight ends

  // What the page knows; reset by start().
  const state = {
    points: [], // history points, oldest first: {at (ms, server clock), time (as sent), raw}
    lastTime: "", // the newest point's time exactly as the server wrote it
    span: 3600 * 1000,
    interval: 5000,
    window: "",
    skew: 0, // server clock minus this browser's, in ms
    gateFailures: {}, // name -> {since, samples}
    lastOk: null, // Date of the last successful poll
    staleSince: null, // Date since when the figures are not fresh, or null
    failures: 0,
    role: "",
    last: null, // the last successful poll's answers
    liveOnly: false, // the server keeps no history: the tab keeps its polls
  };

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
    $("stale").hidden = true;
    document.body.classList.remove("stale");
    $("session").textContent = "";
    setConn("not connected", "muted");
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
    Object.assign(state, {
      points: [], lastTime: "", gateFailures: {}, lastOk: null, staleSince: null, failures: 0, role: "", last: null,
    });
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

  // pollSoon polls now, or right after the poll in flight, so that a
  // command's effect shows at once.
  function pollSoon() {
    if (inFlight) {
      again = true;
      return;
    }
    if (timer !== null) clearTimeout(timer);
    timer = null;
    poll(generation);
  }

  // ---- polling --------------------------------------------------------

  class AuthError extends Error {}
  class LimitError extends Error {
    constructor(retry) {
      super("rate limited");
      this.retry = retry;
    }
  }

  async function request(path, tok, init) {
    const ctl = new AbortController();
    const t = setTimeout(() => ctl.abort(), FETCH_TIMEOUT_MS);
    try {
      return await fetch(path, Object.assign({
        headers: { Authorization: "Bearer " + tok, Accept: "application/json" },
        cache: "no-store",
        credentials: "omit",
        referrerPolicy: "no-referrer",
        signal: ctl.signal,
      }, init || {}));
    } catch (err) {
      throw new Error(err.name === "AbortError" ? "no answer within " + FETCH_TIMEOUT_MS / 1000 + " s" : err.message);
    } finally {
      clearTimeout(t);
    }
  }

  async function fetchJSON(path, tok) {
    const res = await request(path, tok);
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
    timer = null;
    inFlight = true;
    try {
      const since = state.lastTime ? "?since=" + encodeURIComponent(state.lastTime) : "";
      const [check, overview, health, integrity, session, hist] = await Promise.all([
        fetchJSON(ENDPOINTS.check, tok),
        fetchJSON(ENDPOINTS.overview, tok),
        fetchJSON(ENDPOINTS.health, tok),
        fetchJSON(ENDPOINTS.integrity, tok),
        fetchJSON(ENDPOINTS.session, tok),
        fetchJSON(ENDPOINTS.history + since, tok),
      ]);
      if (gen !== generation) return;
      ingestHistory(hist);
      state.liveOnly = !hist.interval; // a server that keeps no history
      if (state.liveOnly) keepLive(check);
      state.last = { check, overview, health, integrity, session };
      fresh();
      render();
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
      stale(err);
    } finally {
      inFlight = false;
    }
    if (gen !== generation) return;
    const delay = again ? 0 : POLL_MS;
    again = false;
    timer = setTimeout(() => poll(gen), delay);
  }

  function fresh() {
    state.lastOk = new Date();
    state.staleSince = null;
    state.failures = 0;
    document.body.classList.remove("stale");
    $("stale").hidden = true;
    setConn("live · updated " + clock(state.lastOk), "ok");
  }

  // stale greys the page out and says since when its figures are.
  function stale(err) {
    state.failures++;
    if (!state.staleSince) state.staleSince = state.lastOk || new Date();
    document.body.classList.add("stale");
    const since = clock(state.staleSince);
    const age = ago(Date.now() - state.staleSince.getTime());
    const b = $("stale");
    b.textContent = (state.lastOk
      ? "Stale: no answer from canaryd since " + since + " (" + age + " ago). Everything below is as of " + since + " and may be out of date."
      : "No answer from canaryd since " + since + ".") +
      " " + state.failures + (state.failures === 1 ? " poll" : " polls") + " failed; last error: " + err.message +
      ". Retrying every " + POLL_MS / 1000 + " s.";
    b.hidden = false;
    setConn("STALE since " + since, "bad");
    setControlsEnabled(false);
  }

  function ingestHistory(h) {
    if (!h || !Array.isArray(h.points)) return;
    if (h.now) state.skew = Date.parse(h.now) - Date.now();
    const span = durationMs(h.span);
    if (span > 0) state.span = span;
    const every = durationMs(h.interval);
    if (every > 0) state.interval = every;
    if (h.window) state.window = h.window;
    for (const p of h.points) {
      const at = Date.parse(p.time);
      if (!isFinite(at)) continue;
      state.points.push({ at, p });
      state.lastTime = p.time;
    }
    // Keep what the server keeps: the points of the last span, as many as
    // its ring holds.
    const oldest = Date.now() + state.skew - state.span;
    const room = Math.round(state.span / state.interval);
    let drop = Math.max(0, state.points.length - room);
    while (drop < state.points.length && state.points[drop].at <= oldest) drop++;
    if (drop > 0) state.points.splice(0, drop);
    state.gateFailures = {};
    for (const f of h.gate_failures || []) state.gateFailures[f.name] = f;
  }

  // keepLive keeps each poll's figures as a point, for a server that keeps
  // no history of its own.
  function keepLive(check) {
    const at = Date.now() + state.skew;
    state.points.push({ at, p: { weight: check.weight, recommendation: check.recommendation, stable: check.stable, canary: check.canary } });
    while (state.points.length && state.points[0].at <= at - state.span) state.points.shift();
  }

  // ---- formatting -----------------------------------------------------

  const pad2 = (n) => String(n).padStart(2, "0");
  // clock is a time of day, 14:02:11, with the date when not today.
  function clock(d) {
    if (!(d instanceof Date)) d = new Date(d);
    if (isNaN(d)) return "–";
    const t = pad2(d.getHours()) + ":" + pad2(d.getMinutes()) + ":" + pad2(d.getSeconds());
    const now = new Date();
    if (d.getFullYear() === now.getFullYear() && d.getMonth() === now.getMonth() && d.getDate() === now.getDate()) return t;
    return d.getFullYear() + "-" + pad2(d.getMonth() + 1) + "-" + pad2(d.getDate()) + " " + t;
  }
  function ago(ms) {
    const s = Math.max(0, Math.round(ms / 1000));
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
    return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
  }
  const fmt = (v, digits) => (typeof v === "number" && isFinite(v) ? v.toFixed(digits) : "–");
  const int = (v) => (typeof v === "number" && isFinite(v) ? Math.round(v).toLocaleString("en-US") : "–");
  const trim = (s) => s.replace(/\.0+$|(\.\d*?)0+$/, "$1");
  const percent = (v) => (typeof v === "number" && isFinite(v) ? trim(v.toFixed(2)) + " %" : "–");
  // A ratio as a percentage with enough digits to tell 0.4% from 0.04%.
  function pct(ratio) {
    if (!(typeof ratio === "number" && isFinite(ratio))) return "–";
    const v = ratio * 100;
    const digits = v === 0 ? 0 : v < 0.1 ? 3 : v < 10 ? 2 : 1;
    return trim(v.toFixed(digits)) + "%";
  }
  const ms = (v) => (typeof v === "number" && isFinite(v) ? (v >= 100 ? v.toFixed(0) : trim(v.toFixed(1))) + " ms" : "–");
  const verdictClass = (v) => (v === "pass" || v === "healthy" || v === "VERIFIED" || v === "proceed" || v === "complete"
    ? "ok" : v === "fail" || v === "unhealthy" || v === "FAILED" || String(v).startsWith("rollback") ? "bad"
      : v === "DISABLED" ? "muted" : "warn");

  // human is a duration in words: "5 min", "1 h", "90 s".
  function human(msValue) {
    const s = Math.round(msValue / 1000);
    if (s % 3600 === 0 && s >= 3600) return s / 3600 + " h";
    if (s % 60 === 0 && s >= 60) return s / 60 + " min";
    return s + " s";
  }

  // Go duration text ("5m0s", "1h30m", "90s") to milliseconds.
  function durationMs(s) {
    const units = { h: 3600e3, m: 60e3, s: 1e3, ms: 1, us: 1e-3, "µs": 1e-3, ns: 1e-6 };
    let total = 0;
    const re = /([0-9.]+)(h|ms|m|s|us|µs|ns)/g;
    let m;
    while ((m = re.exec(s || "")) !== null) total += parseFloat(m[1]) * units[m[2]];
    return total;
  }

  // ---- DOM helpers ----------------------------------------------------

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function text(id, value, cls) {
    const e = $(id);
    e.textContent = value;
    if (cls !== undefined) e.className = "big " + cls;
  }

  function cell(row, value, cls) {
    const td = el("td", cls, value);
    row.appendChild(td);
    return td;
  }

  function fillRows(tbodyId, items, build) {
    $(tbodyId).replaceChildren(...items.map((item) => {
      const tr = document.createElement("tr");
      build(tr, item);
      return tr;
    }));
  }

  function fillList(id, items) {
    $(id).replaceChildren(...items.map((s) => el("li", "", s)));
  }

  // ---- the objectives in words ----------------------------------------

  // Which objective each gate serves, and what it looks at, in words.
  function gateInfo(name, judgeName) {
    const scope = judgeName === "window" ? "over the window" : "since this step started";
    switch (name) {
      case "min_requests":
        return { slo: "count", what: "Canary requests" };
      case "error_rate":
        return { slo: "errors", what: "Errors " + scope };
      case "error_rate_change":
        return { slo: "errors", what: "Errors among the latest requests (catches a late regression)" };
      case "error_rate_vs_stable":
        return { slo: "errors", vs: true, what: "Errors compared with stable" };
      case "p95_latency":
        return { slo: "latency", what: "Slow requests " + scope };
      case "p95_latency_change":
        return { slo: "latency", what: "Slow requests among the latest (catches a late regression)" };
      case "p95_latency_vs_stable":
        return { slo: "latency", vs: true, what: "Slow requests compared with stable" };
      case "integrity":
        return { slo: "integrity", what: "Release files" };
      case "stable_health_checks":
        return { slo: "health", what: "Stable's health checks" };
      case "canary_health_checks":
        return { slo: "health", what: "Canary's health checks" };
      case "state":
        return { slo: "none", what: "Rollout state" }; // the tiles show it
    }
    return { slo: "other", what: name };
  }

  // observed is "3.1% against 1% over the last 5 min" for a failed gate,
  // from the canary's (and stable's) figures over the window at the moment
  // shown.
  function observed(info, slo, canary, stable, win) {
    const text = observedFigures(info, slo, canary, stable);
    return text && win ? text + " over the last " + win : text;
  }

  function observedFigures(info, slo, canary, stable) {
    if (!canary) return "";
    if (info.slo === "errors") {
      if (info.vs) return stable ? "observed " + pct(canary.error_rate) + " against stable's " + pct(stable.error_rate) : "observed " + pct(canary.error_rate);
      return "observed " + pct(canary.error_rate) + " against " + pct(slo.error_rate);
    }
    if (info.slo === "latency") {
      if (info.vs) return stable ? "observed p95 " + ms(canary.p95_ms) + " against stable's " + ms(stable.p95_ms) : "observed p95 " + ms(canary.p95_ms);
      return "observed p95 " + ms(canary.p95_ms) + " against " + ms(slo.p95_ms);
    }
    return "";
  }

  // gateSentence says where one gate stands: "passing", "holding: about N
  // more requests needed" or "failed at 14:02:11 after N requests
  // (observed 3.1% against 1%)", with a plain explanation.
  function gateSentence(g, ctx) {
    const info = gateInfo(g.name, ctx.judge);
    if (g.verdict === "pass") {
      return { info, cls: "ok", status: "passing", why: g.name === "min_requests" ? int(g.value) + " requests (at least " + int(g.threshold) + " needed)" : "" };
    }
    if (g.verdict === "hold") {
      const status = g.needed > 0 ? "holding: about " + int(g.needed) + " more requests needed" : "holding: more requests needed";
      let why = "";
      if (g.name === "min_requests") why = "the canary may proceed once " + int(g.threshold) + " requests are in";
      else if (info.slo === "errors" || info.slo === "latency") why = "above the objective so far, not yet conclusively: at this rate that many more requests would confirm it and roll back";
      return { info, cls: "warn", status, why };
    }
    if (g.verdict === "fail") {
      const f = ctx.failures ? ctx.failures[g.name] : null;
      const when = ctx.failedAt || (f && f.since ? new Date(f.since) : null);
      const at = when ? " at " + clock(when) : "";
      if (info.slo === "integrity") {
        return { info, cls: "bad", status: "failed" + at + " (" + int(g.value) + (g.value === 1 ? " file does" : " files do") + " not match the manifest)", why: g.detail || "" };
      }
      if (info.slo === "health") {
        return { info, cls: "bad", status: "failed" + at + " (" + pct(g.value) + " of checks failed against " + pct(g.threshold) + ")", why: g.detail || "" };
      }
      const n = ctx.failedAt ? g.samples : f ? f.samples : g.samples;
      const obs = observed(info, ctx.slo || {}, ctx.canary, ctx.stable, ctx.window);
      const status = "failed" + at + " after " + int(n) + " requests" + (obs ? " (" + obs + ")" : "");
      const why = info.vs ? "the canary is significantly worse than stable, by more than the margin allowed"
        : "the evidence is conclusive: the canary breaks this objective";
      return { info, cls: "bad", status, why };
    }
    return { info, cls: "", status: g.verdict || "unknown", why: "" };
  }

  function evidenceItem(s) {
    const li = el("li");
    li.appendChild(el("span", "what", s.info.what + ": "));
    li.appendChild(el("strong", s.cls, s.status));
    if (s.why) li.appendChild(el("span", "why", s.why));
    li.dataset.gate = s.gateName;
    return li;
  }

  function sentences(gates, ctx) {
    return (gates || []).map((g) => Object.assign(gateSentence(g, ctx), { gateName: g.name }));
  }

  function renderObjectives(check, overview) {
    const slo = check.slo || {};
    const win = check.window ? " (last " + human(durationMs(check.window)) + ")" : "";
    // A gate that failed in the rollback failed then: the rollback's time
    // is exact, the history's first failing point up to 5 s later.
    const failures = Object.assign({}, state.gateFailures);
    const rb = overview.rollback;
    for (const g of (rb && rb.gates) || []) {
      if (g.verdict === "fail") failures[g.name] = { since: rb.time, samples: g.samples };
    }
    const ctx = { judge: check.judge, slo, canary: check.canary, stable: check.stable, failures, window: windowWords(check) };
    const all = sentences(check.gates, ctx);
    const rows = [
      {
        slo: "errors",
        objective: "Error rate at most " + pct(slo.error_rate),
        now: "canary " + pct((check.canary || {}).error_rate) + " · stable " + pct((check.stable || {}).error_rate) + win,
      },
      {
        slo: "latency",
        objective: "p95 latency at most " + ms(slo.p95_ms),
        sub: "at most 5% of requests slower than " + ms(slo.p95_ms),
        now: "canary " + ms((check.canary || {}).p95_ms) + " · stable " + ms((check.stable || {}).p95_ms) + win,
      },
      {
        slo: "count",
        objective: "At least " + int(slo.min_requests) + " canary requests before proceeding",
        now: "",
      },
    ];
    const minGate = (check.gates || []).find((g) => g.name === "min_requests");
    if (minGate) rows[2].now = int(minGate.value) + " canary requests" + (check.judge === "window" ? " in the window" : " in this step");
    const integ = check.integrity || {};
    if (all.some((s) => s.info.slo === "integrity")) {
      rows.push({ slo: "integrity", objective: "The release's files match their manifest", now: integ.status === "DISABLED" ? "not checked" : (integ.status || "") + (integ.summary ? ": " + integ.summary : "") });
    }
    if (all.some((s) => s.info.slo === "health")) {
      const hc = (name) => {
        const g = (check.gates || []).find((x) => x.name === name + "_health_checks");
        return g ? name + " " + (g.verdict === "pass" ? "healthy" : "failing") : "";
      };
      rows.push({ slo: "health", objective: "Both backends pass their health checks", now: [hc("stable"), hc("canary")].filter(Boolean).join(" · ") });
    }
    if (all.some((s) => s.info.slo === "other")) rows.push({ slo: "other", objective: "Other checks", now: "" });

    $("slo-rows").replaceChildren(...rows.map((r) => {
      const tr = el("tr");
      tr.dataset.objective = r.slo;
      const obj = el("td", "", r.objective);
      if (r.sub) obj.appendChild(el("div", "muted", r.sub));
      tr.appendChild(obj);
      tr.appendChild(el("td", "", r.now));
      const ev = el("td");
      const mine = all.filter((s) => s.info.slo === r.slo);
      const ul = el("ul", "evidence");
      ul.replaceChildren(...mine.map(evidenceItem));
      if (!mine.length) ul.appendChild(el("li", "muted", "no check reported"));
      ev.appendChild(ul);
      tr.appendChild(ev);
      return tr;
    }));

    const v = $("slo-verdict");
    v.className = "badge " + verdictClass(check.recommendation);
    v.textContent = check.recommendation || "–";

    if (check.judge === "window") {
      $("slo-judge").textContent = "Judged on the averages of the last " + human(durationMs(check.window)) + " once " + int(slo.min_requests) +
        " canary requests are in it.";
    } else {
      $("slo-judge").textContent = "Judged by sequential tests that conclude only on strong evidence: a canary that meets its objectives" +
        " is rolled back by mistake rarely (false-alarm budget α = " + pct(slo.alpha || 0.01) + " per step)." +
        " Latency counts the share of requests slower than " + ms(slo.p95_ms) + ".";
    }
  }

  // windowWords is the sliding window in words ("5 min"), "" if unknown.
  function windowWords(check) {
    const w = durationMs(check.window);
    return w > 0 ? human(w) : "";
  }

  // ---- the rollback snapshot -----------------------------------------

  const ROLLBACK_WHY = {
    rollback_error_rate: "the canary's error rate broke its objective",
    rollback_latency: "the canary's latency broke its objective",
    rollback_integrity: "the release's files do not match their manifest",
    rollback_manual: "rolled back by hand",
  };

  // stableAt is stable's figures from the history point nearest t, if one
  // is within two intervals.
  function stableAt(t) {
    let best = null;
    for (const pt of state.points) {
      if (best === null || Math.abs(pt.at - t) < Math.abs(best.at - t)) best = pt;
    }
    return best && Math.abs(best.at - t) <= 2 * state.interval ? best.p.stable : null;
  }

  function renderRollback(overview, check) {
    const rb = overview.rollback;
    const sec = $("rollback");
    if (!rb && overview.rollback_required) {
      // A state saved before rollbacks kept their evidence.
      sec.hidden = false;
      $("rollback-title").textContent = "Rolled back (" + overview.rollback_reason + ")";
      $("rollback-summary").textContent = "Why: " + (ROLLBACK_WHY[overview.rollback_reason] || overview.rollback_reason) +
        ". No figures were kept for this rollback. The canary gets no traffic until the rollout is reset.";
      $("rollback-figures").replaceChildren();
      $("rollback-gates").replaceChildren();
      return;
    }
    if (!rb) {
      sec.hidden = true;
      return;
    }
    sec.hidden = false;
    const at = new Date(rb.time);
    const who = (rb.who === "guard" ? "canaryd's guard" : rb.who || "unknown") + (rb.replica ? " on " + rb.replica : "");
    $("rollback-title").textContent = "Rolled back at " + clock(at) + " by " + who;
    $("rollback-summary").textContent = "Why: " + (ROLLBACK_WHY[rb.reason] || rb.reason) + " (" + rb.reason + ")." +
      " The canary gets no traffic until the rollout is reset. The figures and the evidence as they stood at that moment:";
    const stable = stableAt(at.getTime());
    const rows = [["canary", rb.canary || {}]];
    if (stable) rows.push(["stable (history)", stable]);
    fillRows("rollback-figures", rows, (tr, [name, b]) => {
      tr.appendChild(el("th", "", name));
      cell(tr, int(b.requests));
      cell(tr, int(b.errors));
      cell(tr, pct(b.error_rate), name === "canary" && b.error_rate > ((check.slo || {}).error_rate || Infinity) ? "bad" : "");
      cell(tr, ms(b.p50_ms));
      cell(tr, ms(b.p95_ms), name === "canary" && b.p95_ms > ((check.slo || {}).p95_ms || Infinity) ? "bad" : "");
      cell(tr, ms(b.p99_ms));
    });
    const ctx = { judge: check.judge, slo: check.slo, canary: rb.canary, stable, failedAt: at, window: windowWords(check) };
    const items = sentences(rb.gates, ctx).map(evidenceItem);
    if (!items.length) items.push(el("li", "muted", rb.reason === "rollback_manual" ? "none: an operator rolled back" : "no gates recorded"));
    $("rollback-gates").replaceChildren(...items);
  }

  // ---- rendering ------------------------------------------------------

  function render() {
    const { check, overview, health, integrity, session } = state.last;
    const weightText = (w) => percent(w);
    text("weight", weightText(check.weight));
    text("recommendation", check.recommendation || "–", verdictClass(check.recommendation));
    text("state", check.state || overview.state || "–");
    text("overall-health", health.overall_health || "–", verdictClass(health.overall_health));
    text("integrity-status", integrity.status || "–", verdictClass(integrity.status));
    $("release").textContent = check.release ? "release " + check.release : "";
    $("window").textContent = check.window ? "(figures over the last " + human(durationMs(check.window)) + ")" : "";
    $("session").textContent = session.name ? session.name + " · " + session.role : "";
    state.role = session.role;
    $("controls").hidden = session.role !== "operate";
    setControlsEnabled(true);

    fillList("reasons", check.reasons || []);
    renderRollback(overview, check);
    renderObjectives(check, overview);

    fillRows("gates", check.gates || [], (tr, g) => {
      cell(tr, g.name);
      const num = (v) => (g.unit === "requests" ? int(v) : fmt(v, g.unit === "ms" ? 1 : 4));
      cell(tr, num(g.value));
      cell(tr, num(g.threshold));
      cell(tr, int(g.samples));
      cell(tr, g.verdict, verdictClass(g.verdict));
      cell(tr, (g.unit ? "[" + g.unit + "] " : "") + (g.detail || ""));
    });

    const windowSec = durationMs(check.window) / 1000 || 1;
    for (const name of ["stable", "canary"]) {
      const b = check[name] || {};
      const hc = (health[name] || {}).health_checks || {};
      const tr = $(name + "-figures");
      tr.replaceChildren(el("th", "", name));
      cell(tr, int(b.requests));
      cell(tr, fmt((b.requests || 0) / windowSec, 2) + " /s");
      cell(tr, int(b.errors));
      cell(tr, pct(b.error_rate || 0));
      cell(tr, ms(b.p50_ms));
      cell(tr, ms(b.p95_ms));
      cell(tr, ms(b.p99_ms));
      cell(tr, !hc.enabled ? "off" : (hc.healthy ? "healthy" : "unhealthy") + " (" + int(hc.failures) + "/" + int(hc.checks) + " failed)",
        !hc.enabled ? "" : hc.healthy ? "ok" : "bad");
    }
    fillList("health-reasons", health.reasons || []);

    // The fleet, from a canaryd that has one (a single canaryd is a fleet
    // of one, its own leader).
    const fl = check.fleet;
    $("fleet-section").hidden = !fl;
    if (fl) {
      $("fleet-store").textContent = fl.store ? "(" + fl.store + " store, " + (fl.store_ok ? "answering" : "NOT answering") + ")" : "";
      fillRows("fleet", fl.replicas || [], (tr, r) => {
        cell(tr, r.id + (r.id === fl.self ? " (this one)" : ""));
        cell(tr, r.leader ? "leader" : "replica", r.leader ? "ok" : "");
        cell(tr, int(r.last_report_ms) + " ms ago", r.last_report_ms > 3000 ? "warn" : "");
        cell(tr, int(r.requests));
        cell(tr, int(r.canary_requests));
      });
    }

    fillRows("plan", overview.plan || [], (tr, s) => {
      cell(tr, String(s.index + 1));
      cell(tr, weightText(s.weight));
      cell(tr, s.observe || "");
      cell(tr, s.status || "", s.status === "current" ? "warn" : s.status === "done" ? "ok" : "");
      cell(tr, s.remaining || "");
    });

    const hist = (overview.history || []).slice().reverse();
    fillRows("history", hist, (tr, h) => {
      cell(tr, h.time ? clock(new Date(h.time)) : "");
      cell(tr, weightText(h.from));
      cell(tr, weightText(h.to));
      cell(tr, (h.from_state || "") + " → " + (h.to_state || ""));
      cell(tr, h.reason || "", String(h.reason || "").startsWith("rollback") ? "bad" : "");
      cell(tr, (h.who || "") + (h.replica ? " on " + h.replica : ""));
    });

    $("integrity-summary").textContent = integrity.summary || "";
    fillRows("integrity-failures", integrity.failures || [], (tr, f) => {
      cell(tr, f.path);
      cell(tr, f.problem, "bad");
    });

    drawCharts(check, overview);
  }

  // ---- charts ---------------------------------------------------------

  // chartPoints are the history's points plus the last poll's
  // /canary_check when it is newer, on the server's clock.
  function chartPoints(check) {
    const pts = state.points.slice();
    const at = state.lastOk ? state.lastOk.getTime() + state.skew : -Infinity;
    const lastAt = pts.length ? pts[pts.length - 1].at : -Infinity;
    if (at > lastAt + 500) {
      pts.push({ at, p: { weight: check.weight, recommendation: check.recommendation, stable: check.stable, canary: check.canary } });
    }
    return pts;
  }

  function drawCharts(check, overview) {
    const pts = chartPoints(check);
    // The last span, or less while canaryd has not run that long (at
    // least MIN_RANGE_MS).
    const t1 = Date.now() + state.skew;
    const first = pts.length ? pts[0].at : t1;
    const t0 = Math.max(t1 - state.span, Math.min(first, t1 - MIN_RANGE_MS));
    const slo = check.slo || {};
    const windowSec = durationMs(state.window || check.window) / 1000 || 1;
    const markers = [];
    if (overview.rollback) markers.push({ at: Date.parse(overview.rollback.time), label: "rollback", color: COLORS.bad });
    const both = (pick) => [
      { name: "stable", color: COLORS.stable, data: pts.map((x) => [x.at, pick(x.p.stable || {})]) },
      { name: "canary", color: COLORS.canary, data: pts.map((x) => [x.at, pick(x.p.canary || {})]) },
    ];
    const common = { t0, t1, gap: 3 * state.interval, markers };
    const rate = (v) => trim(v.toFixed(v >= 10 ? 0 : 2)) + "/s";
    chart("rate", Object.assign({ series: both((b) => (b.requests || 0) / windowSec), unit: rate }, common));
    chart("errors", Object.assign({
      series: both((b) => (b.error_rate || 0) * 100),
      threshold: slo.error_rate ? { value: slo.error_rate * 100, label: "SLO " + pct(slo.error_rate) } : null,
      unit: (v) => trim(v.toFixed(2)) + "%",
    }, common));
    for (const q of ["p50", "p95", "p99"]) {
      chart(q, Object.assign({
        series: both((b) => b[q + "_ms"] || 0),
        threshold: q === "p95" && slo.p95_ms ? { value: slo.p95_ms, label: "SLO " + ms(slo.p95_ms) } : null,
        unit: ms,
      }, common));
    }
    chart("weight", Object.assign({
      series: [{ name: "weight", color: COLORS.canary, data: pts.map((x) => [x.at, x.p.weight || 0]) }],
      fixedMax: 100,
      band: pts.map((x) => [x.at, verdictClass(x.p.recommendation)]),
      unit: (v) => trim(v.toFixed(2)) + "%",
    }, common));
    // For tests and the curious: what the charts hold.
    $("charts").dataset.historyPoints = String(state.points.length);
    $("charts").dataset.lastPoint = state.lastTime;
    $("charts-title").textContent = state.span === 3600e3 ? "The last hour" : "The last " + human(state.span);
    $("chart-note").textContent = state.liveOnly
      ? "(kept by this tab since it opened: this canaryd keeps no history)"
      : state.points.length
      ? "(" + state.points.length + " points from canaryd's history, one every " + state.interval / 1000 + " s; figures over a sliding " + human(durationMs(state.window || check.window)) + " window)"
      : "(no history yet)";
  }

  // niceMax is the top of a scale at or above v whose quarters are round
  // numbers.
  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 4, 6, 8, 10]) if (v <= m * p) return m * p;
    return 10 * p;
  }

  // chart draws one figure: its series on one scale, the SLO line, the
  // rollback marker, and the verdict band; the legend shows the latest
  // values.
  function chart(id, o) {
    const canvas = $("chart-" + id);
    const fig = $("fig-" + id);
    fig.dataset.points = String(Math.max(0, ...o.series.map((s) => s.data.length)));
    const legend = $("legend-" + id);
    const keys = o.series.map((s) => {
      const last = s.data.length ? s.data[s.data.length - 1][1] : NaN;
      const span = el("span");
      span.appendChild(el("span", "key " + s.name));
      span.appendChild(document.createTextNode(s.name + " " + (isFinite(last) ? o.unit(last) : "–")));
      return span;
    });
    if (o.threshold) {
      const span = el("span");
      span.appendChild(el("span", "key slo"));
      span.appendChild(document.createTextNode(o.threshold.label));
      keys.push(span);
    }
    if (o.band) {
      for (const [cls, name] of [["ok", "proceed"], ["warn", "hold"], ["bad", "rollback"]]) {
        const span = el("span");
        span.appendChild(el("span", "key verdict-" + cls));
        span.appendChild(document.createTextNode(name));
        keys.push(span);
      }
    }
    legend.replaceChildren(...keys);

    const dpr = window.devicePixelRatio || 1;
    const cssW = canvas.clientWidth || 560;
    const cssH = canvas.clientHeight || 170;
    if (canvas.width !== Math.round(cssW * dpr) || canvas.height !== Math.round(cssH * dpr)) {
      canvas.width = Math.round(cssW * dpr);
      canvas.height = Math.round(cssH * dpr);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, cssW, cssH);
    const pad = { l: 52, r: 10, t: 8, b: o.band ? 30 : 20 };
    const w = cssW - pad.l - pad.r;
    const h = cssH - pad.t - pad.b;
    let max = 0;
    for (const s of o.series) for (const [t, v] of s.data) if (t >= o.t0) max = Math.max(max, v);
    if (o.threshold) max = Math.max(max, o.threshold.value);
    max = o.fixedMax || niceMax(max * 1.1);
    const span = o.t1 - o.t0;
    const x = (t) => pad.l + ((t - o.t0) / span) * w;
    const y = (v) => pad.t + h - (Math.min(Math.max(v, 0), max) / max) * h;

    ctx.font = "11px system-ui, sans-serif";
    ctx.lineWidth = 1;
    ctx.setLineDash([]);
    // Horizontal grid with values.
    for (let i = 0; i <= 4; i++) {
      const v = (max * i) / 4;
      const yy = Math.round(y(v)) + 0.5;
      ctx.strokeStyle = "#e5e7eb";
      ctx.beginPath();
      ctx.moveTo(pad.l, yy);
      ctx.lineTo(pad.l + w, yy);
      ctx.stroke();
      ctx.fillStyle = "#666";
      ctx.textAlign = "right";
      ctx.fillText(o.unit(v).replace(/ ms$/, ""), pad.l - 4, yy + 4);
    }
    // Time axis: a tick every 10 minutes of the last hour (or a sixth of
    // the span), labelled with the time of day.
    const step = span >= 30 * 60e3 ? 10 * 60e3 : Math.max(60e3, Math.round(span / 6 / 60e3) * 60e3);
    ctx.textAlign = "center";
    for (let t = Math.ceil(o.t0 / step) * step; t <= o.t1; t += step) {
      const xx = Math.round(x(t)) + 0.5;
      ctx.strokeStyle = "#f0f0f0";
      ctx.beginPath();
      ctx.moveTo(xx, pad.t);
      ctx.lineTo(xx, pad.t + h);
      ctx.stroke();
      const d = new Date(t - state.skew);
      ctx.fillStyle = "#666";
      ctx.textAlign = xx > pad.l + w - 16 ? "right" : xx < pad.l + 16 ? "left" : "center";
      ctx.fillText(pad2(d.getHours()) + ":" + pad2(d.getMinutes()), xx, cssH - 4);
    }

    // The verdict of each point as a band under the plot.
    if (o.band) {
      const by = pad.t + h + 4;
      for (let i = 0; i < o.band.length; i++) {
        const [t, cls] = o.band[i];
        const tn = i + 1 < o.band.length ? o.band[i + 1][0] : o.t1;
        if (tn < o.t0 || tn - t > o.gap) continue;
        ctx.fillStyle = cls === "ok" ? COLORS.ok : cls === "bad" ? COLORS.bad : COLORS.warn;
        const x0 = Math.max(x(t), pad.l);
        ctx.fillRect(x0, by, Math.max(1, x(tn) - x0), 8);
      }
    }

    if (o.threshold) {
      const yy = Math.round(y(o.threshold.value)) + 0.5;
      ctx.strokeStyle = COLORS.slo;
      ctx.lineWidth = 1.5;
      ctx.setLineDash([6, 4]);
      ctx.beginPath();
      ctx.moveTo(pad.l, yy);
      ctx.lineTo(pad.l + w, yy);
      ctx.stroke();
      ctx.setLineDash([]);
      ctx.fillStyle = COLORS.slo;
      ctx.textAlign = "right";
      ctx.fillText(o.threshold.label, pad.l + w - 2, yy - 3);
    }

    for (const m of o.markers || []) {
      if (!(m.at >= o.t0 && m.at <= o.t1)) continue;
      const xx = Math.round(x(m.at)) + 0.5;
      ctx.strokeStyle = m.color;
      ctx.lineWidth = 2;
      ctx.beginPath();
      ctx.moveTo(xx, pad.t);
      ctx.lineTo(xx, pad.t + h);
      ctx.stroke();
      ctx.fillStyle = m.color;
      ctx.textAlign = xx > pad.l + w - 60 ? "right" : "left";
      ctx.fillText(m.label, xx + (ctx.textAlign === "right" ? -4 : 4), pad.t + 10);
    }

    // Canary over stable: the line to watch is drawn last.
    for (const s of o.series) {
      ctx.strokeStyle = s.color;
      ctx.lineWidth = 2;
      ctx.setLineDash([]);
      ctx.beginPath();
      let prev = null;
      const d = s.data;
      for (let i = 0; i < d.length; i++) {
        const [t, v] = d[i];
        if (t < o.t0) {
          prev = null;
          continue;
        }
        if (prev === null || t - prev > o.gap) {
          ctx.moveTo(x(t), y(v));
          // A point alone (the first one, or after a gap) is a dot.
          if (i + 1 >= d.length || d[i + 1][0] - t > o.gap) {
            ctx.stroke();
            ctx.beginPath();
            ctx.fillStyle = s.color;
            ctx.arc(x(t), y(v), 2.5, 0, 2 * Math.PI);
            ctx.fill();
            ctx.beginPath();
          }
        } else ctx.lineTo(x(t), y(v));
        prev = t;
      }
      ctx.stroke();
    }
  }

  // ---- controls -------------------------------------------------------

  const CONTROL_BUTTONS = ["ctl-pause", "ctl-resume", "ctl-promote", "ctl-rollback", "ctl-reset", "ctl-finish", "ctl-weight", "ctl-start"];

  function setControlsEnabled(on) {
    for (const id of CONTROL_BUTTONS) $(id).disabled = !on;
  }

  function nextStepText(ov) {
    const plan = ov.plan || [];
    const cur = plan.findIndex((s) => s.status === "current");
    if (cur >= 0 && cur + 1 < plan.length) return "step " + (cur + 2) + " of " + plan.length + ", " + percent(plan[cur + 1].weight);
    return "100% (the plan's end)";
  }

  // describe is the confirmation's title, text and button for op.
  function describe(op, arg) {
    const ov = (state.last || {}).overview || {};
    const release = ov.release ? " " + ov.release : "";
    const at = " It is now " + (ov.state || "?") + " at " + percent(ov.weight) + ".";
    switch (op) {
      case "pause":
        return ["Pause the plan?", "The weight stays at " + percent(ov.weight) + "; the plan stops advancing until you resume it." + at, "Pause"];
      case "resume":
        return ["Resume the plan?", "The plan continues from its current step." + at, "Resume"];
      case "promote":
        return ["Promote the canary now?", "Skip the rest of this step's observation and go to " + nextStepText(ov) + "." + at, "Promote"];
      case "rollback":
        return ["Roll the canary back now?", "Its weight goes to 0 at once and stays there until the rollout is reset; the canary gets no traffic meanwhile." + at, "Roll back", true];
      case "reset":
        return ["Reset the rollout?", "This clears the rollback and starts release" + release + "'s plan again from its first step, with fresh evidence." + at, "Reset"];
      case "finish":
        return ["Finish release" + release + "?", "Weight 0 and state finished: the canary gets no traffic (not even through the override header) until the next release starts." + at, "Finish", true];
      case "weight":
        return ["Set the weight to " + arg + "%?", "The canary gets " + arg + "% of requests from now on, and the plan pauses (resume it to continue)." + at, "Set weight"];
      case "start":
        return ["Start release " + arg.release + "?", "A fresh start: any rollback is cleared, the judge starts over, and the plan is " +
          (arg.steps ? arg.steps : "the configured one") + "." + at, "Start release"];
    }
    return [op, "", op];
  }

  let pending = null; // {op, body}

  function ask(op, body, arg) {
    const [title, textValue, button, danger] = describe(op, arg);
    pending = { op, body };
    $("confirm-title").textContent = title;
    $("confirm-text").textContent = textValue;
    const ok = $("confirm-ok");
    ok.textContent = button;
    ok.className = danger ? "primary danger" : "primary";
    ok.dataset.op = op;
    const d = $("confirm");
    if (!d.open) d.showModal();
    $("confirm-cancel").focus();
  }

  function closeConfirm() {
    pending = null;
    const d = $("confirm");
    if (d.open) d.close();
  }

  async function run(op, body) {
    const tok = token();
    const res$ = $("control-result");
    $("control-result-text").textContent = op + ": sending…";
    res$.className = "";
    res$.hidden = false;
    let res, raw;
    try {
      res = await request("/rollout/" + op, tok, {
        method: "POST",
        headers: { Authorization: "Bearer " + tok, "Content-Type": "application/json", Accept: "application/json" },
        body: body,
      });
      raw = await res.text();
    } catch (err) {
      $("control-result-text").textContent = op + ": not sent, canaryd did not answer (" + err.message + "). Nothing is known to have changed.";
      $("control-result-body").textContent = "";
      res$.className = "bad";
      return;
    }
    if (res.status === 401) {
      showLogin("The token was not accepted. Enter the admin token again.");
      return;
    }
    let answer = null;
    try {
      answer = JSON.parse(raw);
    } catch (_) {
      answer = null;
    }
    $("control-result-body").textContent = answer ? JSON.stringify(answer, null, 2) : raw;
    const status = res.status + " " + res.statusText;
    if (res.ok && answer) {
      $("control-result-text").textContent = op + ": done (" + status + "). The rollout is now " + answer.state + " at " +
        percent(answer.weight) + (answer.release ? ", release " + answer.release : "") + ".";
      res$.className = "ok";
    } else if (answer && answer.error && answer.persisted === false) {
      $("control-result-text").textContent = op + ": applied but not saved (" + status + "): " + answer.error;
      res$.className = "bad";
    } else {
      $("control-result-text").textContent = op + ": refused (" + status + "): " + (answer && answer.error ? answer.error : raw);
      res$.className = "bad";
    }
    pollSoon();
  }

  for (const b of document.querySelectorAll(".buttons button[data-op]")) {
    b.addEventListener("click", () => ask(b.dataset.op, "{}"));
  }
  $("weight-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const v = $("weight-input").value.trim();
    // A percentage is sent as the JSON number the user wrote, so 12.50 stays
    // exact; anything else is sent as text for the API to refuse in words.
    const body = /^[0-9]+(\.[0-9]+)?$/.test(v) ? '{"weight": ' + v + "}" : JSON.stringify({ weight: v });
    ask("weight", body, v);
  });
  $("start-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const release = $("release-input").value.trim();
    const steps = $("steps-input").value.trim();
    const body = steps ? { release, steps } : { release };
    ask("start", JSON.stringify(body), { release, steps });
  });
  $("confirm-cancel").addEventListener("click", closeConfirm);
  $("confirm").addEventListener("cancel", () => {
    pending = null;
  });
  $("confirm-ok").addEventListener("click", () => {
    const p = pending;
    closeConfirm();
    if (p) run(p.op, p.body);
  });

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
  window.addEventListener("resize", () => {
    if (state.last) drawCharts(state.last.check, state.last.overview);
  });

  takeTokenFromFragment();
  if (token()) start();
  else showLogin("");
})();

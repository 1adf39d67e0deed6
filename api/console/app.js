// The hlas web console: reads the public REST API (docs/api.md) with
// the token the user pastes, and shows registrations, calls and a few
// statistics. Plain script, no framework and no build step: the server
// embeds this file as it is. Everything from the server is put into the
// page as text, never as HTML.
"use strict";

(() => {
  const API = "/api/v1";
  const TOKEN_KEY = "hlas-console-token";
  // How often the lists and the statistics are read again.
  const POLL_MS = 2000;
  // How many samples a sparkline keeps: two minutes at POLL_MS.
  const SAMPLES = 60;
  // How many recent calls are listed.
  const MAX_CDRS = 25;

  // The graphs: a series is the sum of the metrics whose names start with
  // one of the prefixes; a counter is drawn as its rate per second.
  const GRAPHS = [
    { id: "bindings", label: "registrations", prefixes: ["hlas_registrar_bindings"] },
    { id: "calls", label: "calls in progress", prefixes: ["hlas_acc_calls"] },
    { id: "messages", label: "SIP messages / s", prefixes: ["hlas_server_messages_received_total"], rate: true },
    { id: "transactions", label: "transactions", prefixes: ["hlas_transaction_server_active", "hlas_transaction_client_active"] },
  ];

  const $ = (id) => document.getElementById(id);
  let token = sessionStorage.getItem(TOKEN_KEY) || "";
  let timer = 0;
  let events = null; // the AbortController of the event stream
  const history = {}; // graph id -> [values]
  let lastCounters = null; // {t, values} for rates

  class Unauthorized extends Error {}

  async function get(path) {
    const r = await fetch(API + path, { headers: { Authorization: "Bearer " + token }, cache: "no-store" });
    if (r.status === 401) throw new Unauthorized("the token was refused");
    if (!r.ok) {
      let msg = r.status + " " + r.statusText;
      try { msg += ": " + (await r.json()).error; } catch (e) { /* not JSON */ }
      throw new Error(path + ": " + msg);
    }
    return r.json();
  }

  function cell(tr, text) {
    const td = document.createElement("td");
    td.textContent = text == null ? "" : String(text);
    tr.appendChild(td);
  }

  function fill(tbody, rows, cells, cls) {
    const frag = document.createDocumentFragment();
    for (const row of rows) {
      const tr = document.createElement("tr");
      if (cls) tr.className = cls(row);
      for (const c of cells(row)) cell(tr, c);
      frag.appendChild(tr);
    }
    tbody.replaceChildren(frag);
  }

  const time = (s) => (s ? new Date(s).toLocaleTimeString() : "");

  function renderRegistrations(list) {
    const items = list.items || [];
    $("registrations-count").textContent = "(" + items.length + (list.next_offset != null ? "+" : "") + ")";
    fill($("registrations"), items, (b) => [b.aor, b.contact, b.source, b.transport, b.user_agent, time(b.expires)]);
  }

  function renderCDRs(list) {
    const items = (list.items || []).slice(-MAX_CDRS).reverse();
    fill($("cdrs"), items,
      (c) => [time(c.start), c.caller, c.callee, c.status, c.code, c.duration != null ? c.duration.toFixed(1) + " s" : "", c.ended_by],
      (c) => "cdr " + c.status);
  }

  function sumOf(metrics, prefixes) {
    let v = 0;
    for (const [k, x] of Object.entries(metrics)) {
      // "name" or "name{labels}": the name must match whole.
      const name = k.split("{")[0];
      if (prefixes.includes(name)) v += x;
    }
    return v;
  }

  function sparkline(values) {
    const W = 180, H = 36;
    const NS = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(NS, "svg");
    svg.setAttribute("width", W);
    svg.setAttribute("height", H);
    svg.setAttribute("viewBox", "0 0 " + W + " " + H);
    const max = Math.max(1, ...values);
    const step = W / Math.max(1, SAMPLES - 1);
    const x0 = W - step * (values.length - 1);
    const pts = values.map((v, i) => (x0 + i * step).toFixed(1) + "," + (H - 2 - (v / max) * (H - 4)).toFixed(1));
    const line = document.createElementNS(NS, "polyline");
    line.setAttribute("points", pts.join(" "));
    svg.appendChild(line);
    return svg;
  }

  function renderStats(stats) {
    const metrics = stats.metrics || {};
    $("server").textContent = "version " + stats.version + ", up " + Math.round(stats.uptime_seconds) + " s";
    const now = Date.now();
    const counters = {};
    const box = $("graphs");
    for (const g of GRAPHS) {
      let v = sumOf(metrics, g.prefixes);
      if (g.rate) {
        counters[g.id] = v;
        const prev = lastCounters && lastCounters.values[g.id];
        const dt = lastCounters ? (now - lastCounters.t) / 1000 : 0;
        v = prev != null && dt > 0 ? Math.max(0, (v - prev) / dt) : 0;
      }
      const h = (history[g.id] = (history[g.id] || []).concat([v]).slice(-SAMPLES));
      let div = $("graph-" + g.id);
      if (!div) {
        div = document.createElement("div");
        div.className = "graph";
        div.id = "graph-" + g.id;
        box.appendChild(div);
      }
      const label = document.createElement("div");
      label.className = "label";
      label.textContent = g.label;
      const value = document.createElement("div");
      value.className = "value";
      value.textContent = g.rate ? v.toFixed(1) : String(v);
      div.replaceChildren(label, value, sparkline(h));
    }
    lastCounters = { t: now, values: counters };
    $("calls-active").textContent = String(sumOf(metrics, ["hlas_acc_calls"]));
  }

  async function refresh() {
    try {
      const [regs, cdrs, stats] = await Promise.all([
        get("/registrations?limit=1000"),
        get("/cdrs?kind=call&since=1h&limit=1000"),
        get("/stats"),
      ]);
      renderRegistrations(regs);
      renderCDRs(cdrs);
      renderStats(stats);
      $("error").textContent = "";
      document.body.dataset.refreshed = String(Date.now());
    } catch (e) {
      if (e instanceof Unauthorized) {
        logout(e.message);
        return;
      }
      $("error").textContent = e.message;
    }
  }

  // soon reads the lists again shortly: a burst of events is one read.
  let soonTimer = 0;
  function soon() {
    if (soonTimer) return;
    soonTimer = setTimeout(() => { soonTimer = 0; if (token) refresh(); }, 300);
  }

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      await refresh();
      if (token) schedule();
    }, POLL_MS);
  }

  function logEvent(name, data) {
    const li = document.createElement("li");
    li.textContent = new Date().toLocaleTimeString() + " " + name + " " + data;
    const ul = $("events");
    ul.prepend(li);
    while (ul.children.length > 50) ul.lastChild.remove();
  }

  // Calls in progress as the event stream tells them (type "call",
  // actions started, ringing, answered, ended), by Call-ID.
  const live = new Map();

  function renderLive() {
    fill($("live-calls"), [...live.values()], (c) => [time(c.since), c.caller, c.callee, c.state, c.call_id]);
  }

  function onEvent(name, text) {
    logEvent(name, text);
    let ev;
    try { ev = JSON.parse(text); } catch (e) { return; }
    if (ev && ev.type === "call") {
      const d = ev.data || {};
      const id = d.call_id || d.id || String(ev.seq);
      if (ev.action === "ended") {
        live.delete(id);
      } else {
        const c = live.get(id) || { call_id: id, since: ev.time };
        c.caller = d.caller || d.from || c.caller || "";
        c.callee = d.callee || d.to || c.callee || "";
        c.state = ev.action;
        live.set(id, c);
      }
      renderLive();
    }
    soon();
  }

  // The event stream (GET /api/v1/events, server-sent events) when the
  // server has one: read with fetch, since EventSource cannot send the
  // token. Each event is listed and makes the lists be read again at
  // once; without the stream the page only polls.
  async function follow() {
    events = new AbortController();
    const signal = events.signal;
    let r;
    try {
      r = await fetch(API + "/events", { headers: { Authorization: "Bearer " + token, Accept: "text/event-stream" }, signal });
    } catch (e) {
      return;
    }
    if (!r.ok || !(r.headers.get("Content-Type") || "").startsWith("text/event-stream") || !r.body) {
      $("feed").textContent = "polling every " + POLL_MS / 1000 + " s";
      return;
    }
    $("feed").textContent = "live events, and polling every " + POLL_MS / 1000 + " s";
    const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value.replace(/\r\n?/g, "\n");
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          let name = "message";
          const data = [];
          for (const line of block.split("\n")) {
            if (line.startsWith("event:")) name = line.slice(6).trim();
            else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
          }
          if (data.length === 0) continue; // a comment or keep-alive
          onEvent(name, data.join("\n"));
        }
      }
    } catch (e) {
      /* aborted at log-out, or the connection went */
    }
    if (!signal.aborted && token) {
      $("feed").textContent = "polling every " + POLL_MS / 1000 + " s (event stream ended)";
      setTimeout(() => { if (token && !signal.aborted) follow(); }, 10000);
    }
  }

  async function start() {
    $("login").hidden = true;
    $("main").hidden = false;
    $("logout").hidden = false;
    $("feed").textContent = "polling every " + POLL_MS / 1000 + " s";
    await refresh();
    if (!token) return; // refused
    document.body.dataset.loggedIn = "true";
    schedule();
    follow();
  }

  function logout(why) {
    token = "";
    sessionStorage.removeItem(TOKEN_KEY);
    clearTimeout(timer);
    if (events) events.abort();
    delete document.body.dataset.loggedIn;
    $("main").hidden = true;
    $("logout").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = why || "";
    $("feed").textContent = "";
  }

  $("login").addEventListener("submit", (ev) => {
    ev.preventDefault();
    token = $("token").value.trim();
    $("token").value = "";
    if (!token) return;
    sessionStorage.setItem(TOKEN_KEY, token);
    $("login-error").textContent = "";
    start();
  });
  $("logout").addEventListener("click", () => logout(""));

  if (token) start();
})();

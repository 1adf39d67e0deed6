// The hlas web console: reads the public REST API (docs/api.md) with
// the token the user pastes, and shows registrations, the active calls
// (with a button to hang each up), recent calls and a few statistics.
// Plain script, no framework and no build step: the server embeds this
// file as it is. Everything from the server is put into the
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

  // HTTPError is an answer other than 2xx and 401: status, and the
  // server's own words (the "error" of its JSON body) in detail.
  class HTTPError extends Error {
    constructor(path, status, statusText, detail) {
      super(path + ": " + status + (statusText ? " " + statusText : "") + (detail ? ": " + detail : ""));
      this.status = status;
      this.detail = detail;
    }
  }

  async function request(method, path) {
    const r = await fetch(API + path, { method, headers: { Authorization: "Bearer " + token }, cache: "no-store" });
    if (r.status === 401) throw new Unauthorized("the token was refused");
    if (!r.ok) {
      let detail = "";
      try { detail = String((await r.json()).error || ""); } catch (e) { /* not JSON */ }
      throw new HTTPError(path, r.status, r.statusText, detail);
    }
    return r.json();
  }

  const get = (path) => request("GET", path);
  // send is for the writes: the console's one is the hang-up.
  const send = (method, path) => request(method, path);

  function cell(tr, text) {
    const td = document.createElement("td");
    td.textContent = text == null ? "" : String(text);
    tr.appendChild(td);
  }

  function fill(tbody, rows, cells, cls, id) {
    const frag = document.createDocumentFragment();
    for (const row of rows) {
      const tr = document.createElement("tr");
      if (cls) tr.className = cls(row);
      if (id) tr.dataset.callId = id(row);
      for (const c of cells(row)) cell(tr, c);
      frag.appendChild(tr);
    }
    tbody.replaceChildren(frag);
  }

  const time = (s) => (s ? new Date(s).toLocaleTimeString() : "");

  // span writes a number of seconds as "42 s", "3:07" or "1:02:03".
  function span(sec) {
    sec = Math.max(0, Math.floor(sec));
    if (sec < 60) return sec + " s";
    const two = (n) => String(n).padStart(2, "0");
    const h = Math.floor(sec / 3600), m = Math.floor(sec / 60) % 60, s = sec % 60;
    return h > 0 ? h + ":" + two(m) + ":" + two(s) : m + ":" + two(s);
  }

  // since is the time from the server's timestamp s to now (the browser's
  // clock: a skew shows as a few seconds off, never below zero).
  const since = (s, now) => span((now - new Date(s).getTime()) / 1000);

  function renderRegistrations(list) {
    const items = list.items || [];
    $("registrations-count").textContent = "(" + items.length + (list.next_offset != null ? "+" : "") + ")";
    fill($("registrations"), items, (b) => [b.aor, b.contact, b.source, b.transport, b.user_agent, time(b.expires)]);
  }

  function renderCDRs(list) {
    const items = (list.items || []).slice(-MAX_CDRS).reverse();
    fill($("cdrs"), items,
      (c) => [time(c.start), c.caller, c.callee, c.status, c.code, c.duration != null ? c.duration.toFixed(1) + " s" : "", c.ended_by, c.end_reason],
      (c) => "cdr " + c.status,
      (c) => c.call_id || "");
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

  // The active calls (GET /api/v1/calls), a row each by Call-ID. Rows are
  // updated in place rather than drawn again, so a button keeps the focus
  // of a person about to press it across the reads.
  const rows = new Map(); // call_id -> {tr, cells, button, call}
  // Calls whose hang-up the server took (202): their button stays
  // disabled until the call leaves the list.
  const hangingUp = new Set();
  // readOnly is learnt from a 403 to a hang-up: the API has no way to
  // ask a token's rights beforehand, so the buttons show until then.
  let readOnly = false;

  const callName = (c) => "the call from " + c.from + " to " + c.to;

  function updateButton(r) {
    const id = r.call.call_id;
    const b = r.button;
    b.disabled = readOnly || hangingUp.has(id);
    b.textContent = hangingUp.has(id) ? "Hanging up…" : "Hang up";
    b.setAttribute("aria-label", "Hang up " + callName(r.call) + " (Call-ID " + id + ")");
    b.title = readOnly ? "this token may only read: log in with one made without --read-only to hang up" : "";
  }

  function newRow(c) {
    const tr = document.createElement("tr");
    tr.dataset.callId = c.call_id;
    tr.dataset.testid = "call";
    const cells = [];
    for (let i = 0; i < 7; i++) {
      cells.push(tr.appendChild(document.createElement("td")));
    }
    const td = tr.appendChild(document.createElement("td"));
    const button = td.appendChild(document.createElement("button"));
    button.type = "button";
    button.dataset.testid = "hangup";
    button.dataset.callId = c.call_id;
    button.addEventListener("click", () => hangup(c.call_id));
    return { tr, cells, button, call: c };
  }

  function renderCalls(list) {
    const items = list.items || [];
    $("calls-count").textContent = String(items.length) + (list.next_offset != null ? "+" : "");
    const tbody = $("active-calls");
    const now = Date.now();
    const seen = new Set();
    let prev = null;
    const none = tbody.querySelector("tr.none");
    if (none) none.remove();
    for (const c of items) {
      if (!c || typeof c.call_id !== "string" || seen.has(c.call_id)) continue;
      seen.add(c.call_id);
      let r = rows.get(c.call_id);
      if (!r) {
        r = newRow(c);
        rows.set(c.call_id, r);
      }
      r.call = c;
      r.tr.className = "call " + c.state;
      const text = [
        c.from, c.to, c.state,
        time(c.started) + " (" + since(c.started, now) + " ago)",
        c.answered ? time(c.answered) : "",
        c.answered ? since(c.answered, now) : "",
        c.relayed ? "yes" : "no",
      ];
      text.forEach((v, i) => {
        const s = v == null ? "" : String(v);
        if (r.cells[i].textContent !== s) r.cells[i].textContent = s;
      });
      updateButton(r);
      // The list's order, oldest first; a row already in place is left
      // alone (moving it would take its focus).
      const at = prev ? prev.nextSibling : tbody.firstChild;
      if (at !== r.tr) tbody.insertBefore(r.tr, at);
      prev = r.tr;
    }
    for (const [id, r] of rows) {
      if (!seen.has(id)) {
        r.tr.remove();
        rows.delete(id);
        hangingUp.delete(id);
      }
    }
    if (rows.size === 0) {
      const tr = tbody.appendChild(document.createElement("tr"));
      tr.className = "none";
      const td = tr.appendChild(document.createElement("td"));
      td.colSpan = 8;
      td.textContent = "no calls in progress";
    }
  }

  function clearCalls() {
    rows.clear();
    hangingUp.clear();
    readOnly = false;
    $("active-calls").replaceChildren();
    $("calls-result").textContent = "";
  }

  // hangup asks the server to end the call (DELETE /api/v1/calls/{id}),
  // and says what it did: a BYE to each side, or a CANCEL while ringing.
  async function hangup(id) {
    const r = rows.get(id);
    if (!r || readOnly || hangingUp.has(id)) return;
    const what = callName(r.call);
    const out = $("calls-result");
    hangingUp.add(id);
    updateButton(r);
    try {
      const res = await send("DELETE", "/calls/" + encodeURIComponent(id));
      out.className = "";
      out.dataset.action = res.action;
      out.textContent = "Hanging up " + what + ": " + (res.action === "cancel"
        ? "cancel (it was ringing: the phones stop, the caller gets 487)"
        : res.action + " (a BYE went to each phone)");
    } catch (e) {
      hangingUp.delete(id);
      if (e instanceof Unauthorized) {
        logout(e.message);
        return;
      }
      out.className = "error";
      delete out.dataset.action;
      if (e.status === 404) {
        out.textContent = "Could not hang up " + what + ": it had already ended.";
      } else if (e.status === 403) {
        readOnly = true;
        out.textContent = "Could not hang up " + what + ": refused (403" + (e.detail ? ", " + e.detail : "") +
          "). This token may only read; log in with one made without --read-only to hang up calls.";
      } else {
        out.textContent = "Could not hang up " + what + ": " + e.message;
      }
      for (const x of rows.values()) updateButton(x);
    }
    soon();
  }

  // A read started earlier may come back later than one started after
  // it: only the newest is drawn.
  let refreshes = 0, drawn = 0;

  async function refresh() {
    const n = ++refreshes;
    try {
      const [regs, cdrs, stats, calls] = await Promise.all([
        get("/registrations?limit=1000"),
        get("/cdrs?kind=call&since=1h&limit=1000"),
        get("/stats"),
        get("/calls?limit=1000"),
      ]);
      if (n < drawn || !token) return;
      drawn = n;
      renderRegistrations(regs);
      renderCDRs(cdrs);
      renderStats(stats);
      renderCalls(calls);
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

  // Every event, a call's start, ringing, answer or end among them, has
  // the lists (the active calls with them) read again.
  function onEvent(name, text) {
    logEvent(name, text);
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
    clearCalls();
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

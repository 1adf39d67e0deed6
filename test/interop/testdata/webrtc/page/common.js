// The part of the test page both SIP libraries share: parameters, the
// status line, the log, events to the driver (driver.mjs exposes
// window.hlasReport), and the media statistics of a call.

/** The page's query: ws (wss URL), uri (the AOR), user (authorization
 * user), password, lib. */
export const params = Object.fromEntries(new URLSearchParams(location.search));

const logLines = [];

/** log writes a line to the console (the driver relays it) and to the
 * page, which keeps the last lines for the screenshot. */
export function log(line) {
  console.log(line);
  logLines.push(new Date().toISOString().slice(11, 23) + " " + line.split("\n")[0]);
  logLines.splice(0, logLines.length - 30);
  document.getElementById("log").textContent = logLines.join("\n");
}

/** report hands an event to the driver, which prints it for the Go test,
 * and shows it in the status line unless it is a statistics sample. */
export function report(ev) {
  if (ev.event !== "stats") {
    document.getElementById("status").textContent =
      ev.event + (ev.cause ? ": " + ev.cause : "") + (ev.error ? ": " + ev.error : "");
    log("event " + JSON.stringify(ev));
  }
  if (window.hlasReport) {
    window.hlasReport(ev);
  }
}

window.addEventListener("error", (e) => report({ event: "error", error: String(e.message) }));
window.addEventListener("unhandledrejection", (e) => report({ event: "error", error: String(e.reason) }));

/** start fills in the heading and runs main, reporting what it throws. */
export function start(lib, main) {
  document.getElementById("lib").textContent = lib;
  document.getElementById("aor").textContent = params.uri;
  for (const k of ["ws", "uri", "password"]) {
    if (!params[k]) {
      report({ event: "error", error: "missing query parameter " + k });
      return;
    }
  }
  try {
    main();
  } catch (e) {
    report({ event: "error", error: String(e && e.stack ? e.stack : e) });
  }
}

/** installControl makes the call controls reachable for the driver
 * (page.evaluate). */
export function installControl(ctl) {
  window.hlas = ctl;
}

/** toneMeter measures the strongest frequency of a stream's audio: the
 * phone on the other side sends a sine, which must come out of the
 * decoder as that sine, not as noise. */
function toneMeter(stream) {
  const ctx = new AudioContext();
  const source = ctx.createMediaStreamSource(stream);
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 8192;
  analyser.smoothingTimeConstant = 0;
  source.connect(analyser);
  const bins = new Float32Array(analyser.frequencyBinCount);
  const hz = ctx.sampleRate / analyser.fftSize;
  return {
    peak() {
      analyser.getFloatFrequencyData(bins);
      let best = -1;
      for (let i = Math.ceil(100 / hz); i < Math.min(bins.length, 4000 / hz); i++) {
        if (best < 0 || bins[i] > bins[best]) {
          best = i;
        }
      }
      // Below -90 dBFS is silence, whatever its strongest bin.
      return best >= 0 && bins[best] > -90 ? { hz: Math.round(best * hz), db: Math.round(bins[best]) } : null;
    },
    close() {
      ctx.close();
    },
  };
}

/** sample reads the call's audio statistics (RTCStatsReport: inbound-rtp,
 * outbound-rtp, their codecs, the transport and its selected pair). */
async function sample(pc) {
  const report = await pc.getStats();
  const byId = new Map();
  let inbound, outbound, transport;
  report.forEach((s) => {
    byId.set(s.id, s);
    if (s.type === "inbound-rtp" && s.kind === "audio") inbound = s;
    if (s.type === "outbound-rtp" && s.kind === "audio") outbound = s;
    if (s.type === "transport") transport = s;
  });
  const codec = (s) => {
    const c = s && byId.get(s.codecId);
    return c ? c.mimeType + "/" + c.clockRate : "";
  };
  let pair = "";
  const p = transport && byId.get(transport.selectedCandidatePairId);
  if (p) {
    const l = byId.get(p.localCandidateId);
    const r = byId.get(p.remoteCandidateId);
    pair = l && r ? `${l.address}:${l.port} -> ${r.address}:${r.port} (${r.candidateType})` : "";
  }
  return {
    event: "stats",
    in: {
      packets: inbound ? inbound.packetsReceived : 0,
      bytes: inbound ? inbound.bytesReceived : 0,
      lost: inbound ? inbound.packetsLost : 0,
      codec: codec(inbound),
      energy: inbound && inbound.totalAudioEnergy ? inbound.totalAudioEnergy : 0,
    },
    out: {
      packets: outbound ? outbound.packetsSent : 0,
      bytes: outbound ? outbound.bytesSent : 0,
      codec: codec(outbound),
    },
    ice: transport ? transport.iceState : pc.iceConnectionState,
    dtls: transport ? transport.dtlsState : "",
    srtp: transport ? transport.srtpCipher || "" : "",
    pair,
  };
}

function show(s) {
  const row = (id, cells) => {
    const tds = document.getElementById(id).children;
    cells.forEach((v, i) => (tds[i + 1].textContent = v === undefined || v === null ? "" : String(v)));
  };
  row("in", [s.in.packets, s.in.bytes, s.in.codec, s.in.energy.toFixed(4), s.in.tone ? s.in.tone.hz + " (" + s.in.tone.db + " dB)" : "-"]);
  row("out", [s.out.packets, s.out.bytes, s.out.codec, "", ""]);
  document.getElementById("ice").textContent = s.ice;
  document.getElementById("dtls").textContent = s.dtls + (s.srtp ? " " + s.srtp : "");
  document.getElementById("pair").textContent = s.pair;
}

/** watchCall plays the call's remote audio, and reports its statistics
 * every second until the returned function is called, which reports
 * them a last time. */
export function watchCall(pc, label) {
  const audio = document.getElementById("remote");
  let meter = null;
  const attach = (stream) => {
    // Chrome only decodes (and only counts energy of) remote audio that
    // is played somewhere; the meter listens to the same stream.
    audio.srcObject = stream;
    audio.play().catch((e) => log("audio.play: " + e));
    if (!meter) {
      meter = toneMeter(stream);
    }
  };
  pc.addEventListener("track", (e) => attach(e.streams[0] || new MediaStream([e.track])));
  const receivers = pc.getReceivers().filter((r) => r.track && r.track.kind === "audio");
  if (receivers.length > 0) {
    attach(new MediaStream(receivers.map((r) => r.track)));
  }
  pc.addEventListener("iceconnectionstatechange", () => log(label + ": ICE " + pc.iceConnectionState));
  pc.addEventListener("connectionstatechange", () => log(label + ": connection " + pc.connectionState));
  let stopped = false;
  const tick = async () => {
    try {
      const s = await sample(pc);
      s.label = label;
      s.in.tone = meter ? meter.peak() : null;
      show(s);
      report(s);
    } catch (e) {
      log(label + ": getStats: " + e);
    }
  };
  const timer = setInterval(() => {
    if (!stopped) tick();
  }, 1000);
  return async () => {
    if (stopped) return;
    stopped = true;
    clearInterval(timer);
    if (pc.connectionState !== "closed") {
      await tick();
    }
    if (meter) meter.close();
  };
}

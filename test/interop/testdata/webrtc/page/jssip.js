// The JsSIP page: alice registers over wss, calls when the driver says
// so, answers every incoming call, hangs up when told.
import JsSIP from "jssip";
import { params, log, report, start, installControl, watchCall } from "./common.js";

// JsSIP logs through the debug package; its SIP trace (JsSIP:Transport)
// goes to the console, plain: no colour markup meant for devtools.
JsSIP.debug.formatArgs = function (args) {
  args[0] = this.namespace + " " + args[0];
};
JsSIP.debug.enable("JsSIP:Transport,JsSIP:RTCSession,JsSIP:Registrator,JsSIP:WARN:*,JsSIP:ERROR:*");

const media = { mediaConstraints: { audio: true, video: false }, pcConfig: { iceServers: [] } };

start("JsSIP " + JsSIP.version, () => {
  const socket = new JsSIP.WebSocketInterface(params.ws);
  const ua = new JsSIP.UA({
    sockets: [socket],
    uri: params.uri,
    authorization_user: params.user || undefined,
    password: params.password,
    register: true,
    session_timers: false,
    user_agent: "JsSIP " + JsSIP.version + " (hlas interop)",
  });
  let session = null;
  let stopStats = null;

  ua.on("connected", () => log("wss connected"));
  ua.on("disconnected", (e) => report({ event: "disconnected", cause: e.error ? "error" : "closed" }));
  ua.on("registered", () => report({ event: "registered" }));
  ua.on("registrationFailed", (e) =>
    report({ event: "registrationFailed", cause: e.cause, code: e.response ? e.response.status_code : 0 }),
  );

  ua.on("newRTCSession", (e) => {
    const s = e.session;
    if (session && !session.isEnded()) {
      s.terminate({ status_code: 486 });
      return;
    }
    session = s;
    const label = (e.originator === "remote" ? "in from " : "out to ") + s.remote_identity.uri.toString();
    const watch = (pc) => {
      stopStats = watchCall(pc, label);
    };
    if (s.connection) {
      watch(s.connection);
    } else {
      s.on("peerconnection", (p) => watch(p.peerconnection));
    }
    s.on("progress", (p) => report({ event: "progress", code: p.response ? p.response.status_code : 0 }));
    s.on("confirmed", () => report({ event: "confirmed", direction: s.direction }));
    const end = (what) => async (p) => {
      if (stopStats) await stopStats();
      report({ event: what, originator: p.originator, cause: p.cause });
    };
    s.on("ended", end("ended"));
    s.on("failed", end("failed"));
    if (e.originator === "remote") {
      report({ event: "incoming", from: s.remote_identity.uri.toString() });
      s.answer(media);
    }
  });

  installControl({
    call(target) {
      ua.call(target, media);
    },
    hangup() {
      if (!session || session.isEnded()) throw new Error("no call to hang up");
      session.terminate();
    },
  });
  ua.start();
});

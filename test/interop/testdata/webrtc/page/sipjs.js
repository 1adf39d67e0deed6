// The SIP.js page: the same controls as the JsSIP page, on SIP.js's
// UserAgent, Registerer, Inviter and Invitation.
import { Inviter, Registerer, RegistererState, SessionState, UserAgent } from "sip.js";
import { params, log, report, start, installControl, watchCall } from "./common.js";

const sdhOptions = { constraints: { audio: true, video: false } };

start("SIP.js " + UserAgent.version, () => {
  const uri = UserAgent.makeURI(params.uri);
  if (!uri) throw new Error("bad uri " + params.uri);
  let session = null;

  // wire follows a session (either direction) through its states.
  const wire = (s, label) => {
    session = s;
    let stopStats = null;
    const watch = () => {
      const pc = s.sessionDescriptionHandler && s.sessionDescriptionHandler.peerConnection;
      if (pc && !stopStats) stopStats = watchCall(pc, label);
    };
    s.stateChange.addListener(async (state) => {
      log(label + ": " + state);
      switch (state) {
        case SessionState.Establishing:
          watch();
          break;
        case SessionState.Established:
          watch();
          report({ event: "confirmed", direction: s instanceof Inviter ? "outgoing" : "incoming" });
          break;
        case SessionState.Terminated:
          if (stopStats) await stopStats();
          report({ event: "ended" });
          break;
      }
    });
  };

  const ua = new UserAgent({
    uri,
    authorizationUsername: params.user || uri.user,
    authorizationPassword: params.password,
    transportOptions: { server: params.ws, traceSip: true },
    logLevel: "log",
    userAgentString: "SIP.js " + UserAgent.version + " (hlas interop)",
    sessionDescriptionHandlerFactoryOptions: {
      peerConnectionConfiguration: { iceServers: [] },
      iceGatheringTimeout: 2000,
    },
    delegate: {
      onConnect: () => log("wss connected"),
      onDisconnect: (e) => report({ event: "disconnected", cause: e ? String(e) : "closed" }),
      onInvite: (invitation) => {
        if (session && session.state !== SessionState.Terminated) {
          invitation.reject({ statusCode: 486 });
          return;
        }
        const from = invitation.remoteIdentity.uri.toString();
        wire(invitation, "in from " + from);
        report({ event: "incoming", from });
        invitation.accept({ sessionDescriptionHandlerOptions: sdhOptions });
      },
    },
  });
  const registerer = new Registerer(ua, { expires: 300 });
  registerer.stateChange.addListener((state) => {
    if (state === RegistererState.Registered) report({ event: "registered" });
  });

  installControl({
    call(target) {
      const to = UserAgent.makeURI(target);
      if (!to) throw new Error("bad target " + target);
      const inviter = new Inviter(ua, to, { sessionDescriptionHandlerOptions: sdhOptions });
      wire(inviter, "out to " + target);
      inviter.invite({
        requestDelegate: {
          onProgress: (r) => report({ event: "progress", code: r.message.statusCode }),
          onReject: (r) => report({ event: "failed", cause: r.message.reasonPhrase, code: r.message.statusCode }),
        },
      });
    },
    hangup() {
      if (!session) throw new Error("no call to hang up");
      switch (session.state) {
        case SessionState.Established:
          session.bye();
          break;
        case SessionState.Establishing:
          if (session instanceof Inviter) session.cancel();
          else session.reject();
          break;
        default:
          throw new Error("no call to hang up (" + session.state + ")");
      }
    },
  });

  ua.start()
    .then(() =>
      registerer.register({
        requestDelegate: {
          onReject: (r) =>
            report({ event: "registrationFailed", cause: r.message.reasonPhrase, code: r.message.statusCode }),
        },
      }),
    )
    .catch((e) => report({ event: "error", error: "start: " + e }));
});

// Package media is the media plane as the signalling sees it: an Engine
// relays the RTP and RTCP of the calls whose session descriptions it
// rewrites. The proxy hands every SDP of a relayed call to the Engine on
// its way through and forwards what comes back. The built-in relay
// (media/relay) and a client of an external rtpengine (media/rtpengine)
// implement it.
//
// The model is rtpengine's: a call is its Call-ID; each party of it is
// named by its tag (the caller by the From tag of the INVITE, a callee by
// its To tag). An SDP from one party is an offer or an answer, and the
// Engine returns the description the other party must see: the relay's
// addresses and ports instead of the sender's.
package media

import (
	"context"
	"errors"
	"net/netip"
	"time"
)

// Errors an Engine returns; the proxy maps them to responses.
var (
	// ErrNoPorts: the port pool is exhausted (503 to a new call).
	ErrNoPorts = errors.New("media: no relay ports left")
	// ErrBadSDP: the description cannot be read (400 to its sender).
	ErrBadSDP = errors.New("media: malformed session description")
	// ErrNoSession: an answer or delete for a call the Engine does not
	// relay.
	ErrNoSession = errors.New("media: no such call")
	// ErrUnavailable: an external engine did not answer (503).
	ErrUnavailable = errors.New("media: engine unavailable")
	// ErrNoCodec: the parties share no codec, and the relay does not
	// transcode (488 Not Acceptable Here, RFC 3261 §21.4.26): an offer
	// with no stream the receiver could take (a WebRTC client offering
	// only a data channel to a phone, a phone offering only SDES-SRTP or
	// T.38 to a browser), or an answer accepting none of the offered
	// codecs on a stream the relay bridges.
	ErrNoCodec = errors.New("media: no common codec")
)

// Request is one session description on its way from one party of a
// call to the other.
type Request struct {
	// CallID names the call.
	CallID string
	// FromTag is the tag of the party that sent this SDP; ToTag that of
	// the party that will receive it, empty when it is not known yet (an
	// initial offer, before any response).
	FromTag, ToTag string
	// SDP is the body as received.
	SDP []byte
	// Source is where the SIP message carrying the SDP came from: the
	// sender's address as the server sees it (after any NAT).
	Source netip.Addr
	// Local is the server's address the sender's SIP arrived on: the
	// relay faces the sender from there. Zero: the engine's default.
	Local netip.Addr
	// Advertise is the server's address towards the receiver (the local
	// address the SIP message leaves on): the relay faces the receiver
	// from there, and its family is the receiver's (IPv4/IPv6 bridging).
	// Zero: the engine's default.
	Advertise netip.Addr
	// ReceiverWebRTC: the party this SDP goes to is a WebRTC client (its
	// SIP arrives over WebSocket, RFC 7118), so the engine offers it
	// ICE-lite and DTLS-SRTP (RFC 8829) when the sender speaks plain RTP.
	// Whether the sender is one the engine reads from its SDP (the
	// UDP/TLS/RTP/SAVP(F) profile with a=fingerprint). For an answer the
	// engine knows the receiver's kind from its offer and ignores this.
	ReceiverWebRTC bool
}

// Engine relays the media of calls. Its methods are called on the
// server's workers; an Engine that waits for the network (rtpengine)
// must bound the wait by ctx.
type Engine interface {
	// Offer handles an SDP offer (RFC 3264) from r.FromTag and returns the
	// body to forward. The first offer of a Call-ID starts relaying it;
	// later ones (re-INVITE, UPDATE) may change ports, codecs, streams.
	Offer(ctx context.Context, r *Request) ([]byte, error)
	// Answer handles the SDP answer to the last offer, from r.FromTag
	// (the answerer) to r.ToTag (the offerer).
	Answer(ctx context.Context, r *Request) ([]byte, error)
	// Delete stops relaying the call (all its parties) and returns what
	// was relayed. Deleting a call the engine does not relay returns
	// ErrNoSession.
	Delete(ctx context.Context, callID string) (Stats, error)
	// Close releases the engine's resources. The built-in relay ends its
	// calls; an external engine keeps them, so that restarting the
	// server does not cut the media of calls in progress.
	Close() error
}

// Stats is what an engine relayed for one call: per direction, summed
// over its streams.
type Stats struct {
	// Caller is what the caller sent (relayed towards the callee); Callee
	// the other way.
	Caller, Callee Direction
	// Streams is the number of m-lines relayed.
	Streams int
	// Duration is from the first offer to the delete.
	Duration time.Duration
}

// Direction is the traffic one party sent through the relay.
type Direction struct {
	Packets, Bytes uint64
	// Dropped counts packets refused: from an address that is not the
	// party's (a stranger, RFC 7362 §3), or arriving before the party was
	// known.
	Dropped uint64
	// Lost and Jitter are the latest the receiving party reported in RTCP
	// receiver reports (cumulative packets lost; interarrival jitter in
	// milliseconds); zero when no report was seen.
	Lost     int64
	JitterMS float64
}

// Timeout is how an engine reports a call whose media stopped: no packet
// from either party for the configured time. The proxy ends such calls.
type Timeout struct {
	CallID               string
	CallerTag, CalleeTag string
	Stats                Stats
}

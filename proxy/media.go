package proxy

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hlas-voip/hlas/media"
	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/transaction"
	"github.com/hlas-voip/hlas/sip/transport"
)

// MediaPolicy says which calls the proxy relays through Env.Media.
type MediaPolicy string

// Media policies.
const (
	// MediaAuto relays a call when its caller or a callee is behind a
	// NAT (the SDP or the Via names another address than the one the
	// request came from; a callee reached over its flow at another
	// address than its Contact's) or when the two sides' address
	// families differ. The default.
	MediaAuto MediaPolicy = "auto"
	// MediaAlways relays every call the proxy forwards statefully.
	MediaAlways MediaPolicy = "always"
	// MediaNever relays none.
	MediaNever MediaPolicy = "never"
)

// mediaTimeout bounds a call to an external media engine.
const mediaTimeout = 2 * time.Second

// maxMediaCalls bounds the calls the proxy tracks for the relay; beyond
// it new calls are not relayed (and the relay's port pool would be the
// tighter bound anyway).
const maxMediaCalls = 1 << 20

// mediaCalls are the calls the proxy relays, and with Env.TrackCalls
// every call it forwards with its Record-Route, by Call-ID.
type mediaCalls struct {
	mu sync.Mutex
	m  map[string]*mcall
	// swept is when tracked calls were last swept for age (calls.go).
	swept time.Time
	// tracked counts the entries with info (Env.TrackCalls), bounded by
	// maxTrackedCalls apart from the relayed calls' bound.
	tracked int
}

// delLocked forgets the call id.
func (mc *mediaCalls) delLocked(id string) {
	if c := mc.m[id]; c != nil {
		if c.info != nil {
			mc.tracked--
		}
		delete(mc.m, id)
	}
}

// mcall is what the proxy keeps of a relayed or tracked call: whose
// offer is pending, and enough of the dialog to end it with a BYE to each
// side when the relay reports that its media stopped or an operator
// hangs it up.
type mcall struct {
	callerTag string
	// cseq are the highest CSeq numbers seen from the caller and the
	// callee; a BYE of ours goes one above.
	cseq [2]uint32
	dlg  *mdialog // from the initial INVITE's 2xx; nil before
	// relayed says its media goes through Env.Media; a tracked call
	// may start relaying when a branch crosses address families.
	relayed atomic.Bool
	// info is what Calls lists; nil unless Env.TrackCalls.
	info *callInfo
}

// mdialog is a confirmed dialog as the proxy saw it pass, in text (the
// parsed messages' strings point into their datagrams).
type mdialog struct {
	from, to       string // the INVITE's From, the 2xx's To (both tagged)
	caller, callee string // their Contact URIs: the BYEs' Request-URIs
	// callerRoute and calleeRoute are the route sets from here towards
	// each side (Record-Route entries on that side of ours).
	callerRoute, calleeRoute []string
	callerFlow, calleeFlow   Flow
	calleeTag                string
}

// hasSDP reports a message body that is a session description.
func hasSDP(h *sip.Header, body []byte) bool {
	if len(body) == 0 {
		return false
	}
	ct := h.ContentType
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	return strings.EqualFold(strings.TrimSpace(ct), "application/sdp")
}

// behindNAT reports whether the sender of req, which came on in, is
// behind a NAT: its SDP names a private address that is not the source
// (the test rtpengine's client makes too), or its Via another address.
func behindNAT(req *sip.Request, in Flow) bool {
	src := in.Remote.Addr().Unmap()
	if !src.IsValid() {
		return false
	}
	if media.PrivateSDP(req.Body, src) {
		return true
	}
	if len(req.Via) > 0 {
		if ip, ok := sip.ParseIP(req.Via[0].Host); ok && ip.Unmap() != src {
			return true
		}
	}
	return false
}

// isWebSocket reports the transports of browsers (RFC 7118), whose media
// is WebRTC's: ICE and DTLS-SRTP.
func isWebSocket(proto string) bool { return proto == transport.WS || proto == transport.WSS }

// webRTCSDP reports an offer in WebRTC's profile (RFC 8829 §5.1.2), from a
// browser behind another proxy.
func webRTCSDP(req *sip.Request) bool {
	return hasSDP(&req.Header, req.Body) && bytes.Contains(req.Body, []byte("UDP/TLS/RTP/SAVP"))
}

// targetNATed reports a target reached over its flow at another address
// than its Contact's, or in another address family than the caller's.
func targetNATed(t Target, in Flow) bool {
	if t.Flow.IsZero() {
		return false
	}
	ra := t.Flow.Remote.Addr().Unmap()
	if in.Remote.IsValid() && in.Remote.Addr().Unmap().Is4() != ra.Is4() {
		return true
	}
	ip, ok := sip.ParseIP(t.URI.Host)
	return !ok || ip.Unmap() != ra
}

// mediaCall returns the relayed or tracked call req belongs to,
// starting one for an initial INVITE when the media policy relays it or
// Env.TrackCalls tracks it; nil: neither. rc is the INVITE's response
// context, which an operator's hang-up of the unanswered call cancels.
// A BYE that ends the call's dialog (see byeEndsLocked) takes it out of
// the table, under the same hold of the lock: ended is then true, and
// the caller ends the relay's session.
func (p *Proxy) mediaCall(req *sip.Request, in Flow, pl plan, rc *rctx) (c *mcall, ended bool) {
	relayOn := p.env.Media != nil && p.mediaPolicy != MediaNever
	if !relayOn && !p.env.TrackCalls {
		return nil, false
	}
	mc := &p.mcalls
	if req.To.Tag() == "" && req.Method != sip.INVITE {
		return nil, false // MESSAGE, OPTIONS, SUBSCRIBE...: no call's media
	}
	if req.To.Tag() != "" {
		mc.mu.Lock()
		defer mc.mu.Unlock()
		c := mc.m[req.CallID]
		if c == nil {
			return nil, false
		}
		if req.CSeq.Seq > 0 {
			side := 0
			if req.From.Tag() != c.callerTag {
				side = 1
			}
			c.cseq[side] = max(c.cseq[side], req.CSeq.Seq)
		}
		if req.Method == sip.BYE && c.byeEndsLocked(req) {
			mc.delLocked(req.CallID)
			return c, true
		}
		return c, false
	}
	relay := false
	if relayOn {
		relay = p.mediaPolicy == MediaAlways || behindNAT(req, in)
		web := isWebSocket(in.Proto) || webRTCSDP(req)
		for _, t := range pl.all() {
			if relay {
				break
			}
			// A browser and a phone only hear each other through the
			// relay, which terminates ICE and DTLS-SRTP for the browser.
			relay = targetNATed(t, in) || isWebSocket(t.Flow.Proto) != web
		}
	}
	if !relay && !p.tracks(req) {
		return nil, false // the common case: no lock taken
	}
	return p.startCall(req, in, relay, rc), false
}

// tracks reports whether Env.TrackCalls keeps the call req starts: one
// the proxy forwards with its Record-Route, so that its BYE passes here.
func (p *Proxy) tracks(req *sip.Request) bool {
	return p.env.TrackCalls && p.recordsRoute(req)
}

// startCall keeps req's call when it is relayed or Env.TrackCalls tracks
// it (forwarded with the proxy's Record-Route); a tracked call that
// starts relaying stays in its entry. nil: neither.
func (p *Proxy) startCall(req *sip.Request, in Flow, relay bool, rc *rctx) *mcall {
	mc := &p.mcalls
	mc.mu.Lock()
	defer mc.mu.Unlock()
	if c := mc.m[req.CallID]; c != nil {
		if relay {
			c.relayed.Store(true)
		}
		return c
	}
	if p.env.TrackCalls {
		p.sweepCallsLocked()
	}
	track := mc.tracked < maxTrackedCalls && p.tracks(req)
	if len(mc.m) >= maxMediaCalls || !relay && !track {
		return nil
	}
	c := &mcall{callerTag: strings.Clone(req.From.Tag())}
	c.relayed.Store(relay)
	c.cseq[0] = req.CSeq.Seq
	if track {
		c.info = newCallInfo(req, in, rc, p.clock.Now())
		mc.tracked++
	}
	mc.m[strings.Clone(req.CallID)] = c
	return c
}

// isRelayed reports whether c's media goes through the relay.
func (c *mcall) isRelayed() bool { return c != nil && c.relayed.Load() }

// forgetMedia stops relaying a call: the engine's session ends.
func (p *Proxy) forgetMedia(callID string) {
	mc := &p.mcalls
	mc.mu.Lock()
	c := mc.m[callID]
	mc.delLocked(callID)
	mc.mu.Unlock()
	if c.isRelayed() && p.env.Media != nil {
		p.releaseMedia(callID)
	}
}

// releaseMedia ends the engine's session of a relayed call no longer in
// the table, and hands its statistics to the accounting.
func (p *Proxy) releaseMedia(callID string) {
	ctx, cancel := context.WithTimeout(p.stop, mediaTimeout)
	defer cancel()
	st, err := p.env.Media.Delete(ctx, callID)
	if err != nil && !errors.Is(err, media.ErrNoSession) {
		p.log.Warn("media delete failed", "call-id", callID, "err", err)
	}
	p.met.media.WithLabelValues("delete").Inc()
	if err == nil {
		p.recordMedia(callID, st)
	}
}

// mediaCode is the response to a request whose SDP the engine refused.
func mediaCode(err error) (int, string) {
	switch {
	case errors.Is(err, media.ErrBadSDP):
		return 400, "Malformed Session Description"
	case errors.Is(err, media.ErrNoPorts):
		return 503, "No Media Ports Available"
	case errors.Is(err, media.ErrNoCodec):
		return 488, "No Common Codec"
	default:
		return 503, "Media Relay Unavailable"
	}
}

// localIP is the server's address a flow's peer reaches it on: what the
// proxy writes in its Via and Record-Route towards that peer.
func (p *Proxy) localIP(f Flow) netip.Addr {
	if s, ok := p.inSide(f); ok {
		return s.ip
	}
	return p.sourceIP(f.Remote.Addr())
}

// mediaRequest passes the SDP of a request going downstream to hop h
// along r through the media engine when its call is relayed: relay is
// true then, madv is the server's address towards h, and body the
// rewritten SDP (nil: none to rewrite). An offer, or the answer a PRACK
// carries.
func (c *rctx) mediaRequest(h Hop, r route) (relay bool, madv netip.Addr, body []byte, err error) {
	p := c.p
	mc := c.mcall()
	if !mc.isRelayed() && p.env.Media != nil && p.mediaPolicy == MediaAuto &&
		c.req.Method == sip.INVITE && c.req.To.Tag() == "" &&
		c.in.Remote.IsValid() && h.Addr.Addr().Unmap().Is4() != c.in.Remote.Addr().Unmap().Is4() {
		// The callee is of the other address family: relay to bridge.
		if mc = p.startCall(c.req, c.in, true, c); mc != nil {
			c.mu.Lock()
			if c.mc == nil {
				c.mc = mc
			}
			mc = c.mc
			c.mu.Unlock()
		}
	}
	if !mc.isRelayed() {
		return false, netip.Addr{}, nil, nil
	}
	madv = r.out.ip
	if !hasSDP(&c.req.Header, c.req.Body) {
		return true, madv, nil, nil
	}
	mr := &media.Request{
		CallID: c.req.CallID, FromTag: c.req.From.Tag(), ToTag: c.req.To.Tag(), SDP: c.req.Body,
		Source: c.in.Remote.Addr().Unmap(), Local: p.localIP(c.in), Advertise: madv,
		ReceiverWebRTC: isWebSocket(h.Proto),
	}
	ctx, cancel := context.WithTimeout(p.stop, mediaTimeout)
	defer cancel()
	if c.req.Method == sip.PRACK {
		body, err = p.env.Media.Answer(ctx, mr)
	} else {
		body, err = p.env.Media.Offer(ctx, mr)
	}
	if err != nil {
		p.met.media.WithLabelValues("error").Inc()
		return true, madv, nil, err
	}
	p.met.media.WithLabelValues("offer").Inc()
	return true, madv, body, nil
}

// mcall is the context's relayed call, nil when not relayed; a branch
// towards the other address family may start relaying it.
func (c *rctx) mcall() *mcall {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mc
}

// mediaResponse rewrites the SDP of a response going upstream from a
// relayed branch: the answer to the request's offer, or the offer of a
// 2xx to an INVITE without one. The original goes upstream when the
// engine fails: the call may lack audio, but is not lost.
func (c *rctx) mediaResponse(b *branch, res *sip.Response) *sip.Response {
	c.mu.Lock()
	relay, madv, rt := b.relay, b.madv, b.r
	c.mu.Unlock()
	if !relay || res.StatusCode < 101 || res.StatusCode >= 300 || !hasSDP(&res.Header, res.Body) {
		c.noteDialog(rt, res)
		return res
	}
	p := c.p
	mr := &media.Request{
		CallID: c.req.CallID, FromTag: res.To.Tag(), ToTag: c.req.From.Tag(), SDP: res.Body,
		Source: rt.hop.Addr.Addr().Unmap(), Local: madv, Advertise: p.localIP(c.in),
		ReceiverWebRTC: isWebSocket(c.in.Proto),
	}
	ctx, cancel := context.WithTimeout(p.stop, mediaTimeout)
	defer cancel()
	var body []byte
	var err error
	if hasSDP(&c.req.Header, c.req.Body) {
		body, err = p.env.Media.Answer(ctx, mr)
	} else {
		body, err = p.env.Media.Offer(ctx, mr)
	}
	if err != nil {
		p.met.media.WithLabelValues("error").Inc()
		p.log.Warn("media rewrite of a response failed", "call-id", c.req.CallID, "code", res.StatusCode, "err", err)
		c.noteDialog(rt, res)
		return res
	}
	p.met.media.WithLabelValues("answer").Inc()
	out := *res
	out.Body = body
	c.noteDialog(rt, &out)
	return &out
}

// noteDialog keeps what ending a relayed call takes, from the initial
// INVITE's first 2xx.
func (c *rctx) noteDialog(rt route, res *sip.Response) {
	mcl := c.mcall()
	if mcl == nil {
		return
	}
	if c.req.To.Tag() != "" {
		c.refreshTarget(mcl, res)
		return
	}
	if c.req.Method != sip.INVITE {
		return
	}
	p := c.p
	if res.StatusCode/100 == 1 {
		if mcl.info != nil && res.StatusCode > 100 {
			p.mcalls.mu.Lock()
			mcl.info.early = true
			p.mcalls.mu.Unlock()
		}
		return
	}
	if res.StatusCode/100 != 2 {
		return
	}
	mc := &p.mcalls
	mc.mu.Lock()
	defer mc.mu.Unlock()
	if in := mcl.info; in != nil && in.answered.IsZero() {
		in.answered, in.rc = p.clock.Now(), nil
	}
	if mcl.dlg != nil {
		return
	}
	d := &mdialog{
		from: c.req.From.String(), to: res.To.String(), calleeTag: strings.Clone(res.To.Tag()),
		callerFlow: c.in, calleeFlow: rt.flow,
	}
	if len(c.req.Contact) > 0 {
		d.caller = c.req.Contact[0].URI.String()
	}
	if len(res.Contact) > 0 {
		d.callee = res.Contact[0].URI.String()
	}
	if d.calleeFlow.IsZero() {
		d.calleeFlow = Flow{Proto: rt.hop.Proto, Remote: rt.hop.Addr, Local: rt.out.local}
	}
	// Record-Route as the 2xx carries it: the callee's side first, then
	// ours, then the caller's (RFC 3261 §16.6 step 4, §12.1.2).
	ours := -1
	for i := range res.RecordRoute {
		if p.isSelf(&res.RecordRoute[i].URI) {
			if ours < 0 {
				for j := i - 1; j >= 0; j-- {
					d.calleeRoute = append(d.calleeRoute, res.RecordRoute[j].String())
				}
			}
			ours = i
		}
	}
	if ours >= 0 {
		for j := ours + 1; j < len(res.RecordRoute); j++ {
			d.callerRoute = append(d.callerRoute, res.RecordRoute[j].String())
		}
	}
	mcl.dlg = d
}

// refreshTarget follows a target refresh (RFC 3261 §12.2): the 2xx of a
// re-INVITE or UPDATE within the dialog carries the remote targets from
// now on, the request's Contact its sender's, the response's the other
// side's. The proxy's own BYEs (a hang-up, a media timeout) go there.
func (c *rctx) refreshTarget(mcl *mcall, res *sip.Response) {
	req := c.req
	if res.StatusCode/100 != 2 || req.Method != sip.INVITE && req.Method != sip.UPDATE {
		return
	}
	mc := &c.p.mcalls
	mc.mu.Lock()
	defer mc.mu.Unlock()
	// A call no longer in the table is being ended: whoever took it out
	// reads its dialog without the lock, so it must not change. Another
	// fork's dialog moves no target of this one.
	if mcl.dlg == nil || mc.m[req.CallID] != mcl || !mcl.inDialogLocked(req) {
		return
	}
	d := *mcl.dlg
	fromCaller := req.From.Tag() == mcl.callerTag
	if len(req.Contact) > 0 {
		if fromCaller {
			d.caller = req.Contact[0].URI.String()
		} else {
			d.callee = req.Contact[0].URI.String()
		}
	}
	if len(res.Contact) > 0 {
		if fromCaller {
			d.callee = res.Contact[0].URI.String()
		} else {
			d.caller = res.Contact[0].URI.String()
		}
	}
	mcl.dlg = &d
}

// mediaEnded is the final response of a request of a relayed call going
// upstream: an initial INVITE that failed ends the relaying.
func (c *rctx) mediaEnded(res *sip.Response) {
	if res.StatusCode < 300 || c.req.Method != sip.INVITE || c.mcall() == nil || c.req.To.Tag() != "" {
		return
	}
	c.p.forgetMedia(c.req.CallID)
}

// mediaACK rewrites the answer an ACK of a 2xx carries (the reply to an
// offer in the 2xx of an INVITE without SDP). out is the ACK about to be
// sent; in is where it came from; r where it goes.
func (p *Proxy) mediaACK(req, out *sip.Request, in Flow, r route) {
	if p.env.Media == nil || !hasSDP(&req.Header, req.Body) {
		return
	}
	p.mcalls.mu.Lock()
	ok := p.mcalls.m[req.CallID].isRelayed()
	p.mcalls.mu.Unlock()
	if !ok {
		return
	}
	mr := &media.Request{
		CallID: req.CallID, FromTag: req.From.Tag(), ToTag: req.To.Tag(), SDP: req.Body,
		Source: in.Remote.Addr().Unmap(), Local: p.localIP(in), Advertise: r.out.ip,
		ReceiverWebRTC: isWebSocket(r.hop.Proto),
	}
	ctx, cancel := context.WithTimeout(p.stop, mediaTimeout)
	defer cancel()
	body, err := p.env.Media.Answer(ctx, mr)
	if err != nil {
		p.met.media.WithLabelValues("error").Inc()
		p.log.Warn("media rewrite of an ACK failed", "call-id", req.CallID, "err", err)
		return
	}
	p.met.media.WithLabelValues("answer").Inc()
	out.Body = body
}

// MediaRecorder is what Env.Accounting may also implement: it hears
// what the relay relayed for a call when the relaying ends, before the
// response (or the EndCall) that completes the call's record.
type MediaRecorder interface {
	MediaStats(callID string, st media.Stats)
}

// recordMedia hands a call's relay statistics to the accounting.
func (p *Proxy) recordMedia(callID string, st media.Stats) {
	if r, ok := p.env.Accounting.(MediaRecorder); ok {
		r.MediaStats(callID, st)
	}
}

// CallEnder is what Env.Accounting may also implement: the record of a
// call the proxy ends itself (acc.Accounting does).
type CallEnder interface {
	EndCall(e CallEnd) bool
}

// CallEnd is a call the proxy ends itself, as a CallEnder hears of it.
type CallEnd struct {
	CallID string
	// CallerTag and CalleeTag name the dialog: the INVITE's From tag and
	// its 2xx's To tag.
	CallerTag, CalleeTag string
	// From and To are the URIs of the INVITE's From and To; empty for a
	// call the proxy does not track (Env.TrackCalls off).
	From, To string
	// Why is the end reason ("media-timeout", or an operator's).
	Why string
}

// end is how c, answered, is told ended for why.
func (c *mcall) end(callID, why string) CallEnd {
	e := CallEnd{CallID: callID, CallerTag: c.callerTag, CalleeTag: c.dlg.calleeTag, Why: why}
	if c.info != nil {
		e.From, e.To = c.info.from, c.info.to
	}
	return e
}

// EndMedia ends a call whose media stopped (the engine's inactivity
// timeout): a BYE to each side, and the call's record with the reason
// media-timeout. The engine has already let go of the call.
func (p *Proxy) EndMedia(t media.Timeout) {
	mc := &p.mcalls
	mc.mu.Lock()
	c := mc.m[t.CallID]
	mc.delLocked(t.CallID)
	mc.mu.Unlock()
	if c == nil || c.dlg == nil {
		return
	}
	p.met.media.WithLabelValues("timeout").Inc()
	p.log.Info("ending a call without media", "call-id", t.CallID)
	p.endDialog(t.CallID, c, "media timeout")
	p.recordMedia(t.CallID, t.Stats)
	if e, ok := p.env.Accounting.(CallEnder); ok {
		e.EndCall(c.end(t.CallID, "media-timeout"))
	}
}

// endDialog sends the BYEs that end c's confirmed dialog, one to each
// side, with text as the Reason (RFC 3326).
func (p *Proxy) endDialog(callID string, c *mcall, text string) {
	d := c.dlg
	reason := `SIP;cause=200;text="` + text + `"`
	p.sendBYE(callID, d.caller, d.callerRoute, d.callerFlow, d.to, d.from, c.cseq[1]+1, reason)
	p.sendBYE(callID, d.callee, d.calleeRoute, d.calleeFlow, d.from, d.to, c.cseq[0]+1, reason)
}

// sendBYE sends a BYE of the proxy's own within a dialog: to target along
// route (loose routing), over flow when the far side is reached over it.
func (p *Proxy) sendBYE(callID, target string, route []string, flow Flow, from, to string, cseq uint32, reason string) {
	ruri, err := sip.ParseURI(target)
	if err != nil {
		p.log.Warn("no BYE: bad target", "call-id", callID, "target", target, "err", err)
		return
	}
	req := &sip.Request{Method: sip.BYE, URI: ruri, Version: "SIP/2.0"}
	req.MaxForwards = 70
	req.CallID = callID
	req.CSeq = sip.CSeq{Seq: cseq, Method: sip.BYE}
	if req.From, err = sip.ParseAddress(from); err != nil {
		return
	}
	if req.To, err = sip.ParseAddress(to); err != nil {
		return
	}
	for _, r := range route {
		a, err := sip.ParseAddress(r)
		if err != nil {
			return
		}
		req.Route = append(req.Route, a)
	}
	req.Add("Reason", reason)
	if err := p.SendRequest(req, flow, func(res *sip.Response, err error) {
		if err != nil {
			p.log.Debug("BYE of the proxy's own failed", "call-id", callID, "err", err)
		}
	}); err != nil {
		p.log.Warn("BYE not sent", "call-id", callID, "err", err)
	}
}

// byeSender sends the proxy's own requests (SendRequest).
type byeSender struct {
	p      *Proxy
	proto  string
	local  netip.AddrPort
	remote netip.AddrPort
	conn   *transport.Conn
	// batch takes the first send over UDP (SendOptions.Batch); the
	// transaction calls Send under its mutex, which orders the hand-over.
	batch Batch
}

func (s *byeSender) Send(m sip.Message) error {
	if b := s.batch; b != nil {
		s.batch = nil
		return s.p.encodeTo(m, func(data []byte) error { return b.WriteTo(s.proto, s.local, s.remote, data) })
	}
	return s.p.sendMessage(m, s.proto, s.local, s.remote, s.conn, nil)
}

func (s *byeSender) Reliable() bool { return s.proto != transport.UDP }

var _ transaction.Sender = (*byeSender)(nil)

// mediaLabel is for logs: the policy as configured.
func (m MediaPolicy) String() string {
	if m == "" {
		return string(MediaAuto)
	}
	return string(m)
}

// parseMediaPolicy checks a policy name.
func parseMediaPolicy(s MediaPolicy) (MediaPolicy, error) {
	switch s {
	case "", MediaAuto:
		return MediaAuto, nil
	case MediaAlways, MediaNever:
		return s, nil
	}
	return "", errors.New("proxy: media policy " + strconv.Quote(string(s)) + ": want auto, always or never")
}

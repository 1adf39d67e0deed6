package rtpengine

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"sync"
	"time"

	"github.com/hlas-voip/hlas/media"
	"github.com/hlas-voip/hlas/media/sdpedit"
)

// Offer sends an "offer" for r: the first one of a Call-ID creates the
// call in rtpengine, later ones (re-INVITE, UPDATE) update it. The NG
// from-tag is the sender's, as in SIP: r.FromTag.
//
// A WebRTC sender (read from its SDP) and a receiver that is not, or the
// other way round (r.ReceiverWebRTC), are bridged: see bridge.
func (c *Client) Offer(ctx context.Context, r *media.Request) ([]byte, error) {
	senderWebRTC := webRTCSDP(r.SDP)
	d := c.sdpRequest(r, r.FromTag, r.ToTag)
	bridge(d, senderWebRTC, r.ReceiverWebRTC, false)
	reply, err := c.request(ctx, "offer", d)
	if err != nil {
		return nil, err
	}
	sdp, err := replySDP(reply, "offer")
	if err != nil {
		return nil, err
	}
	c.calls.add(r.CallID, r.FromTag, time.Now())
	c.calls.offered(r.CallID, senderWebRTC)
	return sdp, nil
}

// Answer sends an "answer" for r. NG names the parties of an answer by
// the dialog, not by the message: from-tag is the offerer's (r.ToTag),
// to-tag the answerer's (r.FromTag).
func (c *Client) Answer(ctx context.Context, r *media.Request) ([]byte, error) {
	if r.ToTag == "" {
		return nil, fmt.Errorf("rtpengine: answer in call %q names no offerer tag", r.CallID)
	}
	// The receiver of an answer is the offerer, whose kind its offer
	// told; a call the client no longer remembers takes the signalling's
	// word.
	receiverWebRTC := r.ReceiverWebRTC
	if e, ok := c.calls.get(r.CallID); ok {
		receiverWebRTC = e.offerWebRTC
	}
	d := c.sdpRequest(r, r.ToTag, r.FromTag)
	bridge(d, webRTCSDP(r.SDP), receiverWebRTC, true)
	reply, err := c.request(ctx, "answer", d)
	if err != nil {
		return nil, err
	}
	return replySDP(reply, "answer")
}

// webRTCSDP reports a description from a WebRTC client (DTLS-SRTP, see
// sdpedit.Stream.WebRTC). One rtpengine cannot read is not: rtpengine
// will say what is wrong with it.
func webRTCSDP(body []byte) bool {
	d, err := sdpedit.Parse(body)
	return err == nil && d.WebRTC()
}

// bridge sets the NG options of an offer or answer (d) for the kinds of
// its sender and receiver, as rtpengine's documentation spells them
// (docs/ng_control_protocol.md, its "WebRTC" flag):
//
//   - towards a WebRTC client: "ICE": "force" (rtpengine's own
//     candidates, the client's removed: browsers need ICE); and from a
//     plain phone also "transport-protocol": "UDP/TLS/RTP/SAVPF"
//     (DTLS-SRTP), "SDES": ["off"] (browsers do not take a=crypto) and,
//     in an offer, "rtcp-mux": ["offer", "require"] and the flag
//     "generate-mid" (browsers require both);
//   - from a WebRTC client to a plain phone: "transport-protocol":
//     "RTP/AVP", "ICE": "remove", and in an offer "rtcp-mux": ["demux"]
//     (the phone gets separate RTCP, the browser its mux back in the
//     answer).
//
// Two plain parties keep the client's defaults.
func bridge(d map[string]any, senderWebRTC, receiverWebRTC, answer bool) {
	switch {
	case receiverWebRTC && senderWebRTC:
		d["ICE"] = "force"
	case receiverWebRTC:
		d["ICE"] = "force"
		d["transport-protocol"] = "UDP/TLS/RTP/SAVPF"
		d["SDES"] = []string{"off"}
		if !answer {
			d["rtcp-mux"] = []string{"offer", "require"}
			d["flags"] = append(d["flags"].([]string), "generate-mid")
		}
	case senderWebRTC:
		d["ICE"] = "remove"
		d["transport-protocol"] = "RTP/AVP"
		if !answer {
			d["rtcp-mux"] = []string{"demux"}
		}
	}
}

// Delete ends the call in rtpengine and returns its statistics. The
// delete names the caller's tag when the client remembers it (see
// Config.MaxCalls): rtpengine then ends the caller's branch, with it the
// call, and reports the packets of the caller and of those it talked to,
// which Stats splits by direction. Without the tag the whole call is
// deleted and the Stats are empty. A call rtpengine does not know gives
// media.ErrNoSession.
func (c *Client) Delete(ctx context.Context, callID string) (media.Stats, error) {
	e, known := c.calls.get(callID)
	d := map[string]any{"call-id": callID, "flags": []string{"fatal"}}
	if known {
		d["from-tag"] = e.caller
	}
	switch dd := c.cfg.DeleteDelay; {
	case dd == 0:
		d["delete-delay"] = 0
	case dd > 0:
		d["delete-delay"] = int64(math.Ceil(dd.Seconds()))
	}
	reply, err := c.request(ctx, "delete", d)
	if err != nil {
		if !errors.Is(err, media.ErrUnavailable) {
			c.calls.remove(callID) // rtpengine has answered: the call is gone either way
		}
		return media.Stats{}, err
	}
	c.calls.remove(callID)
	if !known {
		return media.Stats{}, nil
	}
	st := statsOf(reply, e.caller)
	st.Duration = time.Since(e.start)
	return st, nil
}

// Query returns the statistics of a call so far, as Delete would, without
// ending it.
func (c *Client) Query(ctx context.Context, callID string) (media.Stats, error) {
	e, known := c.calls.get(callID)
	d := map[string]any{"call-id": callID}
	if known {
		d["from-tag"] = e.caller
	}
	reply, err := c.request(ctx, "query", d)
	if err != nil || !known {
		return media.Stats{}, err
	}
	st := statsOf(reply, e.caller)
	st.Duration = time.Since(e.start)
	return st, nil
}

// sdpRequest builds the dictionary of an offer or answer, with the
// defaults of a relay for phones behind NAT:
//
//   - replace origin and session-connection: the o= and session c= lines
//     carry rtpengine's address, not the sender's (which may be private);
//   - ICE remove: the sender's candidates are of no use to the other
//     party, who is to send to rtpengine;
//   - received-from: the address the SIP message came from;
//   - SIP-source-address when the description's connection address is a
//     private one that is not that source (the sender is behind NAT):
//     rtpengine then sends to the source address (and the SDP's port)
//     instead of an address it cannot reach; trust-address otherwise
//     (explicitly, whatever rtpengine's --sip-source says), so that a
//     gateway or media server whose SIP comes from elsewhere than its
//     media is reached where it said;
//   - latching is rtpengine's default (symmetric RTP, endpoint learning):
//     it sends to wherever the party's packets come from, which fixes the
//     port a NAT changed. "strict-source" (drop strangers after learning)
//     and the like can be added with Config.Flags.
func (c *Client) sdpRequest(r *media.Request, fromTag, toTag string) map[string]any {
	d := map[string]any{
		"call-id":  r.CallID,
		"from-tag": fromTag,
		"sdp":      r.SDP,
		"replace":  []string{"origin", "session-connection"},
		"ICE":      "remove",
	}
	if toTag != "" {
		d["to-tag"] = toTag
	}
	flags := make([]string, 0, 1+len(c.cfg.Flags))
	if src := r.Source.Unmap().WithZone(""); src.IsValid() {
		d["received-from"] = []string{family(src), src.String()}
		if media.PrivateSDP(r.SDP, src) {
			flags = append(flags, "SIP-source-address")
		} else {
			flags = append(flags, "trust-address")
		}
	} else {
		flags = append(flags, "trust-address")
	}
	d["flags"] = append(flags, c.cfg.Flags...)
	if a := r.Advertise.Unmap(); a.IsValid() {
		// The receiver's family: rtpengine bridges IPv4 and IPv6 when it
		// has interfaces of both.
		d["address-family"] = family(a)
	}
	return d
}

func family(a netip.Addr) string {
	if a.Is4() {
		return "IP4"
	}
	return "IP6"
}

func replySDP(reply map[string]any, command string) ([]byte, error) {
	sdp, ok := reply["sdp"].(string)
	if !ok || sdp == "" {
		return nil, fmt.Errorf("rtpengine: %s: reply without sdp: %w", command, media.ErrUnavailable)
	}
	return []byte(sdp), nil
}

// statsOf reads a delete or query reply: "tags" holds a dictionary per
// party, each with "medias", each with "streams" (RTP, RTCP), each with
// "stats" counting what rtpengine received on the port facing that party,
// that is what the party sent. The caller's party is the caller's
// direction; the others (the callee, or the callees of a forked call) the
// callee's. rtpengine's "errors" (packets it dropped: strict-source
// strangers, unknown payload types, failed sends) are Dropped.
func statsOf(reply map[string]any, caller string) media.Stats {
	var st media.Stats
	tags, _ := reply["tags"].(map[string]any)
	for key, v := range tags {
		party, _ := v.(map[string]any)
		tag, ok := party["tag"].(string)
		if !ok {
			tag = key
		}
		dir := &st.Callee
		medias, _ := party["medias"].([]any)
		if tag == caller {
			dir = &st.Caller
			st.Streams = len(medias)
		}
		for _, m := range medias {
			md, _ := m.(map[string]any)
			streams, _ := md["streams"].([]any)
			for _, s := range streams {
				sd, _ := s.(map[string]any)
				counters, _ := sd["stats"].(map[string]any)
				dir.Packets += counter(counters, "packets")
				dir.Bytes += counter(counters, "bytes")
				dir.Dropped += counter(counters, "errors")
			}
		}
	}
	return st
}

func counter(d map[string]any, key string) uint64 {
	n, _ := d[key].(int64)
	return uint64(max(n, 0))
}

// callTable remembers, per call, the first offer's From tag (the caller)
// and when it came, oldest first, bounded.
type callTable struct {
	mu      sync.Mutex
	max     int
	byID    map[string]*list.Element
	order   list.List // of *callEntry
	evicted uint64
}

type callEntry struct {
	id, caller string
	start      time.Time
	// offerWebRTC: the sender of the latest offer is a WebRTC client.
	offerWebRTC bool
}

func (t *callTable) init(max int) {
	t.max = max
	t.byID = map[string]*list.Element{}
}

// add records a call's caller unless the call is known already.
func (t *callTable) add(id, caller string, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.byID[id]; ok {
		return
	}
	for t.order.Len() >= t.max && t.order.Len() > 0 {
		oldest := t.order.Front()
		delete(t.byID, oldest.Value.(*callEntry).id)
		t.order.Remove(oldest)
		t.evicted++
	}
	t.byID[id] = t.order.PushBack(&callEntry{id: id, caller: caller, start: now})
}

// offered records the kind of the latest offer's sender of a known call.
func (t *callTable) offered(id string, webrtc bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if el, ok := t.byID[id]; ok {
		el.Value.(*callEntry).offerWebRTC = webrtc
	}
}

func (t *callTable) get(id string) (callEntry, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	el, ok := t.byID[id]
	if !ok {
		return callEntry{}, false
	}
	return *el.Value.(*callEntry), true
}

func (t *callTable) remove(id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if el, ok := t.byID[id]; ok {
		delete(t.byID, id)
		t.order.Remove(el)
	}
}

func (t *callTable) stats() (n int, evicted uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.order.Len(), t.evicted
}

// poll is the goroutine that finds the calls rtpengine ended itself: every
// PollInterval it queries each call the client knows, one at a time (the
// NG socket is shared with the signalling's requests), and reports those
// rtpengine answers "Unknown call-id" for. A call the client deletes is
// forgotten first, so it is never reported.
func (c *Client) poll() {
	defer close(c.pollerDone)
	t := time.NewTicker(c.cfg.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-c.closed:
			return
		case <-t.C:
		}
		for _, e := range c.calls.all() {
			select {
			case <-c.closed:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), c.cfg.Timeout*time.Duration(c.cfg.Attempts))
			_, err := c.request(ctx, "query", map[string]any{"call-id": e.id, "from-tag": e.caller})
			cancel()
			if !errors.Is(err, media.ErrNoSession) {
				continue // alive, or rtpengine did not answer: ask again next time
			}
			if _, known := c.calls.get(e.id); !known {
				continue // deleted meanwhile by the signalling
			}
			c.calls.remove(e.id)
			c.log.Info("rtpengine ended a call (its timeout)", "call-id", e.id)
			c.cfg.OnTimeout(media.Timeout{CallID: e.id, CallerTag: e.caller,
				Stats: media.Stats{Duration: time.Since(e.start)}})
		}
	}
}

// all returns the calls known now.
func (t *callTable) all() []callEntry {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]callEntry, 0, t.order.Len())
	for el := t.order.Front(); el != nil; el = el.Next() {
		out = append(out, *el.Value.(*callEntry))
	}
	return out
}

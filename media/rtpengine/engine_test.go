package rtpengine

import (
	"context"
	"errors"
	"net/netip"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/hlas-voip/hlas/internal/bencode"
	"github.com/hlas-voip/hlas/media"
)

const okSDP = "d6:result2:ok3:sdp5:v=0\r\ne"

func sdpWith(c string) []byte {
	return []byte("v=0\r\no=- 1 1 IN IP4 " + c + "\r\ns=-\r\nc=IN IP4 " + c + "\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n")
}

// How a media.Request becomes an offer or answer dictionary.
func TestRequestMapping(t *testing.T) {
	nat := sdpWith("192.168.1.10")
	tests := []struct {
		name    string
		flags   []string // Config.Flags
		answer  bool
		r       media.Request
		want    map[string]any // besides command, call-id, sdp, replace, ICE
		wantNil []string       // keys that must be absent
	}{
		{
			name: "initial offer from behind NAT",
			r:    media.Request{CallID: "c1", FromTag: "a", SDP: nat, Source: netip.MustParseAddr("203.0.113.7")},
			want: map[string]any{"from-tag": "a", "received-from": []any{"IP4", "203.0.113.7"},
				"flags": []any{"SIP-source-address"}},
			wantNil: []string{"to-tag", "address-family"},
		},
		{
			name: "re-offer with both tags, public address",
			r: media.Request{CallID: "c1", FromTag: "b", ToTag: "a", SDP: sdpWith("198.51.100.9"),
				Source: netip.MustParseAddr("203.0.113.7"), Advertise: netip.MustParseAddr("192.0.2.1")},
			want: map[string]any{"from-tag": "b", "to-tag": "a", "received-from": []any{"IP4", "203.0.113.7"},
				"flags": []any{"trust-address"}, "address-family": "IP4"},
		},
		{
			name: "private address that is the source: same network, no NAT",
			r:    media.Request{CallID: "c1", FromTag: "a", SDP: nat, Source: netip.MustParseAddr("192.168.1.10")},
			want: map[string]any{"flags": []any{"trust-address"}},
		},
		{
			name:   "answer names the offerer as from-tag",
			answer: true,
			r: media.Request{CallID: "c1", FromTag: "callee", ToTag: "caller", SDP: nat,
				Source: netip.MustParseAddr("2001:db8::5"), Advertise: netip.MustParseAddr("2001:db8::1")},
			want: map[string]any{"from-tag": "caller", "to-tag": "callee", "received-from": []any{"IP6", "2001:db8::5"},
				"flags": []any{"SIP-source-address"}, "address-family": "IP6"},
		},
		{
			name:    "no source: the SDP is all there is",
			r:       media.Request{CallID: "c1", FromTag: "a", SDP: nat},
			want:    map[string]any{"flags": []any{"trust-address"}},
			wantNil: []string{"received-from"},
		},
		{
			name: "IPv4-mapped source is IPv4",
			r:    media.Request{CallID: "c1", FromTag: "a", SDP: nat, Source: netip.MustParseAddr("::ffff:203.0.113.7")},
			want: map[string]any{"received-from": []any{"IP4", "203.0.113.7"}},
		},
		{
			name:  "configured flags come after the client's, so they win",
			flags: []string{"trust-address", "strict-source"},
			r:     media.Request{CallID: "c1", FromTag: "a", SDP: nat, Source: netip.MustParseAddr("203.0.113.7")},
			want:  map[string]any{"flags": []any{"SIP-source-address", "trust-address", "strict-source"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := newFakeNG(t, answer(okSDP))
			c, _ := newTestClient(t, Config{Address: srv.addr(), Flags: tc.flags})
			var err error
			if tc.answer {
				_, err = c.Answer(context.Background(), &tc.r)
			} else {
				_, err = c.Offer(context.Background(), &tc.r)
			}
			if err != nil {
				t.Fatal(err)
			}
			req := srv.wait(t).req
			wantCommand := "offer"
			if tc.answer {
				wantCommand = "answer"
			}
			fixed := map[string]any{"command": wantCommand, "call-id": tc.r.CallID, "sdp": string(tc.r.SDP),
				"replace": []any{"origin", "session-connection"}, "ICE": "remove"}
			for k, v := range fixed {
				if !reflect.DeepEqual(req[k], v) {
					t.Errorf("%s = %#v, want %#v", k, req[k], v)
				}
			}
			for k, v := range tc.want {
				if !reflect.DeepEqual(req[k], v) {
					t.Errorf("%s = %#v, want %#v", k, req[k], v)
				}
			}
			for _, k := range tc.wantNil {
				if v, ok := req[k]; ok {
					t.Errorf("%s = %#v, want none", k, v)
				}
			}
		})
	}
}

// An answer must name the offerer; nothing is sent without it.
func TestAnswerWithoutOfferer(t *testing.T) {
	srv := newFakeNG(t, answer(okSDP))
	c, _ := newTestClient(t, Config{Address: srv.addr()})
	if _, err := c.Answer(context.Background(), &media.Request{CallID: "c", FromTag: "callee", SDP: []byte("v=0\r\n")}); err == nil {
		t.Fatal("answer without ToTag accepted")
	}
	if n := len(srv.received()); n != 0 {
		t.Errorf("%d datagrams sent", n)
	}
}

// Delete names the first offer's From tag, whoever sent later offers;
// delete-delay follows Config.DeleteDelay.
func TestDeleteRequest(t *testing.T) {
	for _, tc := range []struct {
		delay time.Duration
		want  any // nil: absent
	}{{0, int64(0)}, {1500 * time.Millisecond, int64(2)}, {3 * time.Second, int64(3)}, {-1, nil}} {
		srv := newFakeNG(t, func(_ int, d datagram) []string {
			if d.req["command"] == "delete" {
				return []string{"d6:result2:oke"}
			}
			return []string{okSDP}
		})
		c, _ := newTestClient(t, Config{Address: srv.addr(), DeleteDelay: tc.delay})
		ctx := context.Background()
		c.Offer(ctx, &media.Request{CallID: "c", FromTag: "caller", SDP: []byte("v=0\r\n")})
		c.Offer(ctx, &media.Request{CallID: "c", FromTag: "callee", ToTag: "caller", SDP: []byte("v=0\r\n")})
		srv.wait(t)
		srv.wait(t)
		if _, err := c.Delete(ctx, "c"); err != nil {
			t.Fatal(err)
		}
		req := srv.wait(t).req
		want := map[string]any{"command": "delete", "call-id": "c", "from-tag": "caller", "flags": []any{"fatal"}}
		if tc.want != nil {
			want["delete-delay"] = tc.want
		}
		if !reflect.DeepEqual(req, want) {
			t.Errorf("DeleteDelay %v: delete %#v, want %#v", tc.delay, req, want)
		}
		if n, _ := c.calls.stats(); n != 0 {
			t.Errorf("the deleted call is still remembered")
		}
	}
}

// A call the client does not remember (offered before a restart, or
// forgotten past MaxCalls) is deleted whole, without statistics.
func TestDeleteForgottenCall(t *testing.T) {
	srv := newFakeNG(t, func(_ int, d datagram) []string {
		if d.req["command"] == "delete" {
			return []string{"d6:result2:ok4:tagsd1:ad3:tag1:a6:mediasld7:streamsld5:statsd7:packetsi5eeeeeeeee"}
		}
		return []string{okSDP}
	})
	c, _ := newTestClient(t, Config{Address: srv.addr(), MaxCalls: 2})
	ctx := context.Background()
	for _, id := range []string{"c1", "c2", "c3"} {
		if _, err := c.Offer(ctx, &media.Request{CallID: id, FromTag: "a", SDP: []byte("v=0\r\n")}); err != nil {
			t.Fatal(err)
		}
		srv.wait(t)
	}
	if n, evicted := c.calls.stats(); n != 2 || evicted != 1 {
		t.Errorf("%d calls remembered, %d forgotten; want 2, 1", n, evicted)
	}
	if v := testutil.ToFloat64(c.met.evicted); v != 1 {
		t.Errorf("calls_forgotten_total = %v", v)
	}
	st, err := c.Delete(ctx, "c1")
	if err != nil {
		t.Fatal(err)
	}
	if st != (media.Stats{}) {
		t.Errorf("stats of a forgotten call: %+v", st)
	}
	if req := srv.wait(t).req; req["from-tag"] != nil {
		t.Errorf("delete of a forgotten call named from-tag %v", req["from-tag"])
	}
	st, err = c.Delete(ctx, "c3")
	if err != nil {
		t.Fatal(err)
	}
	if st.Caller.Packets != 5 || st.Streams != 1 {
		t.Errorf("stats of a remembered call: %+v", st)
	}
}

// A delete rtpengine did not answer keeps the call's tag for a retry; one
// it refused forgets it.
func TestDeleteFailures(t *testing.T) {
	var refuse atomic.Bool
	srv := newFakeNG(t, func(_ int, d datagram) []string {
		switch {
		case d.req["command"] != "delete":
			return []string{okSDP}
		case refuse.Load():
			return []string{"d6:result5:error12:error-reason38:Call-ID not found or tags didn't matche"}
		}
		return nil
	})
	c, _ := newTestClient(t, Config{Address: srv.addr(), Timeout: 5 * time.Millisecond, Attempts: 1})
	ctx := context.Background()
	c.Offer(ctx, &media.Request{CallID: "c", FromTag: "a", SDP: []byte("v=0\r\n")})
	srv.wait(t)
	if _, err := c.Delete(ctx, "c"); !errors.Is(err, media.ErrUnavailable) {
		t.Fatalf("delete: %v, want ErrUnavailable", err)
	}
	if _, ok := c.calls.get("c"); !ok {
		t.Errorf("the call was forgotten after an unanswered delete")
	}
	srv.wait(t)
	refuse.Store(true)
	if _, err := c.Delete(ctx, "c"); !errors.Is(err, media.ErrNoSession) {
		t.Fatalf("delete: %v, want ErrNoSession", err)
	}
	if _, ok := c.calls.get("c"); ok {
		t.Errorf("the call is remembered after rtpengine refused its delete")
	}
}

// Reading the statistics of a delete or query reply.
func TestStatsOf(t *testing.T) {
	stream := func(p, b, e int64) any {
		return map[string]any{"stats": map[string]any{"packets": p, "bytes": b, "errors": e}}
	}
	party := func(tag string, medias ...[]any) map[string]any {
		ms := []any{}
		for _, s := range medias {
			ms = append(ms, map[string]any{"streams": s})
		}
		return map[string]any{"tag": tag, "medias": ms}
	}
	reply := map[string]any{"tags": map[string]any{
		"caller": party("caller", []any{stream(10, 1720, 1), stream(2, 100, 0)}, []any{stream(3, 300, 0)}),
		"callee": party("callee", []any{stream(7, 700, 2), stream(1, 80, 0)}),
		// A fork's other branch, answered before the final one.
		"fork": party("fork", []any{stream(1, 50, 0)}),
		// The half-open side rtpengine has no tag for yet.
		"<untagged 3>": party("", []any{stream(0, 0, 0)}),
		// Garbage is skipped, not trusted.
		"junk": "x", "neg": party("neg", []any{stream(-5, -5, -5)}),
	}}
	got := statsOf(reply, "caller")
	want := media.Stats{
		Caller:  media.Direction{Packets: 15, Bytes: 2120, Dropped: 1},
		Callee:  media.Direction{Packets: 9, Bytes: 830, Dropped: 2},
		Streams: 2,
	}
	if got != want {
		t.Errorf("statsOf = %+v, want %+v", got, want)
	}
	if got := statsOf(map[string]any{"result": "ok"}, "caller"); got != (media.Stats{}) {
		t.Errorf("statsOf a reply without tags = %+v", got)
	}
}

// FuzzReplyReaders: the readers of a reply (statistics, SDP) take any
// dictionary that decodes, without a panic.
func FuzzReplyReaders(f *testing.F) {
	for _, s := range []string{
		"d6:result4:ponge",
		"d6:result5:error12:error-reason15:Unknown call-ide",
		"d4:tagsd1:ad3:tag1:a6:mediasld7:streamsld5:statsd7:packetsi5e5:bytesi860e6:errorsi0eeeeeeeee6:result2:oke",
		"d4:tagsd1:ali1eee", "d4:tagsl1:ae", "d4:tagsd1:ad6:mediasl1:xeeee",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		v, err := bencode.Decode(in)
		if err != nil {
			return
		}
		if d, ok := v.(map[string]any); ok {
			statsOf(d, "a")
			replySDP(d, "offer")
		}
	})
}

// rtpengine ends a call at its own --timeout without telling anyone: the
// poller finds it gone (query: Unknown call-id) and reports it once; a
// call still there, and one the signalling deleted, are not reported.
func TestPollReportsCallsRtpengineEnded(t *testing.T) {
	var mu sync.Mutex
	gone := map[string]bool{"dead": true}
	srv := newFakeNG(t, func(_ int, d datagram) []string {
		switch d.req["command"] {
		case "query":
			mu.Lock()
			defer mu.Unlock()
			if gone[d.req["call-id"].(string)] {
				return []string{"d6:result5:error12:error-reason15:Unknown call-ide"}
			}
			return []string{"d6:result2:oke"}
		case "delete":
			return []string{"d6:result2:oke"}
		}
		return []string{okSDP}
	})
	reported := make(chan media.Timeout, 10)
	c, _ := newTestClient(t, Config{Address: srv.addr(), PollInterval: 20 * time.Millisecond,
		OnTimeout: func(to media.Timeout) { reported <- to }})
	ctx := context.Background()
	for _, id := range []string{"dead", "alive", "deleted"} {
		if _, err := c.Offer(ctx, &media.Request{CallID: id, FromTag: "a-" + id, SDP: []byte("v=0\r\n")}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Delete(ctx, "deleted"); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	gone["deleted"] = true
	mu.Unlock()
	select {
	case to := <-reported:
		if to.CallID != "dead" || to.CallerTag != "a-dead" {
			t.Errorf("reported %+v", to)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the call rtpengine ended was not reported")
	}
	// Several more rounds: nothing else, and "dead" only once.
	deadline := time.After(200 * time.Millisecond)
	for {
		select {
		case to := <-reported:
			t.Errorf("reported again: %+v", to)
		case <-deadline:
			if n, _ := c.calls.stats(); n != 1 {
				t.Errorf("%d calls remembered, want 1 (alive)", n)
			}
			return
		}
	}
}

// A WebRTC client and a plain phone are bridged by rtpengine's own
// options; the answer's receiver is known from the offer.
func TestWebRTCBridgeFlags(t *testing.T) {
	const browserSDP = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n" +
		"m=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n" +
		"a=fingerprint:sha-256 AB:CD\r\na=setup:actpass\r\na=mid:0\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\n"
	phone := sdpWith("198.51.100.9")
	toBrowser := map[string]any{"ICE": "force", "transport-protocol": "UDP/TLS/RTP/SAVPF", "SDES": []any{"off"}}
	toPhone := map[string]any{"ICE": "remove", "transport-protocol": "RTP/AVP"}
	with := func(m map[string]any, k string, v any) map[string]any {
		n := map[string]any{k: v}
		for k, v := range m {
			n[k] = v
		}
		return n
	}
	tests := []struct {
		name        string
		offer       media.Request
		wantOffer   map[string]any
		answer      media.Request
		wantAnswer  map[string]any
		offerFlag   string // a flag the offer must carry
		absentInAns []string
	}{
		{
			name:       "browser calls a phone",
			offer:      media.Request{CallID: "c1", FromTag: "a", SDP: []byte(browserSDP)},
			wantOffer:  with(toPhone, "rtcp-mux", []any{"demux"}),
			answer:     media.Request{CallID: "c1", FromTag: "b", ToTag: "a", SDP: phone},
			wantAnswer: toBrowser,
			// the offer's mux choice stands for the answer
			absentInAns: []string{"rtcp-mux"},
		},
		{
			name:        "phone calls a browser",
			offer:       media.Request{CallID: "c2", FromTag: "a", SDP: phone, ReceiverWebRTC: true},
			wantOffer:   with(toBrowser, "rtcp-mux", []any{"offer", "require"}),
			offerFlag:   "generate-mid",
			answer:      media.Request{CallID: "c2", FromTag: "b", ToTag: "a", SDP: []byte(browserSDP)},
			wantAnswer:  toPhone,
			absentInAns: []string{"rtcp-mux"},
		},
		{
			name:        "browser calls a browser: ICE both ways, profiles as they are",
			offer:       media.Request{CallID: "c3", FromTag: "a", SDP: []byte(browserSDP), ReceiverWebRTC: true},
			wantOffer:   map[string]any{"ICE": "force"},
			answer:      media.Request{CallID: "c3", FromTag: "b", ToTag: "a", SDP: []byte(browserSDP)},
			wantAnswer:  map[string]any{"ICE": "force"},
			absentInAns: []string{"transport-protocol", "rtcp-mux", "SDES"},
		},
		{
			name:        "two phones: the defaults",
			offer:       media.Request{CallID: "c4", FromTag: "a", SDP: phone},
			wantOffer:   map[string]any{"ICE": "remove"},
			answer:      media.Request{CallID: "c4", FromTag: "b", ToTag: "a", SDP: phone, ReceiverWebRTC: true},
			wantAnswer:  map[string]any{"ICE": "remove"},
			absentInAns: []string{"transport-protocol", "rtcp-mux", "SDES"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := newFakeNG(t, answer(okSDP))
			c, _ := newTestClient(t, Config{Address: srv.addr()})
			ctx := context.Background()
			if _, err := c.Offer(ctx, &tc.offer); err != nil {
				t.Fatal(err)
			}
			req := srv.wait(t).req
			for k, v := range tc.wantOffer {
				if !reflect.DeepEqual(req[k], v) {
					t.Errorf("offer %s = %#v, want %#v", k, req[k], v)
				}
			}
			flags, _ := req["flags"].([]any)
			if has := slices.Contains(flags, any("generate-mid")); has != (tc.offerFlag == "generate-mid") {
				t.Errorf("offer flags %v", flags)
			}
			if _, err := c.Answer(ctx, &tc.answer); err != nil {
				t.Fatal(err)
			}
			req = srv.wait(t).req
			for k, v := range tc.wantAnswer {
				if !reflect.DeepEqual(req[k], v) {
					t.Errorf("answer %s = %#v, want %#v", k, req[k], v)
				}
			}
			for _, k := range tc.absentInAns {
				if v, ok := req[k]; ok {
					t.Errorf("answer %s = %#v, want none", k, v)
				}
			}
		})
	}
}

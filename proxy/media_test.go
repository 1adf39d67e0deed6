package proxy

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/hlas-voip/hlas/media"
	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/transport"
)

// fakeEngine records what the proxy asks of a media engine and rewrites
// every SDP into one naming the engine and the request.
type fakeEngine struct {
	mu      sync.Mutex
	ops     []string
	reqs    []media.Request
	err     error
	deleted []string
}

func (f *fakeEngine) op(kind string, r *media.Request) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ops = append(f.ops, kind+" "+r.FromTag+">"+r.ToTag)
	f.reqs = append(f.reqs, *r)
	if f.err != nil {
		return nil, f.err
	}
	return []byte(fmt.Sprintf("v=0\r\nc=IN IP4 %s\r\nm=audio 40000 RTP/AVP 0\r\n", r.Advertise)), nil
}
func (f *fakeEngine) Offer(_ context.Context, r *media.Request) ([]byte, error) {
	return f.op("offer", r)
}
func (f *fakeEngine) Answer(_ context.Context, r *media.Request) ([]byte, error) {
	return f.op("answer", r)
}
func (f *fakeEngine) Delete(_ context.Context, id string) (media.Stats, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ops = append(f.ops, "delete")
	f.deleted = append(f.deleted, id)
	return media.Stats{Caller: media.Direction{Packets: 5}, Callee: media.Direction{Packets: 6}}, nil
}
func (f *fakeEngine) Close() error { return nil }

func (f *fakeEngine) log() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.ops, ", ")
}

// enderAcc is an Accounting that records EndCall.
type enderAcc struct {
	mu    sync.Mutex
	ended []string
	stats []string
}

func (a *enderAcc) MediaStats(callID string, st media.Stats) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.stats = append(a.stats, fmt.Sprintf("%s %d/%d", callID, st.Caller.Packets, st.Callee.Packets))
}

func (a *enderAcc) Forwarding(context.Context, *sip.Request, Forwarded) RequestObserver { return nil }
func (a *enderAcc) EndCall(e CallEnd) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.ended = append(a.ended, e.CallID+" "+e.CallerTag+" "+e.CalleeTag+" "+e.Why)
	return true
}

const sdpFrom = "v=0\r\no=- 1 1 IN IP4 %[1]s\r\ns=-\r\nc=IN IP4 %[1]s\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"

func withSDP(r *sip.Request, addr string) *sip.Request {
	r.ContentType = "application/sdp"
	r.Body = []byte(fmt.Sprintf(sdpFrom, addr))
	return r
}

func sdpResponse(addr string) func(*sip.Response) {
	return func(res *sip.Response) {
		res.ContentType = "application/sdp"
		res.Body = []byte(fmt.Sprintf(sdpFrom, addr))
	}
}

func TestMediaRelay(t *testing.T) {
	cfg := Config{Locations: map[string][]string{"bob@example.test": {"sip:bob@198.51.100.20:5062"}}}
	setup := func(t *testing.T, policy MediaPolicy) (*testEnv, *fakeEngine, *enderAcc) {
		eng, acc := &fakeEngine{}, &enderAcc{}
		e := newTestEnv(t, cfg, func(env *Env) {
			env.Media, env.MediaPolicy, env.Accounting = eng, policy, acc
		})
		return e, eng, acc
	}
	t.Run("caller behind NAT: offer, answer, BYE deletes", func(t *testing.T) {
		e, eng, acc := setup(t, "")
		// The caller's SDP names a private address; it came from callerIn.
		tx := e.serve(withSDP(request(t, sip.INVITE, "sip:bob@example.test"), "10.0.0.7"))
		out := e.net.requests(t)
		if len(out) != 1 {
			t.Fatalf("sent %s", uris(out))
		}
		if !strings.Contains(string(out[0].Body), "c=IN IP4 192.0.2.1") {
			t.Errorf("forwarded SDP not the relay's:\n%s", out[0].Body)
		}
		e.answer(out[0], 200, "b1", sdpResponse("198.51.100.20"))
		if got := tx.last(); got == nil || got.StatusCode != 200 || !strings.Contains(string(got.Body), "c=IN IP4 192.0.2.1") {
			t.Fatalf("caller's 200 SDP not the relay's: %v", got)
		}
		if got := eng.log(); got != "offer a1>, answer b1>a1" {
			t.Errorf("engine saw %q", got)
		}
		r := eng.reqs[0]
		if r.Source != callerIn.Addr() || r.Local != proxyUDP.Addr() || r.Advertise != proxyUDP.Addr() || r.CallID != "call-1@198.51.100.7" {
			t.Errorf("offer request %+v", r)
		}
		if a := eng.reqs[1]; a.Source != netip.MustParseAddr("198.51.100.20") {
			t.Errorf("answer source %v", a.Source)
		}
		bye := request(t, sip.BYE, "sip:bob@198.51.100.20:5062", "Route: <sip:192.0.2.1;lr>")
		bye.To.Params = ";tag=b1"
		bye.CSeq.Seq = 2
		e.serve(bye)
		if got := eng.log(); !strings.HasSuffix(got, ", delete") {
			t.Errorf("BYE did not delete: %q", got)
		}
		acc.mu.Lock()
		if got := strings.Join(acc.stats, ";"); got != "call-1@198.51.100.7 5/6" {
			t.Errorf("relay statistics for the record: %q", got)
		}
		acc.mu.Unlock()
	})
	t.Run("nobody behind NAT: not relayed", func(t *testing.T) {
		e, eng, _ := setup(t, MediaAuto)
		e.serve(withSDP(request(t, sip.INVITE, "sip:bob@example.test"), callerIn.Addr().String()))
		out := e.net.requests(t)
		if len(out) != 1 || !strings.Contains(string(out[0].Body), "c=IN IP4 198.51.100.7") {
			t.Fatalf("SDP changed: %s", out[0].Body)
		}
		e.answer(out[0], 200, "b1", sdpResponse("198.51.100.20"))
		if got := eng.log(); got != "" {
			t.Errorf("engine asked: %q", got)
		}
	})
	t.Run("never", func(t *testing.T) {
		e, eng, _ := setup(t, MediaNever)
		e.serve(withSDP(request(t, sip.INVITE, "sip:bob@example.test"), "10.0.0.7"))
		e.net.requests(t)
		if got := eng.log(); got != "" {
			t.Errorf("engine asked: %q", got)
		}
	})
	t.Run("always, late offer: offer in the 2xx, answer in the ACK", func(t *testing.T) {
		e, eng, _ := setup(t, MediaAlways)
		e.serve(request(t, sip.INVITE, "sip:bob@example.test"))
		out := e.net.requests(t)
		e.answer(out[0], 200, "b1", sdpResponse("198.51.100.20"))
		ack := withSDP(request(t, sip.ACK, "sip:bob@198.51.100.20:5062", "Route: <sip:192.0.2.1;lr>"), "198.51.100.7")
		ack.To.Params = ";tag=b1"
		ack.StampVia(callerIn)
		e.p.HandleACK(context.Background(), ack, Flow{Proto: transport.UDP, Local: proxyUDP, Remote: callerIn})
		acks := e.net.all(t)
		if len(acks) != 1 || !strings.Contains(string(acks[0].Body), "c=IN IP4 192.0.2.1") {
			t.Fatalf("ACK: %v", acks)
		}
		if got := eng.log(); got != "offer b1>a1, answer a1>b1" {
			t.Errorf("engine saw %q", got)
		}
	})
	t.Run("failed call deletes", func(t *testing.T) {
		e, eng, _ := setup(t, MediaAlways)
		tx := e.serve(withSDP(request(t, sip.INVITE, "sip:bob@example.test"), "10.0.0.7"))
		out := e.net.requests(t)
		e.answer(out[0], 486, "b1")
		if tx.last().StatusCode != 486 || eng.log() != "offer a1>, delete" {
			t.Errorf("caller got %q, engine saw %q", tx.codes(), eng.log())
		}
	})
	t.Run("no ports: 503", func(t *testing.T) {
		e, eng, _ := setup(t, MediaAlways)
		eng.err = fmt.Errorf("pool: %w", media.ErrNoPorts)
		tx := e.serve(withSDP(request(t, sip.INVITE, "sip:bob@example.test"), "10.0.0.7"))
		if out := e.net.requests(t); len(out) != 0 {
			t.Errorf("forwarded without a relay: %s", uris(out))
		}
		if res := tx.last(); res.StatusCode != 503 || res.Get("Retry-After") == "" {
			t.Errorf("caller got %q (Retry-After %q)", tx.codes(), res.Get("Retry-After"))
		}
	})
	t.Run("bad SDP: 400", func(t *testing.T) {
		e, eng, _ := setup(t, MediaAlways)
		eng.err = fmt.Errorf("x: %w", media.ErrBadSDP)
		tx := e.serve(withSDP(request(t, sip.INVITE, "sip:bob@example.test"), "10.0.0.7"))
		if tx.last().StatusCode != 400 {
			t.Errorf("caller got %q", tx.codes())
		}
	})
	t.Run("media timeout: BYE to both sides and the record", func(t *testing.T) {
		e, _, acc := setup(t, MediaAlways)
		e.serve(withSDP(request(t, sip.INVITE, "sip:bob@example.test"), "10.0.0.7"))
		out := e.net.requests(t)
		e.answer(out[0], 200, "b1", sdpResponse("198.51.100.20"), func(r *sip.Response) {
			r.Contact = []sip.Address{{URI: sip.URI{Scheme: "sip", User: "bob", Host: "198.51.100.20", Port: 5062}}}
		})
		e.p.EndMedia(media.Timeout{CallID: "call-1@198.51.100.7", CallerTag: "a1", CalleeTag: "b1",
			Stats: media.Stats{Caller: media.Direction{Packets: 7}}})
		byes := e.net.requests(t)
		if len(byes) != 2 {
			t.Fatalf("sent %s", uris(byes))
		}
		var got []string
		for _, b := range byes {
			got = append(got, fmt.Sprintf("%s %s from=%s to=%s cseq=%d", b.Method, b.URI.String(), b.From.Tag(), b.To.Tag(), b.CSeq.Seq))
		}
		want := []string{
			"BYE sip:alice@198.51.100.7:5070 from=b1 to=a1 cseq=1",
			"BYE sip:bob@198.51.100.20:5062 from=a1 to=b1 cseq=2",
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("BYEs:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		acc.mu.Lock()
		ended := strings.Join(acc.ended, ";")
		acc.mu.Unlock()
		if ended != "call-1@198.51.100.7 a1 b1 media-timeout" || strings.Join(acc.stats, ";") != "call-1@198.51.100.7 7/0" {
			t.Errorf("record: %q, statistics %q", ended, acc.stats)
		}
		// Answered, the BYEs end their transactions.
		for _, b := range byes {
			e.answer(b, 200, "")
		}
		if e.p.mcalls.m["call-1@198.51.100.7"] != nil {
			t.Error("call still tracked")
		}
	})
}

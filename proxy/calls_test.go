package proxy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hlas-voip/hlas/sip"
)

// killAcc is an Accounting whose observer records the Upstream of the
// responses going upstream, and which records EndCall.
type killAcc struct {
	enderAcc
	ups []Upstream
}

func TestTrackedCalls(t *testing.T) {
	cfg := Config{Locations: map[string][]string{"bob@example.test": {"sip:bob@198.51.100.20:5062"}}}
	setup := func(t *testing.T, track bool, policy MediaPolicy) (*testEnv, *fakeEngine, *enderAcc) {
		eng, acc := &fakeEngine{}, &enderAcc{}
		e := newTestEnv(t, cfg, func(env *Env) {
			env.TrackCalls, env.Accounting = track, acc
			if policy != "" {
				env.Media, env.MediaPolicy = eng, policy
			}
		})
		return e, eng, acc
	}
	const id = "call-1@198.51.100.7"
	bye := func(t *testing.T, e *testEnv) {
		b := request(t, sip.BYE, "sip:bob@198.51.100.20:5062", "Route: <sip:192.0.2.1;lr>")
		b.To.Params = ";tag=b1"
		b.CSeq.Seq = 2
		e.serve(b)
	}
	t.Run("off: nothing tracked", func(t *testing.T) {
		e, _, _ := setup(t, false, "")
		e.serve(request(t, sip.INVITE, "sip:bob@example.test"))
		if got := e.p.Calls(); len(got) != 0 {
			t.Errorf("tracked %+v", got)
		}
		if _, err := e.p.Hangup(id, "api"); !errors.Is(err, ErrNoCall) {
			t.Errorf("hangup: %v", err)
		}
	})
	t.Run("trying, early, confirmed, BYE forgets", func(t *testing.T) {
		e, eng, _ := setup(t, true, "")
		start := e.clock.Now()
		e.serve(request(t, sip.INVITE, "sip:bob@example.test"))
		out := e.net.requests(t)
		ci, ok := e.p.Call(id)
		if !ok || ci.State != CallTrying || ci.From != "sip:alice@example.test" || ci.To != "sip:bob@example.test" ||
			ci.Source != "udp:198.51.100.7:5070" || !ci.Started.Equal(start) || ci.Relayed {
			t.Fatalf("call %+v %v", ci, ok)
		}
		e.answer(out[0], 180, "b1")
		if ci, _ := e.p.Call(id); ci.State != CallEarly {
			t.Errorf("after 180: %q", ci.State)
		}
		e.clock.Advance(3 * time.Second)
		e.answer(out[0], 200, "b1")
		ci, _ = e.p.Call(id)
		if ci.State != CallConfirmed || !ci.Answered.Equal(start.Add(3*time.Second)) {
			t.Errorf("after 200: %+v", ci)
		}
		if got := e.p.Calls(); len(got) != 1 || got[0].CallID != id {
			t.Errorf("calls %+v", got)
		}
		bye(t, e)
		if _, ok := e.p.Call(id); ok {
			t.Error("still tracked after the BYE")
		}
		if got := eng.log(); got != "" {
			t.Errorf("engine asked for a call not relayed: %q", got)
		}
	})
	t.Run("rejected: forgotten", func(t *testing.T) {
		e, _, _ := setup(t, true, "")
		e.serve(request(t, sip.INVITE, "sip:bob@example.test"))
		e.answer(e.net.requests(t)[0], 486, "b1")
		if got := e.p.Calls(); len(got) != 0 {
			t.Errorf("tracked %+v", got)
		}
	})
	t.Run("without Record-Route: not tracked", func(t *testing.T) {
		c := cfg
		c.RecordRoute = boolp(false)
		e := newTestEnv(t, c, func(env *Env) { env.TrackCalls = true })
		e.serve(request(t, sip.INVITE, "sip:bob@example.test"))
		if got := e.p.Calls(); len(got) != 0 {
			t.Errorf("tracked %+v", got)
		}
	})
	t.Run("hang up an answered call: BYE to each side, record api", func(t *testing.T) {
		e, _, acc := setup(t, true, "")
		e.serve(request(t, sip.INVITE, "sip:bob@example.test"))
		out := e.net.requests(t)
		e.answer(out[0], 200, "b1", func(r *sip.Response) {
			r.Contact = []sip.Address{{URI: sip.URI{Scheme: "sip", User: "bob", Host: "198.51.100.20", Port: 5062}}}
		})
		// bob re-INVITEs (CSeq 7) from another address (RFC 3261 §12.2
		// target refresh): the BYE to alice goes above CSeq 7, the BYE
		// to bob to his new Contact, and alice's 200 moves her target.
		re := request(t, sip.INVITE, "sip:alice@198.51.100.7:5070", "Route: <sip:192.0.2.1;lr>")
		re.From.Params, re.To.Params = ";tag=b1", ";tag=a1"
		re.From.URI, re.To.URI = re.To.URI, re.From.URI
		re.Contact = []sip.Address{{URI: sip.URI{Scheme: "sip", User: "bob", Host: "198.51.100.21", Port: 5062}}}
		re.CSeq.Seq = 7
		e.serve(re)
		e.answer(e.net.requests(t)[0], 200, "", func(r *sip.Response) {
			r.Contact = []sip.Address{{URI: sip.URI{Scheme: "sip", User: "alice", Host: "198.51.100.7", Port: 5071}}}
		})
		action, err := e.p.Hangup(id, "api")
		if err != nil || action != HangupBye {
			t.Fatalf("hangup: %q %v", action, err)
		}
		byes := e.net.requests(t)
		var got []string
		for _, b := range byes {
			got = append(got, fmt.Sprintf("%s %s from=%s to=%s cseq=%d reason=%s", b.Method, b.URI.String(),
				b.From.Tag(), b.To.Tag(), b.CSeq.Seq, b.Get("Reason")))
		}
		want := []string{
			`BYE sip:alice@198.51.100.7:5071 from=b1 to=a1 cseq=8 reason=SIP;cause=200;text="hung up by the operator"`,
			`BYE sip:bob@198.51.100.21:5062 from=a1 to=b1 cseq=2 reason=SIP;cause=200;text="hung up by the operator"`,
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("BYEs:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		acc.mu.Lock()
		ended := strings.Join(acc.ended, ";")
		acc.mu.Unlock()
		if ended != id+" a1 b1 api" {
			t.Errorf("record: %q", ended)
		}
		if _, ok := e.p.Call(id); ok {
			t.Error("still tracked")
		}
		if _, err := e.p.Hangup(id, "api"); !errors.Is(err, ErrNoCall) {
			t.Errorf("second hangup: %v", err)
		}
	})
	t.Run("hang up a ringing call: CANCEL, 487 to the caller, killed upstream", func(t *testing.T) {
		ka := &killAcc{}
		e := newTestEnv(t, cfg, func(env *Env) { env.TrackCalls, env.Accounting = true, &upAcc{ka} })
		tx := e.serve(request(t, sip.INVITE, "sip:bob@example.test"))
		out := e.net.requests(t)
		e.answer(out[0], 180, "b1")
		action, err := e.p.Hangup(id, "api")
		if err != nil || action != HangupCancel {
			t.Fatalf("hangup: %q %v", action, err)
		}
		sent := e.net.requests(t)
		if len(sent) != 1 || sent[0].Method != sip.CANCEL {
			t.Fatalf("sent %s", uris(sent))
		}
		e.answer(sent[0], 200, "")
		e.answer(out[0], 487, "b1")
		if res := tx.last(); res.StatusCode != 487 {
			t.Errorf("caller got %q", tx.codes())
		}
		ka.mu.Lock()
		ups := ka.ups
		ka.mu.Unlock()
		if len(ups) != 1 || ups[0].Killed != "api" || ups[0].Cancelled {
			t.Errorf("upstream %+v", ups)
		}
		if _, ok := e.p.Call(id); ok {
			t.Error("still tracked")
		}
	})
	t.Run("a 2xx crossing the operator's CANCEL: forwarded, then BYEs", func(t *testing.T) {
		e, _, acc := setup(t, true, "")
		tx := e.serve(request(t, sip.INVITE, "sip:bob@example.test"))
		out := e.net.requests(t)
		e.answer(out[0], 180, "b1")
		if _, err := e.p.Hangup(id, "api"); err != nil {
			t.Fatal(err)
		}
		if sent := e.net.requests(t); len(sent) != 1 || sent[0].Method != sip.CANCEL {
			t.Fatalf("sent %s", uris(sent))
		}
		e.answer(out[0], 200, "b1", func(r *sip.Response) {
			r.Contact = []sip.Address{{URI: sip.URI{Scheme: "sip", User: "bob", Host: "198.51.100.20", Port: 5062}}}
		})
		if res := tx.last(); res.StatusCode != 200 {
			t.Fatalf("caller got %q", tx.codes())
		}
		byes := e.net.requests(t)
		if len(byes) != 2 || byes[0].Method != sip.BYE || byes[1].Method != sip.BYE ||
			byes[0].URI.Host != "198.51.100.7" || byes[1].URI.Host != "198.51.100.20" {
			t.Fatalf("after the 2xx sent %s", uris(byes))
		}
		acc.mu.Lock()
		defer acc.mu.Unlock()
		if strings.Join(acc.ended, ";") != id+" a1 b1 api" {
			t.Errorf("record %q", acc.ended)
		}
	})
	t.Run("the caller's CANCEL first: the operator's cancel changes nothing", func(t *testing.T) {
		ka := &killAcc{}
		e := newTestEnv(t, cfg, func(env *Env) { env.TrackCalls, env.Accounting = true, &upAcc{ka} })
		tx := e.serve(request(t, sip.INVITE, "sip:bob@example.test"))
		out := e.net.requests(t)
		e.answer(out[0], 180, "b1")
		tx.cancel()
		if _, err := e.p.Hangup(id, "api"); err != nil {
			t.Fatal(err)
		}
		for _, r := range e.net.requests(t) {
			if r.Method == sip.CANCEL {
				e.answer(r, 200, "")
			}
		}
		e.answer(out[0], 487, "b1")
		ka.mu.Lock()
		defer ka.mu.Unlock()
		if len(ka.ups) != 1 || ka.ups[0].Killed != "" || !ka.ups[0].Cancelled {
			t.Errorf("upstream %+v", ka.ups)
		}
	})
	t.Run("a BYE of another fork's dialog leaves the call", func(t *testing.T) {
		e, _, _ := setup(t, true, "")
		e.serve(request(t, sip.INVITE, "sip:bob@example.test"))
		e.answer(e.net.requests(t)[0], 200, "b1")
		other := request(t, sip.BYE, "sip:bob@198.51.100.20:5062", "Route: <sip:192.0.2.1;lr>")
		other.To.Params = ";tag=b2"
		other.CSeq.Seq = 2
		e.serve(other)
		if _, ok := e.p.Call(id); !ok {
			t.Fatal("the answered dialog was forgotten for another's BYE")
		}
		bye(t, e)
		if _, ok := e.p.Call(id); ok {
			t.Error("still tracked after its own BYE")
		}
	})
	t.Run("a target refresh in another fork's dialog moves nothing", func(t *testing.T) {
		e, _, _ := setup(t, true, "")
		e.serve(request(t, sip.INVITE, "sip:bob@example.test"))
		e.answer(e.net.requests(t)[0], 200, "b1", func(r *sip.Response) {
			r.Contact = []sip.Address{{URI: sip.URI{Scheme: "sip", User: "bob", Host: "198.51.100.20", Port: 5062}}}
		})
		// A re-INVITE from the fork that answered b2 (same Call-ID, its own
		// tags) with a new Contact; its 2xx must not move b1's dialog.
		re := request(t, sip.INVITE, "sip:alice@198.51.100.7:5070", "Route: <sip:192.0.2.1;lr>")
		re.From.Params, re.To.Params = ";tag=b2", ";tag=a1"
		re.From.URI, re.To.URI = re.To.URI, re.From.URI
		re.Contact = []sip.Address{{URI: sip.URI{Scheme: "sip", User: "carol", Host: "198.51.100.66", Port: 5062}}}
		re.CSeq.Seq = 7
		e.serve(re)
		e.answer(e.net.requests(t)[0], 200, "", func(r *sip.Response) {
			r.Contact = []sip.Address{{URI: sip.URI{Scheme: "sip", User: "alice", Host: "198.51.100.99", Port: 5071}}}
		})
		if _, err := e.p.Hangup(id, "api"); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, b := range e.net.requests(t) {
			got = append(got, b.URI.String())
		}
		want := "sip:alice@198.51.100.7:5070 sip:bob@198.51.100.20:5062"
		if strings.Join(got, " ") != want {
			t.Errorf("BYEs to %q, want %q (the targets of the dialog that was tracked)", strings.Join(got, " "), want)
		}
	})
	t.Run("relayed and tracked: hang-up deletes the media", func(t *testing.T) {
		e, eng, acc := setup(t, true, MediaAlways)
		e.serve(withSDP(request(t, sip.INVITE, "sip:bob@example.test"), "10.0.0.7"))
		out := e.net.requests(t)
		e.answer(out[0], 200, "b1", sdpResponse("198.51.100.20"))
		if ci, _ := e.p.Call(id); !ci.Relayed {
			t.Errorf("not relayed: %+v", ci)
		}
		if _, err := e.p.Hangup(id, "api"); err != nil {
			t.Fatal(err)
		}
		if got := eng.log(); !strings.HasSuffix(got, ", delete") {
			t.Errorf("engine saw %q", got)
		}
		acc.mu.Lock()
		defer acc.mu.Unlock()
		if len(acc.stats) != 1 || len(acc.ended) != 1 {
			t.Errorf("stats %q ended %q", acc.stats, acc.ended)
		}
	})
	t.Run("tracked, not relayed: ACK's SDP untouched", func(t *testing.T) {
		e, eng, _ := setup(t, true, MediaAuto)
		e.serve(withSDP(request(t, sip.INVITE, "sip:bob@example.test"), callerIn.Addr().String()))
		out := e.net.requests(t)
		e.answer(out[0], 200, "b1", sdpResponse("198.51.100.20"))
		bye(t, e)
		if got := eng.log(); got != "" {
			t.Errorf("engine asked: %q", got)
		}
	})
	t.Run("old calls swept", func(t *testing.T) {
		e, _, _ := setup(t, true, "")
		e.serve(request(t, sip.INVITE, "sip:bob@example.test"))
		e.answer(e.net.requests(t)[0], 200, "b1")
		e.clock.Advance(DefaultCallMaxAge + time.Minute)
		second := request(t, sip.INVITE, "sip:bob@example.test")
		second.CallID = "call-2@198.51.100.7"
		e.serve(second)
		got := e.p.Calls()
		if len(got) != 1 || got[0].CallID != "call-2@198.51.100.7" {
			t.Errorf("calls %+v", got)
		}
	})
}

// upAcc hands killAcc an observer per request that records Upstream.
type upAcc struct{ k *killAcc }

func (a *upAcc) Forwarding(ctx context.Context, req *sip.Request, info Forwarded) RequestObserver {
	return upObs{a.k}
}

type upObs struct{ k *killAcc }

func (o upObs) Respond(res *sip.Response, up Upstream, send func()) {
	o.k.mu.Lock()
	o.k.ups = append(o.k.ups, up)
	o.k.mu.Unlock()
	send()
}

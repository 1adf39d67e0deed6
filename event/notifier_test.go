package event

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/transaction"
)

// RFC 6665 §4.2.1.1, §4.2.1.2: a new subscription is answered 200 with
// Expires and Contact, and a NOTIFY with the state follows at once, inside
// the dialog the 200 made.
func TestNewSubscriptionActive(t *testing.T) {
	r := newRig(t, Config{}, nil)
	r.snd.auto = 200
	r.pkg.set("bob@example.com", 7)
	tx := &fakeTx{}
	var notifiedBefore200 bool
	r.n.env.Sender = senderFunc(func(req *sip.Request, f Flow, done func(*sip.Response, error)) error {
		tx.mu.Lock()
		notifiedBefore200 = len(tx.res) == 0
		tx.mu.Unlock()
		return r.snd.SendRequest(req, f, done)
	})
	req := subscribeReq(t, "c1", "ft1", 1)
	r.n.HandleSUBSCRIBE(context.Background(), tx, req, r.flow, "alice@example.com", "bob@example.com")
	res := tx.final(t)
	if res.StatusCode != 200 || tx.stat[0] {
		t.Fatalf("got %d (stateless %v), want a stateful 200", res.StatusCode, tx.stat[0])
	}
	if res.Get("Expires") != "3600" {
		t.Errorf("Expires %q, want 3600 (the package default)", res.Get("Expires"))
	}
	if len(res.Contact) != 1 || res.Contact[0].URI.Host != "192.0.2.1" {
		t.Errorf("Contact %v, want the server's for the flow", res.Contact)
	}
	tag := res.To.Tag()
	if tag == "" {
		t.Fatal("200 without To tag")
	}
	if notifiedBefore200 {
		t.Error("NOTIFY sent before the 200")
	}
	if r.snd.count() != 1 {
		t.Fatalf("%d NOTIFYs, want 1", r.snd.count())
	}
	s := r.snd.last(t)
	n := s.req
	checks := []struct{ what, got, want string }{
		{"method", n.Method, "NOTIFY"},
		{"Request-URI", n.URI.String(), "sip:alice@192.0.2.10:5060"},
		{"Call-ID", n.CallID, "c1"},
		{"From tag", n.From.Tag(), tag},
		{"From URI", n.From.URI.String(), "sip:bob@example.com"},
		{"To tag", n.To.Tag(), "ft1"},
		{"To URI", n.To.URI.String(), "sip:alice@example.com"},
		{"CSeq method", n.CSeq.Method, "NOTIFY"},
		{"Event", n.Get("Event"), "presence"},
		{"Subscription-State", subState(n), "active;expires=3600"},
		{"Content-Type", n.ContentType, "application/presence+xml"},
		{"body", string(n.Body), "bob@example.com v7"},
		{"User-Agent", n.Get("User-Agent"), "hlas-test"},
		{"Contact", n.Contact[0].URI.Host, "192.0.2.1"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("NOTIFY %s = %q, want %q", c.what, c.got, c.want)
		}
	}
	if n.MaxForwards != 70 || len(n.Route) != 0 {
		t.Errorf("Max-Forwards %d, Route %v", n.MaxForwards, n.Route)
	}
	if s.flow != r.flow {
		t.Errorf("flow %+v, want the SUBSCRIBE's", s.flow)
	}
	if r.n.Count() != 1 {
		t.Errorf("Count %d, want 1", r.n.Count())
	}
	if got := r.pkg.full; len(got) != 1 || !got[0] {
		t.Errorf("Document full flags %v, want [true]", got)
	}
}

type senderFunc func(*sip.Request, Flow, func(*sip.Response, error)) error

func (f senderFunc) SendRequest(r *sip.Request, fl Flow, d func(*sip.Response, error)) error {
	return f(r, fl, d)
}

// RFC 6665 §4.1.3, §4.2.1.3: a subscription awaiting authorization gets
// a NOTIFY "pending" without state; when authorized, one "active" with
// it; when rejected, "terminated;reason=rejected".
func TestPendingThenAuthorized(t *testing.T) {
	r := newRig(t, Config{}, nil)
	r.snd.auto = 200
	r.pkg.decide("alice@example.com", Pending)
	r.subscribe(t, "c1")
	n := r.snd.last(t).req
	if subState(n) != "pending;expires=3600" || n.Body != nil || n.ContentType != "" {
		t.Fatalf("pending NOTIFY: %q, body %q type %q; want pending without body", subState(n), n.Body, n.ContentType)
	}
	r.n.Changed("presence", "bob@example.com")
	if r.snd.count() != 1 {
		t.Fatal("a pending subscription got a NOTIFY for a state change")
	}
	w := r.n.Watchers("presence", "bob@example.com")
	if len(w) != 1 || w[0].State != StatePending || w[0].Watcher != "alice@example.com" || w[0].Event != "subscribe" || w[0].Display != "Alice" {
		t.Fatalf("Watchers %+v", w)
	}
	r.clock.Advance(10 * time.Second)
	r.pkg.decide("alice@example.com", Active)
	r.n.Reauthorize("presence", "bob@example.com")
	n = r.snd.last(t).req
	if r.snd.count() != 2 || subState(n) != "active;expires=3590" || string(n.Body) != "bob@example.com v0" {
		t.Fatalf("after approval: %d NOTIFYs, last %q %q", r.snd.count(), subState(n), n.Body)
	}
	w = r.n.Watchers("presence", "bob@example.com")
	if w[0].State != StateActive || w[0].Event != "approved" || w[0].Duration != 10*time.Second {
		t.Errorf("Watchers after approval %+v", w[0])
	}
	r.pkg.decide("alice@example.com", Rejected)
	r.n.Reauthorize("presence", "bob@example.com")
	n = r.snd.last(t).req
	if subState(n) != "terminated;reason=rejected" || n.Body != nil {
		t.Fatalf("after rejection: %q body %q", subState(n), n.Body)
	}
	if r.n.Count() != 0 || len(r.n.Watchers("presence", "bob@example.com")) != 0 {
		t.Error("rejected subscription still held")
	}
}

// RFC 6665 §4.2.1.3: a watcher the package refuses gets 403.
func TestRejectedIs403(t *testing.T) {
	r := newRig(t, Config{}, nil)
	r.pkg.decide("", Rejected)
	res := r.do(t, subscribeReq(t, "c1", "f1", 1), "")
	if res.StatusCode != 403 || r.snd.count() != 0 || r.n.Count() != 0 {
		t.Fatalf("got %d, %d NOTIFYs, %d subs", res.StatusCode, r.snd.count(), r.n.Count())
	}
}

// RFC 6665 §4.1.2.2, §4.2.1.2: a refresh sets a new expiry and gets a
// NOTIFY with the current state; SUBSCRIBE is a target refresh request.
func TestRefresh(t *testing.T) {
	r := newRig(t, Config{}, nil)
	r.snd.auto = 200
	tag := r.subscribe(t, "c1")
	first := r.snd.last(t).req
	r.clock.Advance(10 * time.Minute)
	r.pkg.set("bob@example.com", 3)
	req := subscribeReq(t, "c1", "ft-c1", 2, "To-tag: "+tag, "Expires: 7200")
	req.Contact[0].URI.Host = "198.51.100.7"
	res := r.do(t, req, "alice@example.com")
	if res.StatusCode != 200 || res.Get("Expires") != "7200" || res.To.Tag() != tag {
		t.Fatalf("refresh: %d Expires %q tag %q", res.StatusCode, res.Get("Expires"), res.To.Tag())
	}
	n := r.snd.last(t).req
	if r.snd.count() != 2 || subState(n) != "active;expires=7200" || string(n.Body) != "bob@example.com v3" {
		t.Fatalf("refresh NOTIFY %q %q (%d sent)", subState(n), n.Body, r.snd.count())
	}
	if n.CSeq.Seq != first.CSeq.Seq+1 {
		t.Errorf("CSeq %d after %d", n.CSeq.Seq, first.CSeq.Seq)
	}
	if n.URI.Host != "198.51.100.7" {
		t.Errorf("Request-URI %s, want the refreshed Contact", n.URI.String())
	}
	// The old expiry (50 minutes on) passes without an end.
	r.clock.Advance(50*time.Minute + time.Second)
	if r.n.Count() != 1 || r.snd.count() != 2 {
		t.Fatalf("ended at the old expiry: %d subs, %d NOTIFYs", r.n.Count(), r.snd.count())
	}
	r.clock.Advance(7200*time.Second - 50*time.Minute - time.Second - time.Millisecond)
	if r.n.Count() != 1 {
		t.Fatal("ended before the new expiry")
	}
	r.clock.Advance(time.Millisecond)
	if r.n.Count() != 0 || subState(r.snd.last(t).req) != "terminated;reason=timeout" {
		t.Fatalf("not ended at the new expiry: %d subs, last %q", r.n.Count(), subState(r.snd.last(t).req))
	}
}

// RFC 6665 §4.2.1.4: Expires: 0 in the dialog ends the subscription with
// a final NOTIFY "terminated" after the 200; the dialog is gone after.
func TestUnsubscribe(t *testing.T) {
	r := newRig(t, Config{}, nil)
	r.snd.auto = 200
	tag := r.subscribe(t, "c1")
	res := r.do(t, subscribeReq(t, "c1", "ft-c1", 2, "To-tag: "+tag, "Expires: 0"), "alice@example.com")
	if res.StatusCode != 200 || res.Get("Expires") != "0" {
		t.Fatalf("unsubscribe: %d Expires %q", res.StatusCode, res.Get("Expires"))
	}
	n := r.snd.last(t).req
	if r.snd.count() != 2 || subState(n) != "terminated;reason=timeout" || string(n.Body) != "bob@example.com v0" {
		t.Fatalf("final NOTIFY %q %q", subState(n), n.Body)
	}
	if r.n.Count() != 0 {
		t.Error("subscription still held")
	}
	res = r.do(t, subscribeReq(t, "c1", "ft-c1", 3, "To-tag: "+tag), "alice@example.com")
	if res.StatusCode != 481 {
		t.Errorf("SUBSCRIBE after the end: %d, want 481", res.StatusCode)
	}
	if r.clock.Pending() != 0 {
		t.Errorf("%d timers left", r.clock.Pending())
	}
}

// RFC 6665 §4.2.2: a subscription not refreshed ends at its expiry with
// terminated;reason=timeout.
func TestExpiry(t *testing.T) {
	r := newRig(t, Config{}, nil)
	r.snd.auto = 200
	r.subscribe(t, "c1", "Expires: 120")
	r.clock.Advance(119 * time.Second)
	if r.snd.count() != 1 || r.n.Count() != 1 {
		t.Fatal("ended early")
	}
	r.clock.Advance(time.Second)
	n := r.snd.last(t).req
	if r.snd.count() != 2 || subState(n) != "terminated;reason=timeout" {
		t.Fatalf("at expiry: %d NOTIFYs, last %q", r.snd.count(), subState(n))
	}
	if r.n.Count() != 0 || r.clock.Pending() != 0 {
		t.Errorf("%d subs, %d timers after the expiry", r.n.Count(), r.clock.Pending())
	}
}

// Refusals of a new SUBSCRIBE, each with the header that says why.
func TestRefusals(t *testing.T) {
	msum := newPkg("message-summary")
	for _, tc := range []struct {
		name   string
		extra  []string
		cfg    Config
		code   int
		header string
		value  string
	}{
		{"RFC 6665 §4.2.1.1 unknown package → 489 with Allow-Events", []string{"Event: dialog"}, Config{}, 489, "Allow-Events", "presence, message-summary"},
		{"RFC 6665 §8.2.1 no Event → 400", []string{"No-Event"}, Config{}, 400, "", ""},
		{"RFC 6665 §4.2.1.1 Expires below the minimum → 423 with Min-Expires", []string{"Expires: 30"}, Config{}, 423, "Min-Expires", "60"},
		{"423 with a configured minimum", []string{"Expires: 100"}, Config{MinExpires: 300 * time.Second}, 423, "Min-Expires", "300"},
		{"malformed Expires → 400", []string{"Expires: soon"}, Config{}, 400, "", ""},
		{"RFC 6665 §4.2.1.1 no acceptable body → 406 with Accept", []string{"Accept: application/sdp"}, Config{}, 406, "Accept", "application/presence+xml, text/plain"},
		{"q=0 refuses the only match → 406", []string{"Accept: application/presence+xml;q=0, text/html"}, Config{}, 406, "Accept", "application/presence+xml, text/plain"},
		{"MaxSubscriptions reached → 503 with Retry-After", nil, Config{MaxSubscriptions: -1}, 503, "Retry-After", retryAfter},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			full := cfg.MaxSubscriptions < 0
			if full {
				cfg.MaxSubscriptions = 1
			}
			r := newRig(t, cfg, nil, newPkg("presence"), msum)
			r.snd.auto = 200
			if full {
				r.subscribe(t, "other")
			}
			sentBefore := r.snd.count()
			tx := &fakeTx{}
			r.n.HandleSUBSCRIBE(context.Background(), tx, subscribeReq(t, "c1", "f1", 1, tc.extra...), r.flow, "alice@example.com", "bob@example.com")
			res := tx.final(t)
			if res.StatusCode != tc.code {
				t.Fatalf("got %d %s, want %d", res.StatusCode, res.Reason, tc.code)
			}
			if tc.header != "" && res.Get(tc.header) != tc.value {
				t.Errorf("%s: %q, want %q", tc.header, res.Get(tc.header), tc.value)
			}
			if res.To.Tag() == "" {
				t.Error("final response without To tag")
			}
			if r.snd.count() != sentBefore {
				t.Error("a refused SUBSCRIBE got a NOTIFY")
			}
		})
	}
}

// RFC 3261 §20.1 as RFC 6665 uses it: the watcher's Accept picks the
// body types, in the package's order of preference.
func TestAcceptNegotiation(t *testing.T) {
	r := newRig(t, Config{}, nil)
	r.snd.auto = 200
	r.subscribe(t, "c1", "Accept: text/plain, application/*;q=0")
	if n := r.snd.last(t).req; n.ContentType != "text/plain" {
		t.Errorf("Content-Type %q, want text/plain", n.ContentType)
	}
}

// A SUBSCRIBE with a To tag matching no dialog gets 481 (RFC 6665
// §4.2.1.2); one with a lower CSeq than the last gets 500 (RFC 3261
// §12.2.2).
func TestInDialogErrors(t *testing.T) {
	r := newRig(t, Config{}, nil)
	r.snd.auto = 200
	tag := r.subscribe(t, "c1")
	for _, tc := range []struct {
		name string
		req  *sip.Request
		code int
	}{
		{"unknown tag", subscribeReq(t, "c1", "ft-c1", 2, "To-tag: nosuch"), 481},
		{"other Call-ID", subscribeReq(t, "c2", "ft-c1", 2, "To-tag: "+tag), 481},
		{"other From tag", subscribeReq(t, "c1", "other", 2, "To-tag: "+tag), 481},
		{"fetch of an unknown id in the dialog", subscribeReq(t, "c1", "ft-c1", 2, "To-tag: "+tag, "Event: presence;id=9", "Expires: 0"), 481},
		{"CSeq out of order", subscribeReq(t, "c1", "ft-c1", 0, "To-tag: "+tag), 500},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if res := r.do(t, tc.req, "alice@example.com"); res.StatusCode != tc.code {
				t.Errorf("got %d, want %d", res.StatusCode, tc.code)
			}
		})
	}
	if r.n.Count() != 1 {
		t.Errorf("Count %d, want the one subscription untouched", r.n.Count())
	}
}

// RFC 6665 §4.2.2 (and RFC 5057): a NOTIFY answered 481 or 408, timing
// out or failing in the transport ends the subscription, without a final
// NOTIFY; a 500 does not, but three in a row do.
func TestNotifyFailureEnds(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer func(r *rig)
		ends   bool
	}{
		{"481", func(r *rig) { r.snd.answer(0, 481) }, true},
		{"408", func(r *rig) { r.snd.answer(0, 408) }, true},
		{"489", func(r *rig) { r.snd.answer(0, 489) }, true},
		{"transaction timeout", func(r *rig) { r.snd.all()[0].done(nil, transaction.ErrTimeout) }, true},
		{"transport error", func(r *rig) { r.snd.all()[0].done(nil, errTransport) }, true},
		{"no outcome within NotifyTimeout", func(r *rig) { r.clock.Advance(DefaultNotifyTimeout) }, true},
		{"one 500", func(r *rig) { r.snd.answer(0, 500) }, false},
		{"2xx", func(r *rig) { r.snd.answer(0, 200) }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, Config{}, nil)
			r.subscribe(t, "c1")
			tc.answer(r)
			if got := r.n.Count() == 0; got != tc.ends {
				t.Fatalf("ended %v, want %v", got, tc.ends)
			}
			if r.n.InFlight() != 0 {
				t.Errorf("InFlight %d", r.n.InFlight())
			}
			r.clock.Advance(DefaultMinInterval)
			r.n.Changed("presence", "bob@example.com")
			want := 1
			if !tc.ends {
				want = 2 // the 500 is retried with the state; the 2xx leaves a change to send
			}
			if r.snd.count() != want {
				t.Errorf("%d NOTIFYs after, want %d", r.snd.count(), want)
			}
			if tc.ends {
				r.clock.Advance(2 * time.Hour)
				if r.snd.count() != 1 {
					t.Error("a NOTIFY went to an ended subscription")
				}
			}
		})
	}
}

func TestNotifyFailsThreeTimes(t *testing.T) {
	r := newRig(t, Config{}, nil)
	r.subscribe(t, "c1")
	for i := range 3 {
		if r.n.Count() != 1 {
			t.Fatalf("ended after %d failures", i)
		}
		r.snd.answer(r.snd.count()-1, 503)
		r.clock.Advance(DefaultMinInterval) // the retry waits out the rate limit
	}
	if r.n.Count() != 0 || r.snd.count() != 3 {
		t.Fatalf("after three 503s: %d subs, %d NOTIFYs", r.n.Count(), r.snd.count())
	}
}

// A Sender refusing at once (SendRequest error) is a transport failure.
func TestSendRequestError(t *testing.T) {
	r := newRig(t, Config{}, nil)
	r.snd.err = errTransport
	r.subscribe(t, "c1")
	if r.n.Count() != 0 || r.n.InFlight() != 0 {
		t.Fatalf("%d subs, %d in flight", r.n.Count(), r.n.InFlight())
	}
}

// RFC 6665 §4.1.2.1 (rate control): ten changes in one second make one
// NOTIFY at once and one more when the interval has passed, carrying the
// latest state.
func TestRateLimitCoalesces(t *testing.T) {
	r := newRig(t, Config{}, nil)
	r.snd.auto = 200
	r.subscribe(t, "c1")
	r.clock.Advance(DefaultMinInterval)
	start := r.clock.Now()
	for v := 1; v <= 10; v++ {
		r.pkg.set("bob@example.com", v)
		r.n.Changed("presence", "bob@example.com")
		r.clock.Advance(100 * time.Millisecond)
	}
	all := r.snd.all()
	if len(all) != 2 || string(all[1].req.Body) != "bob@example.com v1" {
		t.Fatalf("%d NOTIFYs in the burst, want the initial one and one at once", len(all))
	}
	r.clock.Advance(start.Add(DefaultMinInterval).Sub(r.clock.Now()) - time.Millisecond)
	if r.snd.count() != 2 {
		t.Fatal("a NOTIFY before the interval passed")
	}
	r.clock.Advance(time.Millisecond)
	all = r.snd.all()
	if len(all) != 3 || string(all[2].req.Body) != "bob@example.com v10" {
		t.Fatalf("%d NOTIFYs, last %q; want 3 with v10", len(all), all[len(all)-1].req.Body)
	}
	if all[2].req.CSeq.Seq != all[1].req.CSeq.Seq+1 {
		t.Error("CSeq does not increment")
	}
	if got := r.pkg.full; got[1] || got[2] {
		t.Errorf("changes rendered as full state: %v", got)
	}
	if c := testutil.ToFloat64(r.n.m.coalesced.WithLabelValues("presence")); c != 8 {
		t.Errorf("coalesced %v, want 8", c)
	}
	r.clock.Advance(time.Hour)
	if r.snd.count() != 4 || subState(r.snd.last(t).req) != "terminated;reason=timeout" {
		t.Error("nothing more than the expiry was to come")
	}
}

// A NOTIFY is not sent while the previous one of the subscription is in
// flight; the state is sent when it is answered (and the rate allows).
func TestOneNotifyInFlight(t *testing.T) {
	r := newRig(t, Config{}, nil)
	tag := r.subscribe(t, "c1")
	r.clock.Advance(DefaultMinInterval)
	r.pkg.set("bob@example.com", 2)
	r.n.Changed("presence", "bob@example.com")
	if r.snd.count() != 1 {
		t.Fatal("second NOTIFY while the first is in flight")
	}
	// Unsubscribing meanwhile: the final NOTIFY waits too.
	res := r.do(t, subscribeReq(t, "c1", "ft-c1", 2, "To-tag: "+tag, "Expires: 0"), "alice@example.com")
	if res.StatusCode != 200 || r.snd.count() != 1 {
		t.Fatalf("unsubscribe %d, %d NOTIFYs", res.StatusCode, r.snd.count())
	}
	r.snd.answer(0, 200)
	if r.snd.count() != 2 || subState(r.snd.last(t).req) != "terminated;reason=timeout" || string(r.snd.last(t).req.Body) != "bob@example.com v2" {
		t.Fatalf("after the answer: %d NOTIFYs, last %q", r.snd.count(), subState(r.snd.last(t).req))
	}
}

// RFC 6665 §4.4.3: a new SUBSCRIBE with Expires: 0 fetches the state: 200,
// one NOTIFY with it and terminated;reason=timeout, nothing kept.
func TestFetch(t *testing.T) {
	st := newStore()
	r := newRig(t, Config{}, st)
	r.snd.auto = 200
	r.pkg.set("bob@example.com", 5)
	res := r.do(t, subscribeReq(t, "c1", "f1", 1, "Expires: 0"), "alice@example.com")
	if res.StatusCode != 200 || res.Get("Expires") != "0" {
		t.Fatalf("fetch: %d Expires %q", res.StatusCode, res.Get("Expires"))
	}
	n := r.snd.last(t).req
	if r.snd.count() != 1 || subState(n) != "terminated;reason=timeout" || string(n.Body) != "bob@example.com v5" {
		t.Fatalf("fetch NOTIFY %q %q", subState(n), n.Body)
	}
	if r.n.Count() != 0 || st.puts != 0 || r.clock.Pending() != 0 {
		t.Errorf("fetch kept state: %d subs, %d puts, %d timers", r.n.Count(), st.puts, r.clock.Pending())
	}
}

// RFC 6665 §4.5.2, §8.2.1: the Event id tells apart subscriptions in one
// dialog; they share its CSeq space.
func TestEventID(t *testing.T) {
	r := newRig(t, Config{}, nil)
	r.snd.auto = 200
	tag := r.subscribe(t, "c1", "Event: presence;id=1")
	if ev := r.snd.last(t).req.Get("Event"); ev != "presence;id=1" {
		t.Fatalf("Event %q", ev)
	}
	res := r.do(t, subscribeReq(t, "c1", "ft-c1", 2, "To-tag: "+tag, "Event: presence;id=2"), "alice@example.com")
	if res.StatusCode != 200 || res.To.Tag() != tag {
		t.Fatalf("second subscription in the dialog: %d", res.StatusCode)
	}
	all := r.snd.all()
	if len(all) != 2 || all[1].req.Get("Event") != "presence;id=2" || all[1].req.CSeq.Seq != all[0].req.CSeq.Seq+1 {
		t.Fatalf("second NOTIFY: Event %q CSeq %d after %d", all[1].req.Get("Event"), all[1].req.CSeq.Seq, all[0].req.CSeq.Seq)
	}
	if r.n.Count() != 2 {
		t.Fatalf("Count %d", r.n.Count())
	}
	res = r.do(t, subscribeReq(t, "c1", "ft-c1", 3, "To-tag: "+tag, "Event: presence;id=1", "Expires: 0"), "alice@example.com")
	if res.StatusCode != 200 || r.snd.last(t).req.Get("Event") != "presence;id=1" || subState(r.snd.last(t).req) != "terminated;reason=timeout" {
		t.Fatal("unsubscribing id=1")
	}
	res = r.do(t, subscribeReq(t, "c1", "ft-c1", 4, "To-tag: "+tag, "Event: presence;id=2", "Expires: 600"), "alice@example.com")
	if res.StatusCode != 200 || subState(r.snd.last(t).req) != "active;expires=600" || r.n.Count() != 1 {
		t.Fatalf("refresh of id=2 in the dialog: %d, %q", res.StatusCode, subState(r.snd.last(t).req))
	}
}

// RFC 3261 §12.2.1.1: NOTIFYs follow the route set of the SUBSCRIBE's
// Record-Route, loose or strict.
func TestRouteSet(t *testing.T) {
	for _, tc := range []struct {
		name, rr  string
		uri       string
		routeHost []string
	}{
		{"loose", "Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>", "sip:alice@192.0.2.10:5060", []string{"p1.example.com", "p2.example.com"}},
		{"strict", "Record-Route: <sip:p1.example.com;method=SUBSCRIBE>", "sip:p1.example.com", []string{"192.0.2.10"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, Config{}, nil)
			r.snd.auto = 200
			r.subscribe(t, "c1", tc.rr)
			n := r.snd.last(t).req
			if n.URI.String() != tc.uri {
				t.Errorf("Request-URI %s, want %s", n.URI.String(), tc.uri)
			}
			var hosts []string
			for _, a := range n.Route {
				hosts = append(hosts, a.URI.Host)
			}
			if strings.Join(hosts, ",") != strings.Join(tc.routeHost, ",") {
				t.Errorf("Route %v, want %v", hosts, tc.routeHost)
			}
		})
	}
}

// Config.MaxPending caps NOTIFYs in flight; the others wait their turn.
func TestMaxPending(t *testing.T) {
	r := newRig(t, Config{MaxPending: 1}, nil)
	r.snd.auto = 200
	r.subscribe(t, "c1")
	r.subscribe(t, "c2")
	r.subscribe(t, "c3")
	r.snd.auto = 0
	r.clock.Advance(DefaultMinInterval)
	r.n.Changed("presence", "bob@example.com")
	if r.snd.count() != 4 || r.n.InFlight() != 1 || r.n.Waiting() != 2 {
		t.Fatalf("%d sent, %d in flight, %d waiting; want 4, 1, 2", r.snd.count(), r.n.InFlight(), r.n.Waiting())
	}
	r.snd.answer(3, 200)
	if r.snd.count() != 5 || r.n.Waiting() != 1 {
		t.Fatalf("after an answer: %d sent, %d waiting", r.snd.count(), r.n.Waiting())
	}
	r.snd.answer(4, 200)
	r.snd.answer(5, 200)
	if r.snd.count() != 6 || r.n.Waiting() != 0 || r.n.InFlight() != 0 {
		t.Fatalf("at the end: %d sent, %d waiting, %d in flight", r.snd.count(), r.n.Waiting(), r.n.InFlight())
	}
	seen := map[string]bool{}
	for _, s := range r.snd.all()[3:] {
		seen[s.req.CallID] = true
	}
	if len(seen) != 3 {
		t.Errorf("waiting NOTIFYs went to %v, want each subscription once", seen)
	}
}

// Watcher info: a presence.winfo subscriber hears of new watchers
// (RFC 3857), and Env.OnWatcher sees every change.
func TestWinfoFollowsWatchers(t *testing.T) {
	pres, winfo := newPkg("presence"), newPkg("presence.winfo")
	r := newRig(t, Config{}, nil, pres, winfo)
	var mu sync.Mutex
	var events []string
	r.n.env.OnWatcher = func(pkg, res string, w WatcherInfo) {
		mu.Lock()
		events = append(events, pkg+" "+res+" "+w.State.String()+" "+w.Event)
		mu.Unlock()
	}
	r.snd.auto = 200
	// bob watches his own watchers.
	res := r.do(t, subscribeReq(t, "w1", "fw", 1, "Event: presence.winfo"), "bob@example.com")
	if res.StatusCode != 200 {
		t.Fatal(res.StatusCode)
	}
	r.clock.Advance(DefaultMinInterval)
	winfo.set("bob@example.com", 1)
	r.subscribe(t, "c1")
	all := r.snd.all()
	if len(all) != 3 || all[2].req.Get("Event") != "presence.winfo" || string(all[2].req.Body) != "bob@example.com v1" {
		t.Fatalf("%d NOTIFYs; want winfo, presence, winfo", len(all))
	}
	mu.Lock()
	got := strings.Join(events, "; ")
	mu.Unlock()
	want := "presence.winfo bob@example.com active subscribe; presence bob@example.com active subscribe"
	if got != want {
		t.Errorf("events %q, want %q", got, want)
	}
}

// Many workers subscribing, refreshing and changing state at once (run
// with -race): every subscription ends accounted for.
func TestConcurrent(t *testing.T) {
	// The clock races the workers: a NOTIFY's deadline must not pass
	// between its sending and its (immediate) answer.
	r := newRig(t, Config{NotifyTimeout: 10 * time.Hour}, nil)
	r.snd.auto = 200
	const workers, each = 8, 50
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				id := "c" + strconv.Itoa(w) + "-" + strconv.Itoa(i)
				tag := r.subscribe(t, id)
				r.n.Changed("presence", "bob@example.com")
				if i%2 == 0 {
					r.do(t, subscribeReq(t, id, "ft-"+id, 2, "To-tag: "+tag, "Expires: 0"), "alice@example.com")
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 100 {
			r.clock.Advance(time.Second)
			r.n.Changed("presence", "bob@example.com")
			_ = r.n.Watchers("presence", "bob@example.com")
		}
	}()
	wg.Wait()
	if got := r.n.Count(); got != workers*each/2 {
		t.Fatalf("Count %d, want %d", got, workers*each/2)
	}
	r.clock.Advance(2 * time.Hour)
	if r.n.Count() != 0 || r.n.InFlight() != 0 || r.clock.Pending() != 0 {
		t.Fatalf("after expiry: %d subs, %d in flight, %d timers", r.n.Count(), r.n.InFlight(), r.clock.Pending())
	}
}

func TestMetricsRegister(t *testing.T) {
	reg := prometheus.NewRegistry()
	clock := transaction.NewFakeClock(t0)
	n, err := New(Config{}, Env{Sender: &fakeSender{auto: 200}, Clock: clock, Contact: testContact, Registerer: reg}, newPkg("presence"))
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	tx := &fakeTx{}
	n.HandleSUBSCRIBE(context.Background(), tx, subscribeReq(t, "c1", "f1", 1), Flow{Proto: "UDP"}, "a@x", "bob@example.com")
	if v := testutil.ToFloat64(n.m.subs.WithLabelValues("presence", "active")); v != 1 {
		t.Errorf("hlas_event_subscriptions{active} = %v", v)
	}
	if c, err := testutil.GatherAndCount(reg, "hlas_event_notifies_total"); err != nil || c != 1 {
		t.Errorf("notifies_total series %d, %v", c, err)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []Config{
		{MinExpires: time.Millisecond},
		{MinExpires: time.Hour, MaxExpires: time.Minute},
		{MinInterval: -1},
		{MaxSubscriptions: -1},
		{MaxPending: -1},
		{NotifyTimeout: -time.Second},
	} {
		if c.Validate() == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	if err := (Config{}).Validate(); err != nil {
		t.Errorf("defaults refused: %v", err)
	}
	if _, err := New(Config{}, Env{Contact: testContact}, newPkg("presence")); err == nil {
		t.Error("New without a Sender")
	}
	if _, err := New(Config{}, Env{Sender: &fakeSender{}, Contact: testContact}, newPkg("presence"), newPkg("Presence")); err == nil {
		t.Error("a package served twice")
	}
}

// batchingSender is a BatchSender: its batches hold their requests until
// Flush, which hands them to the fakeSender.
type batchingSender struct {
	*fakeSender
	batches, flushes int
	held             int // requests in batches not flushed yet
}

func (b *batchingSender) Batch() SenderBatch {
	b.batches++
	return &heldBatch{b: b}
}

type heldBatch struct {
	b    *batchingSender
	reqs []sent
	done bool
}

func (h *heldBatch) SendRequest(req *sip.Request, flow Flow, done func(*sip.Response, error)) error {
	if h.done {
		panic("SendRequest after Flush")
	}
	h.reqs = append(h.reqs, sent{req, flow, done})
	h.b.held++
	return nil
}

func (h *heldBatch) Flush() {
	if h.done {
		panic("flushed twice")
	}
	h.done = true
	h.b.flushes++
	for _, s := range h.reqs {
		h.b.held--
		_ = h.b.fakeSender.SendRequest(s.req, s.flow, s.done)
	}
}

// TestChangedBatchesNOTIFYs: the NOTIFYs of one change to several
// watchers go through one batch of a BatchSender, flushed once before
// Changed returns; a lone NOTIFY is sent without one.
func TestChangedBatchesNOTIFYs(t *testing.T) {
	r := newRig(t, Config{MinInterval: time.Second}, nil)
	bs := &batchingSender{fakeSender: r.snd}
	r.n.env.Sender = bs
	r.snd.auto = 200
	r.subscribe(t, "c1")
	if bs.batches != 0 || r.snd.count() != 1 {
		t.Fatalf("first NOTIFY: %d batches, %d sent; want none, 1", bs.batches, r.snd.count())
	}
	for i := 2; i <= 4; i++ {
		r.subscribe(t, "c"+strconv.Itoa(i))
	}
	before := r.snd.count()
	r.clock.Advance(2 * time.Second)
	r.n.Changed("presence", "bob@example.com")
	if bs.batches != 1 || bs.flushes != 1 || bs.held != 0 {
		t.Fatalf("%d batches, %d flushes, %d held; want 1, 1, 0", bs.batches, bs.flushes, bs.held)
	}
	if got := r.snd.count() - before; got != 4 {
		t.Fatalf("%d NOTIFYs left the batch, want 4", got)
	}
	seen := map[string]bool{}
	for _, s := range r.snd.reqs[before:] {
		seen[s.req.CallID] = true
		if string(s.req.Body) != "bob@example.com v0" {
			t.Errorf("batched NOTIFY body %q", s.req.Body)
		}
	}
	if len(seen) != 4 {
		t.Errorf("NOTIFYs went to %d dialogs, want 4", len(seen))
	}
}

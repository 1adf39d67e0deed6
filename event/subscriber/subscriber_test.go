package subscriber

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/transaction"
)

// RFC 6665 §4.1.2.1, §8.2.1: the initial SUBSCRIBE.
func TestInitialSubscribe(t *testing.T) {
	r := newRig(t, testCfg)
	i := r.subscribe(t, "k")
	req := wire(t, r.snd.get(t, i).req)
	checks := []struct {
		what      string
		got, want string
	}{
		{"method", req.Method, "SUBSCRIBE"},
		{"Request-URI", req.URI.String(), "sip:bob@example.net"},
		{"To", req.To.String(), "<sip:bob@example.net>"},
		{"From URI", req.From.URI.String(), "sip:friends@example.com"},
		{"From display", req.From.Display, `"Friends"`},
		{"CSeq", fmt.Sprint(req.CSeq.Seq, " ", req.CSeq.Method), "1 SUBSCRIBE"},
		{"Event", req.Get("Event"), "presence"},
		{"Expires", req.Get("Expires"), "3600"},
		{"Accept", req.Get("Accept"), "application/pidf+xml, multipart/related"},
		{"Contact", req.Get("Contact"), "<sip:rls@192.0.2.1:5060>"},
		{"Max-Forwards", fmt.Sprint(req.MaxForwards), "70"},
		{"User-Agent", req.Get("User-Agent"), "hlas-test"},
		{"Supported", req.Get("Supported"), ""},
		{"Route", fmt.Sprint(len(req.Route)), "0"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.what, c.got, c.want)
		}
	}
	if req.From.Tag() == "" || req.To.Tag() != "" || req.CallID == "" {
		t.Errorf("From tag %q, To tag %q, Call-ID %q", req.From.Tag(), req.To.Tag(), req.CallID)
	}
	j := r.subscribe(t, "k2")
	other := r.snd.get(t, j).req
	if other.CallID == req.CallID || other.From.Tag() == req.From.Tag() {
		t.Error("two subscriptions share a Call-ID or From tag")
	}
	if r.c.Len() != 2 {
		t.Errorf("Len = %d", r.c.Len())
	}
}

// RFC 6665 §4.1.3: a NOTIFY in the dialog is answered 200 and its body
// and state reported; the body is the Client's copy.
func TestNotifyReportsState(t *testing.T) {
	r := newRig(t, testCfg)
	i := r.subscribe(t, "k")
	r.snd.answer(t, i, 200, "Expires: 3600")
	if len(r.got()) != 0 {
		t.Fatal("a 2xx was reported as state")
	}
	sub := wire(t, r.snd.get(t, i).req)

	n := notify(t, sub, notifyOpts{state: "pending;expires=3600"})
	if ok, res := r.deliver(t, n); !ok || res.StatusCode != 200 {
		t.Fatalf("pending NOTIFY: %v %v", ok, res)
	}
	n = notify(t, sub, notifyOpts{cseq: 2, state: "active;expires=3599", body: "<presence>open</presence>"})
	ok, res := r.deliver(t, n)
	if !ok || res.StatusCode != 200 || len(res.Contact) != 1 || res.Get("Server") != "hlas-test" {
		t.Fatalf("active NOTIFY: %v %v", ok, res)
	}
	n.Body[1] = 'X'
	got := r.got()
	if len(got) != 2 {
		t.Fatalf("states %+v", got)
	}
	if got[0].key != "k" || got[0].st.Status != "pending" || got[0].st.Body != nil {
		t.Errorf("first %+v", got[0])
	}
	st := got[1].st
	if st.Status != "active" || st.Reason != "" || st.ContentType != "application/pidf+xml" || string(st.Body) != "<presence>open</presence>" {
		t.Errorf("second %+v (%q)", st, st.Body)
	}
}

// RFC 6665 §4.1.2.4: a NOTIFY before the 2xx makes the dialog; its
// Record-Route (in order) and Contact route the refreshes.
func TestNotifyBeforeResponse(t *testing.T) {
	r := newRig(t, Config{Expires: 600 * time.Second})
	i := r.subscribe(t, "k")
	sub := wire(t, r.snd.get(t, i).req)
	n := notify(t, sub, notifyOpts{state: "active;expires=600", body: "x",
		lines: []string{"Record-Route: <sip:p1.example.com;lr>", "Record-Route: <sip:p2.example.net;lr>"}})
	if ok, res := r.deliver(t, n); !ok || res.StatusCode != 200 {
		t.Fatalf("early NOTIFY: %v %v", ok, res)
	}
	if st := r.lastState(t); st.Status != "active" {
		t.Fatalf("state %+v", st)
	}
	// The 2xx comes later with the same tag and grants the same.
	r.snd.answer(t, i, 200, "Expires: 600")
	r.clock.Advance(400 * time.Second)
	if r.snd.count() != 2 {
		t.Fatalf("%d requests after 400s, want the refresh", r.snd.count())
	}
	ref := wire(t, r.snd.last(t).req)
	if ref.URI.String() != "sip:pres@198.51.100.7:5060" {
		t.Errorf("refresh Request-URI %s", ref.URI.String())
	}
	if len(ref.Route) != 2 || ref.Route[0].URI.Host != "p1.example.com" || ref.Route[1].URI.Host != "p2.example.net" {
		t.Errorf("refresh Route %v", ref.Route)
	}
	if ref.To.Tag() != "nt" || ref.CallID != sub.CallID || ref.From.Tag() != sub.From.Tag() || ref.CSeq.Seq != 2 {
		t.Errorf("refresh dialog: To %s Call-ID %s From %s CSeq %d", ref.To.String(), ref.CallID, ref.From.String(), ref.CSeq.Seq)
	}
}

// RFC 6665 §4.1.2.2: refresh at about 2/3 of the granted duration, in the
// dialog: Request-URI the remote target, Route the Record-Route
// reversed, CSeq one more.
func TestRefresh(t *testing.T) {
	r := newRig(t, testCfg)
	i := r.subscribe(t, "k")
	r.snd.answer(t, i, 200, "Expires: 600",
		"Record-Route: <sip:edge.example.net;lr>", "Record-Route: <sip:core.example.net;lr>")
	sub := wire(t, r.snd.get(t, i).req)
	r.deliver(t, notify(t, sub, notifyOpts{state: "active;expires=600"}))

	r.clock.Advance(399 * time.Second)
	if r.snd.count() != 1 {
		t.Fatalf("refresh before 2/3 of 600s: %d requests", r.snd.count())
	}
	r.clock.Advance(time.Second)
	if r.snd.count() != 2 {
		t.Fatalf("no refresh at 400s: %d requests", r.snd.count())
	}
	ref := wire(t, r.snd.get(t, 1).req)
	if ref.URI.String() != "sip:pres@198.51.100.7:5060" {
		t.Errorf("Request-URI %s", ref.URI.String())
	}
	if len(ref.Route) != 2 || ref.Route[0].URI.Host != "core.example.net" || ref.Route[1].URI.Host != "edge.example.net" {
		t.Errorf("Route %v", ref.Route)
	}
	if ref.CSeq.Seq != sub.CSeq.Seq+1 || ref.CallID != sub.CallID || ref.To.Tag() != "nt" || ref.From.Tag() != sub.From.Tag() {
		t.Errorf("CSeq %d Call-ID %s To %s", ref.CSeq.Seq, ref.CallID, ref.To.String())
	}
	if ref.Get("Expires") != "3600" || ref.Get("Event") != "presence" || ref.Get("Contact") != "<sip:rls@192.0.2.1:5060>" {
		t.Errorf("Expires %q Event %q Contact %q", ref.Get("Expires"), ref.Get("Event"), ref.Get("Contact"))
	}
	// The 2xx to the refresh moves the target and grants 300s: next
	// refresh 200s later, to the new target.
	r.snd.answer(t, 1, 200, "Expires: 300", "Contact: <sip:pres2@198.51.100.8>")
	r.clock.Advance(199 * time.Second)
	if r.snd.count() != 2 {
		t.Fatal("second refresh too early")
	}
	r.clock.Advance(time.Second)
	ref2 := wire(t, r.snd.last(t).req)
	if r.snd.count() != 3 || ref2.CSeq.Seq != ref.CSeq.Seq+1 || ref2.URI.String() != "sip:pres2@198.51.100.8" {
		t.Errorf("second refresh: %d requests, CSeq %d, URI %s", r.snd.count(), ref2.CSeq.Seq, ref2.URI.String())
	}
	if len(r.got()) != 1 {
		t.Errorf("refreshes reported states: %+v", r.got())
	}
}

// RFC 3261 §12.2.1.1: with a strict router first, it is the Request-URI
// and the remote target ends the Route.
func TestRefreshStrictRoute(t *testing.T) {
	r := newRig(t, testCfg)
	i := r.subscribe(t, "k")
	r.snd.answer(t, i, 200, "Expires: 600", "Record-Route: <sip:strict.example.net>")
	sub := wire(t, r.snd.get(t, i).req)
	r.deliver(t, notify(t, sub, notifyOpts{state: "active"}))
	r.clock.Advance(400 * time.Second)
	ref := wire(t, r.snd.last(t).req)
	if ref.URI.String() != "sip:strict.example.net" || len(ref.Route) != 1 || ref.Route[0].URI.String() != "sip:pres@198.51.100.7:5060" {
		t.Errorf("Request-URI %s Route %v", ref.URI.String(), ref.Route)
	}
}

// A NOTIFY's expires can only bring the refresh forward.
func TestNotifyExpiresShortens(t *testing.T) {
	r := newRig(t, testCfg)
	i := r.subscribe(t, "k")
	r.snd.answer(t, i, 200, "Expires: 3600")
	sub := wire(t, r.snd.get(t, i).req)
	r.deliver(t, notify(t, sub, notifyOpts{state: "active;expires=300"}))
	r.clock.Advance(199 * time.Second)
	if r.snd.count() != 1 {
		t.Fatal("refresh too early")
	}
	r.clock.Advance(time.Second)
	if r.snd.count() != 2 {
		t.Fatal("no refresh at 2/3 of the NOTIFY's expires")
	}
}

// RFC 6665 §4.1.2.1: 423 is followed with the Min-Expires asked for, in
// the same Call-ID with the next CSeq; a Min-Expires that asks for no
// more is a failure.
func TestIntervalTooBrief(t *testing.T) {
	r := newRig(t, testCfg)
	i := r.subscribe(t, "k")
	first := r.snd.get(t, i).req
	r.snd.answer(t, i, 423, "Min-Expires: 7200")
	if r.snd.count() != 2 {
		t.Fatalf("%d requests after 423", r.snd.count())
	}
	again := wire(t, r.snd.get(t, 1).req)
	if again.Get("Expires") != "7200" || again.CallID != first.CallID || again.CSeq.Seq != first.CSeq.Seq+1 || again.From.Tag() != first.From.Tag() {
		t.Errorf("retry: Expires %q Call-ID %s CSeq %d", again.Get("Expires"), again.CallID, again.CSeq.Seq)
	}
	if len(r.got()) != 0 {
		t.Errorf("423 reported: %+v", r.got())
	}
	r.snd.answer(t, 1, 423, "Min-Expires: 60")
	if r.snd.count() != 2 {
		t.Fatal("a 423 asking for less was retried at once")
	}
	if st := r.lastState(t); st.Status != "failed" || st.Reason != "423" {
		t.Errorf("state %+v", st)
	}
	// Later attempts and their refreshes ask for what the 423 taught.
	r.clock.Advance(testCfg.RetryMin * 3 / 2)
	k := r.snd.count() - 1
	if k != 2 {
		t.Fatalf("%d requests after the back-off", k+1)
	}
	r.snd.answer(t, k, 200, "Expires: 7200")
	r.deliver(t, notify(t, wire(t, r.snd.get(t, k).req), notifyOpts{state: "active"}))
	r.clock.Advance(4800 * time.Second)
	if got := wire(t, r.snd.last(t).req).Get("Expires"); r.snd.count() != k+2 || got != "7200" {
		t.Errorf("refresh: %d requests, Expires %q", r.snd.count(), got)
	}
}

// RFC 6665 §4.1.3: what each reason of a NOTIFY terminated leads to.
func TestTerminatedReasons(t *testing.T) {
	cases := []struct {
		state string
		// wait: resubscribe after this long (0: at once); -1: never.
		wait time.Duration
		// atMost: the latest the retry may come, for a back-off.
		atMost time.Duration
	}{
		{"terminated;reason=deactivated", 0, 0},
		{"terminated;reason=timeout", 0, 0},
		{"terminated", 0, 0},
		{"terminated;reason=something-new", 0, 0},
		{"terminated;reason=probation;retry-after=120", 120 * time.Second, 120 * time.Second},
		{"terminated;reason=giveup;retry-after=600", 600 * time.Second, 600 * time.Second},
		{"terminated;reason=probation", testCfg.RetryMin, testCfg.RetryMin * 3 / 2},
		{"terminated;reason=giveup", testCfg.RetryMin, testCfg.RetryMin * 3 / 2},
		{"terminated;reason=deactivated;retry-after=90", 90 * time.Second, 90 * time.Second},
		{"terminated;reason=rejected", -1, 0},
		{"terminated;reason=noresource", -1, 0},
		{"terminated;reason=invariant", -1, 0},
	}
	for _, c := range cases {
		t.Run(c.state, func(t *testing.T) {
			r := newRig(t, testCfg)
			sub := r.establish(t, "k")
			n := r.snd.count()
			ok, res := r.deliver(t, notify(t, sub, notifyOpts{cseq: 2, state: c.state, body: "<final/>"}))
			if !ok || res.StatusCode != 200 {
				t.Fatalf("NOTIFY terminated: %v %v", ok, res)
			}
			st := r.lastState(t)
			reason := ""
			if _, after, found := strings.Cut(c.state, "reason="); found {
				reason, _, _ = strings.Cut(after, ";")
			}
			if st.Status != "terminated" || st.Reason != reason || string(st.Body) != "<final/>" {
				t.Errorf("state %+v", st)
			}
			switch {
			case c.wait == 0:
				if r.snd.count() != n+1 {
					t.Fatalf("no SUBSCRIBE at once: %d requests", r.snd.count())
				}
			case c.wait > 0:
				if r.snd.count() != n {
					t.Fatal("SUBSCRIBE sent at once")
				}
				r.clock.Advance(c.wait - time.Nanosecond)
				if r.snd.count() != n {
					t.Fatalf("SUBSCRIBE before %v", c.wait)
				}
				r.clock.Advance(c.atMost - c.wait + time.Nanosecond)
				if r.snd.count() != n+1 {
					t.Fatalf("no SUBSCRIBE by %v", c.atMost)
				}
			default:
				r.clock.Advance(24 * time.Hour)
				if r.snd.count() != n {
					t.Fatalf("subscribed again after %s", c.state)
				}
				if r.c.Len() != 1 {
					t.Error("a given-up subscription was forgotten before Unsubscribe")
				}
				return
			}
			again := wire(t, r.snd.last(t).req)
			if again.To.Tag() != "" || again.CallID == sub.CallID || again.From.Tag() == sub.From.Tag() || again.CSeq.Seq != 1 {
				t.Errorf("resubscription is not a new dialog: %s", again.String())
			}
			// The ended dialog's NOTIFYs are refused now.
			if ok, res := r.deliver(t, notify(t, sub, notifyOpts{cseq: 3, state: "active"})); !ok || res.StatusCode != 481 {
				t.Errorf("NOTIFY in the ended dialog: %v %v", ok, res)
			}
		})
	}
}

// A notifier that ends every subscription as soon as it begins is not
// flooded: the "at once" retries back off when the dialog was short-lived.
func TestImmediateEndsBackOff(t *testing.T) {
	r := newRig(t, testCfg)
	sub := r.establish(t, "k")
	r.deliver(t, notify(t, sub, notifyOpts{cseq: 2, state: "terminated;reason=deactivated"}))
	if r.snd.count() != 2 {
		t.Fatal("first deactivation not retried at once")
	}
	i := r.snd.count() - 1
	r.snd.answer(t, i, 200, "Expires: 3600")
	sub2 := wire(t, r.snd.get(t, i).req)
	r.deliver(t, notify(t, sub2, notifyOpts{state: "terminated;reason=deactivated"}))
	if r.snd.count() != 2 {
		t.Fatal("second deactivation right away retried at once")
	}
	r.clock.Advance(testCfg.RetryMin * 3 / 2)
	if r.snd.count() != 3 {
		t.Fatal("no retry after the back-off")
	}
	// One that lived longer than RetryMin is retried at once again.
	i = r.snd.count() - 1
	r.snd.answer(t, i, 200, "Expires: 3600")
	sub3 := wire(t, r.snd.get(t, i).req)
	r.deliver(t, notify(t, sub3, notifyOpts{state: "active"}))
	r.clock.Advance(testCfg.RetryMin)
	r.deliver(t, notify(t, sub3, notifyOpts{cseq: 2, state: "terminated;reason=deactivated"}))
	if r.snd.count() != 4 {
		t.Fatal("deactivation of a lasting subscription not retried at once")
	}
}

// RFC 6665 §4.1.2.2: 481 to a refresh means the subscription is gone: a
// new one starts at once.
func TestRefresh481StartsOver(t *testing.T) {
	r := newRig(t, testCfg)
	sub := r.establish(t, "k")
	r.clock.Advance(2400 * time.Second)
	if r.snd.count() != 2 {
		t.Fatal("no refresh")
	}
	r.snd.answer(t, 1, 481)
	if r.snd.count() != 3 {
		t.Fatalf("%d requests after 481", r.snd.count())
	}
	n := wire(t, r.snd.get(t, 2).req)
	if n.To.Tag() != "" || n.CallID == sub.CallID || len(n.Route) != 0 || n.URI.String() != "sip:bob@example.net" {
		t.Errorf("not a new subscription: %s", n.String())
	}
	if len(r.got()) != 1 {
		t.Errorf("states %+v", r.got())
	}
}

// RFC 6665 §4.1.2.2: a refresh failing otherwise leaves the subscription
// valid until it expires; refreshes are retried after the back-off, and
// when it lapses a new one starts.
func TestRefreshFailureKeepsSubscription(t *testing.T) {
	r := newRig(t, Config{Expires: 600 * time.Second, RetryMin: 100 * time.Second, RetryMax: 30 * time.Minute})
	r.establish(t, "k", "Expires: 600")
	r.clock.Advance(400 * time.Second)
	r.snd.answer(t, 1, 500)
	if r.snd.count() != 2 || len(r.got()) != 1 {
		t.Fatalf("after 500: %d requests, states %+v", r.snd.count(), r.got())
	}
	r.clock.Advance(150 * time.Second)
	if r.snd.count() != 3 {
		t.Fatal("refresh not retried after the back-off")
	}
	r.snd.fail(t, 2, transaction.ErrTimeout)
	// The next back-off (200-300s) ends after the expiry (at 600s): the
	// subscription lapses and a new one starts.
	r.clock.Advance(600*time.Second - r.clock.Now().Sub(t0) - time.Nanosecond)
	if r.snd.count() != 3 || len(r.got()) != 1 {
		t.Fatalf("before expiry: %d requests, states %+v", r.snd.count(), r.got())
	}
	r.clock.Advance(time.Nanosecond)
	if st := r.lastState(t); st.Status != "terminated" || st.Reason != "timeout" {
		t.Errorf("state at expiry %+v", st)
	}
	n := wire(t, r.snd.last(t).req)
	if r.snd.count() != 4 || n.To.Tag() != "" {
		t.Errorf("after expiry: %d requests, last %s", r.snd.count(), n.String())
	}
}

// RFC 6665 §4.1.2.3: Unsubscribe sends Expires: 0 in the dialog; the
// final NOTIFY is welcome, any other gets 481, and nothing is reported.
func TestUnsubscribe(t *testing.T) {
	r := newRig(t, testCfg)
	sub := r.establish(t, "k")
	states := len(r.got())
	r.c.Unsubscribe("k")
	if r.c.Len() != 0 || r.snd.count() != 2 {
		t.Fatalf("Len %d, %d requests", r.c.Len(), r.snd.count())
	}
	u := wire(t, r.snd.get(t, 1).req)
	if u.Get("Expires") != "0" || u.To.Tag() != "nt" || u.CallID != sub.CallID || u.CSeq.Seq != sub.CSeq.Seq+1 {
		t.Errorf("unsubscribe %s", u.String())
	}
	r.snd.answer(t, 1, 200, "Expires: 0")
	if ok, res := r.deliver(t, notify(t, sub, notifyOpts{cseq: 2, state: "terminated;reason=timeout"})); !ok || res.StatusCode != 200 {
		t.Errorf("final NOTIFY: %v %v", ok, res)
	}
	if ok, res := r.deliver(t, notify(t, sub, notifyOpts{cseq: 3, state: "active"})); !ok || res.StatusCode != 481 {
		t.Errorf("late NOTIFY: %v %v", ok, res)
	}
	if len(r.got()) != states {
		t.Errorf("reported after Unsubscribe: %+v", r.got()[states:])
	}
	r.clock.Advance(24 * time.Hour)
	if r.snd.count() != 2 || r.clock.Pending() != 0 {
		t.Errorf("after Unsubscribe: %d requests, %d timers", r.snd.count(), r.clock.Pending())
	}
	r.c.Unsubscribe("k") // unknown now: nothing happens
	if r.snd.count() != 2 {
		t.Error("second Unsubscribe sent something")
	}
}

// Unsubscribing before the 2xx sends nothing; the notifier's NOTIFY gets
// 481, which ends the subscription there (RFC 6665 §4.2.2).
func TestUnsubscribeBeforeResponse(t *testing.T) {
	r := newRig(t, testCfg)
	i := r.subscribe(t, "k")
	sub := wire(t, r.snd.get(t, i).req)
	r.c.Unsubscribe("k")
	r.snd.answer(t, i, 200, "Expires: 3600")
	if r.snd.count() != 1 {
		t.Fatalf("%d requests", r.snd.count())
	}
	if ok, res := r.deliver(t, notify(t, sub, notifyOpts{state: "active"})); !ok || res.StatusCode != 481 {
		t.Errorf("NOTIFY: %v %v", ok, res)
	}
	if len(r.got()) != 0 || r.clock.Pending() != 0 {
		t.Errorf("states %+v, %d timers", r.got(), r.clock.Pending())
	}
}

// A NOTIFY that is none of the Client's is left to the caller.
func TestNotifyNotOurs(t *testing.T) {
	r := newRig(t, testCfg)
	sub := r.establish(t, "k")
	other := *sub
	other.CallID = "someone-else"
	if ok, _ := r.deliver(t, notify(t, &other, notifyOpts{state: "active"})); ok {
		t.Error("NOTIFY with another Call-ID taken")
	}
	stranger := *sub
	stranger.From.Params = stranger.From.Params.Set("tag", "not-ours")
	if ok, _ := r.deliver(t, notify(t, &stranger, notifyOpts{state: "active"})); ok {
		t.Error("NOTIFY with an unknown To tag taken")
	}
	untagged := *sub
	untagged.From.Params = untagged.From.Params.Del("tag")
	if ok, _ := r.deliver(t, notify(t, &untagged, notifyOpts{state: "active"})); ok {
		t.Error("NOTIFY without To tag taken")
	}
	n := notify(t, sub, notifyOpts{cseq: 5, state: "active"})
	n.Method = sip.MESSAGE
	if ok, _ := r.deliver(t, n); ok {
		t.Error("a MESSAGE taken")
	}
}

// Malformed or misplaced NOTIFYs in a dialog of ours.
func TestNotifyRefusals(t *testing.T) {
	r := newRig(t, testCfg)
	sub := r.establish(t, "k")
	states := len(r.got())
	cases := []struct {
		name string
		o    notifyOpts
		code int
	}{
		{"no Subscription-State", notifyOpts{cseq: 2, state: "-"}, 400},
		{"bad Subscription-State", notifyOpts{cseq: 2, state: "active;expires=soon"}, 400},
		{"other event", notifyOpts{cseq: 2, state: "active", event: "dialog"}, 489},
		{"another fork", notifyOpts{cseq: 2, state: "active", fromTag: "fork2"}, 481},
		{"a CSeq gap", notifyOpts{cseq: 0xFFFF, state: "active"}, 200},
		{"lower CSeq", notifyOpts{cseq: 3, state: "active"}, 500},
	}
	for _, c := range cases {
		ok, res := r.deliver(t, notify(t, sub, c.o))
		if !ok || res.StatusCode != c.code {
			t.Errorf("%s: taken %v, got %v, want %d", c.name, ok, res, c.code)
		}
	}
	if got := r.got(); len(got) != states+1 {
		t.Errorf("states reported: %+v", got[states:])
	}
}

// Failed SUBSCRIBEs: reported once, retried after the back-off, or given
// up for good after 403, 489, 603.
func TestFailures(t *testing.T) {
	t.Run("404 is retried", func(t *testing.T) {
		r := newRig(t, testCfg)
		r.subscribe(t, "k")
		r.snd.answer(t, 0, 404)
		if st := r.lastState(t); st.Status != "failed" || st.Reason != "404" {
			t.Fatalf("state %+v", st)
		}
		r.clock.Advance(testCfg.RetryMin - time.Nanosecond)
		if r.snd.count() != 1 {
			t.Fatal("retried before RetryMin")
		}
		r.clock.Advance(testCfg.RetryMin/2 + time.Nanosecond)
		if r.snd.count() != 2 {
			t.Fatal("not retried by 1.5×RetryMin")
		}
		r.snd.answer(t, 1, 404)
		if len(r.got()) != 1 {
			t.Errorf("a repeated failure was reported again: %+v", r.got())
		}
		// The second back-off is twice the first.
		r.clock.Advance(2*testCfg.RetryMin - time.Nanosecond)
		if r.snd.count() != 2 {
			t.Fatal("second retry before 2×RetryMin")
		}
		r.clock.Advance(testCfg.RetryMin + time.Nanosecond)
		if r.snd.count() != 3 {
			t.Fatal("no second retry by 3×RetryMin")
		}
		// Success after failures is reported, and a new failure too.
		r.snd.answer(t, 2, 200, "Expires: 3600")
		r.deliver(t, notify(t, wire(t, r.snd.get(t, 2).req), notifyOpts{state: "active"}))
		if st := r.lastState(t); st.Status != "active" {
			t.Errorf("state %+v", st)
		}
	})
	for _, code := range []int{403, 489, 603} {
		t.Run(fmt.Sprint(code, " gives up"), func(t *testing.T) {
			r := newRig(t, testCfg)
			r.subscribe(t, "k")
			r.snd.answer(t, 0, code)
			r.clock.Advance(48 * time.Hour)
			got := r.got()
			if r.snd.count() != 1 || len(got) != 1 || got[0].st.Status != "failed" || got[0].st.Reason != fmt.Sprint(code) {
				t.Errorf("%d requests, states %+v", r.snd.count(), got)
			}
			if r.clock.Pending() != 0 {
				t.Errorf("%d timers left", r.clock.Pending())
			}
			// The same Subscribe keeps it given up; Unsubscribe and
			// Subscribe try again.
			r.subscribe(t, "k")
			if r.snd.count() != 1 {
				t.Error("Subscribe of a given-up key sent again")
			}
			r.c.Unsubscribe("k")
			r.subscribe(t, "k")
			if r.snd.count() != 2 {
				t.Error("new Subscribe after Unsubscribe not sent")
			}
		})
	}
	t.Run("Retry-After is honoured", func(t *testing.T) {
		r := newRig(t, testCfg)
		r.subscribe(t, "k")
		r.snd.answer(t, 0, 503, "Retry-After: 600 (maintenance)")
		r.clock.Advance(600*time.Second - time.Nanosecond)
		if r.snd.count() != 1 {
			t.Fatal("retried before Retry-After")
		}
		r.clock.Advance(time.Nanosecond)
		if r.snd.count() != 2 {
			t.Fatal("not retried at Retry-After")
		}
	})
	t.Run("timeout and transport errors", func(t *testing.T) {
		r := newRig(t, testCfg)
		r.subscribe(t, "k")
		r.snd.fail(t, 0, transaction.ErrTimeout)
		if st := r.lastState(t); st.Status != "failed" || st.Reason != "timeout" {
			t.Errorf("state %+v", st)
		}
		r.clock.Advance(testCfg.RetryMin * 3 / 2)
		r.snd.fail(t, 1, errRefused)
		if st := r.lastState(t); st.Reason != "transport" {
			t.Errorf("state %+v", st)
		}
		r.snd.mu.Lock()
		r.snd.err = errRefused
		r.snd.mu.Unlock()
		r.clock.Advance(3 * testCfg.RetryMin)
		if r.snd.count() != 2 || r.clock.Pending() != 1 {
			t.Errorf("a SendRequest error: %d requests, %d timers", r.snd.count(), r.clock.Pending())
		}
	})
	t.Run("Sender never answers", func(t *testing.T) {
		r := newRig(t, testCfg)
		r.subscribe(t, "k")
		r.clock.Advance(requestTimeout)
		if st := r.lastState(t); st.Status != "failed" || st.Reason != "timeout" {
			t.Errorf("state %+v", st)
		}
		r.snd.answer(t, 0, 200, "Expires: 3600") // too late: ignored
		r.clock.Advance(testCfg.RetryMin * 3 / 2)
		if r.snd.count() != 2 {
			t.Errorf("%d requests", r.snd.count())
		}
	})
}

// RFC 6665 §4.1.2.4, Timer N: a 2xx without a NOTIFY in 64×T1 is a
// failure; the dialog is ended and the subscription retried.
func TestTimerN(t *testing.T) {
	r := newRig(t, testCfg)
	r.subscribe(t, "k")
	r.snd.answer(t, 0, 200, "Expires: 3600")
	r.clock.Advance(timerN - time.Nanosecond)
	if r.snd.count() != 1 {
		t.Fatal("acted before Timer N")
	}
	r.clock.Advance(time.Nanosecond)
	if st := r.lastState(t); st.Status != "failed" || st.Reason != "timeout" {
		t.Errorf("state %+v", st)
	}
	if r.snd.count() != 2 || r.snd.get(t, 1).req.Get("Expires") != "0" {
		t.Fatalf("no unsubscription after Timer N")
	}
	r.clock.Advance(testCfg.RetryMin * 3 / 2)
	if r.snd.count() != 3 || r.snd.get(t, 2).req.To.Tag() != "" {
		t.Error("no new subscription after the back-off")
	}
}

func TestBackoffBounds(t *testing.T) {
	for _, cfg := range []Config{testCfg, {RetryMin: time.Second, RetryMax: time.Second}, {RetryMin: 7 * time.Second, RetryMax: 100 * time.Second}} {
		r := newRig(t, cfg)
		c := r.c
		for n := 1; n <= maxFails; n++ {
			floor := c.cfg.RetryMin
			for i := 1; i < n && floor < c.cfg.RetryMax; i++ {
				floor *= 2
			}
			floor = min(floor, c.cfg.RetryMax*3/4)
			floor = max(floor, c.cfg.RetryMin)
			for range 50 {
				d := c.backoff(n)
				if d < c.cfg.RetryMin || d > c.cfg.RetryMax || d < floor {
					t.Fatalf("%+v: backoff(%d) = %v, want within [%v, %v]", cfg, n, d, floor, c.cfg.RetryMax)
				}
			}
		}
	}
}

func TestMax(t *testing.T) {
	r := newRig(t, Config{Max: 2})
	r.subscribe(t, "a")
	r.subscribe(t, "b")
	if err := r.c.Subscribe("c", testContact(), mustURI(t, "sip:carol@example.net"), "presence", nil); err == nil {
		t.Fatal("Subscribe beyond Max succeeded")
	}
	r.subscribe(t, "a") // an existing key is no new subscription
	if r.snd.count() != 2 || r.c.Len() != 2 {
		t.Errorf("%d requests, Len %d", r.snd.count(), r.c.Len())
	}
	r.c.Unsubscribe("a")
	if err := r.c.Subscribe("c", testContact(), mustURI(t, "sip:carol@example.net"), "presence", nil); err != nil {
		t.Errorf("Subscribe after Unsubscribe: %v", err)
	}
}

// A key subscribed again with other values is ended and started anew.
func TestSubscribeChanged(t *testing.T) {
	r := newRig(t, testCfg)
	sub := r.establish(t, "k")
	if err := r.c.Subscribe("k", testContact(), mustURI(t, "sip:carol@example.net"), "presence", nil); err != nil {
		t.Fatal(err)
	}
	if r.snd.count() != 3 {
		t.Fatalf("%d requests", r.snd.count())
	}
	u, n := r.snd.get(t, 1).req, r.snd.get(t, 2).req
	if u.Get("Expires") != "0" || u.CallID != sub.CallID || n.URI.String() != "sip:carol@example.net" || n.Get("Accept") != "" {
		t.Errorf("unsubscribe %s\nnew %s", u.String(), n.String())
	}
	if r.c.Len() != 1 {
		t.Errorf("Len %d", r.c.Len())
	}
}

func TestClose(t *testing.T) {
	r := newRig(t, testCfg)
	sub := r.establish(t, "a")
	r.subscribe(t, "b") // in flight, no dialog
	n := r.snd.count()
	r.c.Close()
	if r.snd.count() != n+1 {
		t.Fatalf("%d requests after Close, want one unsubscription", r.snd.count()-n)
	}
	if u := r.snd.last(t).req; u.Get("Expires") != "0" || u.CallID != sub.CallID {
		t.Errorf("unsubscription %s", u.String())
	}
	if r.clock.Pending() != 0 || r.c.Len() != 0 {
		t.Errorf("%d timers, Len %d", r.clock.Pending(), r.c.Len())
	}
	r.snd.answer(t, n-1, 200, "Expires: 3600")
	r.clock.Advance(48 * time.Hour)
	if r.snd.count() != n+1 {
		t.Error("sent after Close")
	}
	if ok, res := r.deliver(t, notify(t, sub, notifyOpts{cseq: 2, state: "terminated;reason=timeout"})); !ok || res.StatusCode != 200 {
		t.Errorf("final NOTIFY after Close: %v %v", ok, res)
	}
	if err := r.c.Subscribe("c", testContact(), mustURI(t, "sip:carol@example.net"), "presence", nil); err == nil {
		t.Error("Subscribe after Close succeeded")
	}
	if err := r.c.Close(); err != nil {
		t.Error(err)
	}
}

// OnState runs in order per subscription and is never re-entered for one:
// a NOTIFY handled from inside OnState is delivered after it returns.
func TestOnStateOrder(t *testing.T) {
	clock := transaction.NewFakeClock(t0)
	snd := &fakeSender{}
	var (
		mu     sync.Mutex
		order  []string
		depth  int
		deeper bool
		c      *Client
		sub    *sip.Request
	)
	c, err := New(testCfg, Env{Sender: snd, Clock: clock, Contact: testContact, OnState: func(key string, st State) {
		mu.Lock()
		depth++
		if depth > 1 {
			deeper = true
		}
		order = append(order, string(st.Body))
		first := len(order) == 1
		mu.Unlock()
		if first {
			tx := &fakeTx{}
			c.HandleNOTIFY(tx, notify(t, sub, notifyOpts{cseq: 2, state: "active", body: "two"}))
		}
		mu.Lock()
		depth--
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Subscribe("k", testContact(), mustURI(t, "sip:bob@example.net"), "presence", nil); err != nil {
		t.Fatal(err)
	}
	snd.answer(t, 0, 200, "Expires: 3600")
	sub = wire(t, snd.get(t, 0).req)
	c.HandleNOTIFY(&fakeTx{}, notify(t, sub, notifyOpts{state: "active", body: "one"}))
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(order, ",") != "one,two" || deeper {
		t.Errorf("order %v, re-entered %v", order, deeper)
	}
}

// Many subscriptions driven from several goroutines at once (for -race).
func TestConcurrent(t *testing.T) {
	r := newRig(t, testCfg)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				key := fmt.Sprintf("g%d-%d", g, i)
				if err := r.c.Subscribe(key, testContact(), mustURI(t, "sip:"+key+"@example.net"), "presence", nil); err != nil {
					t.Error(err)
					return
				}
				if i%3 == 0 {
					r.c.Unsubscribe(key)
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 20 {
			r.clock.Advance(10 * time.Second)
		}
	}()
	wg.Wait()
	// Answer everything sent so far, concurrently, then NOTIFY.
	n := r.snd.count()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := r.snd.get(t, i)
			if s.req.To.Tag() != "" {
				return
			}
			r.snd.answer(t, i, 200, "Expires: 3600")
			r.c.HandleNOTIFY(&fakeTx{}, notify(t, wire(t, s.req), notifyOpts{state: "active", body: "b"}))
		}()
	}
	wg.Wait()
	if got := r.c.Len(); got != 8*50-8*17 {
		t.Errorf("Len %d", got)
	}
	r.clock.Advance(3 * time.Hour)
	r.c.Close()
	if r.clock.Pending() != 0 {
		t.Errorf("%d timers after Close", r.clock.Pending())
	}
}

func TestConfig(t *testing.T) {
	bad := []Config{
		{Expires: -time.Second},
		{Expires: time.Millisecond},
		{RetryMin: -1},
		{RetryMax: -1},
		{Max: -1},
		{RetryMin: time.Hour, RetryMax: time.Minute},
	}
	for _, c := range bad {
		if _, err := New(c, Env{Sender: &fakeSender{}, Contact: testContact}); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	if _, err := New(Config{}, Env{Contact: testContact}); err == nil {
		t.Error("no Sender accepted")
	}
	if _, err := New(Config{}, Env{Sender: &fakeSender{}}); err == nil {
		t.Error("no Contact accepted")
	}
	c, err := New(Config{}, Env{Sender: &fakeSender{}, Contact: testContact})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.cfg.Expires != DefaultExpires || c.cfg.RetryMin != DefaultRetryMin || c.cfg.RetryMax != DefaultRetryMax || c.cfg.Max != DefaultMax {
		t.Errorf("defaults %+v", c.cfg)
	}
	for _, in := range []struct {
		key, event string
		to         string
	}{{"", "presence", "sip:a@b"}, {"k", "pres ence", "sip:a@b"}, {"k", "presence", ""}} {
		var to sip.URI
		if in.to != "" {
			to = mustURI(t, in.to)
		}
		if err := c.Subscribe(in.key, testContact(), to, in.event, nil); err == nil {
			t.Errorf("Subscribe(%q, %q, %q) accepted", in.key, in.to, in.event)
		}
	}
}

// RFC 6665 §4.1.2.2: a 423 to a refresh is followed in the dialog.
func TestRefresh423(t *testing.T) {
	r := newRig(t, testCfg)
	sub := r.establish(t, "k")
	r.clock.Advance(2400 * time.Second)
	r.snd.answer(t, 1, 423, "Min-Expires: 5400")
	if r.snd.count() != 3 {
		t.Fatalf("%d requests", r.snd.count())
	}
	again := wire(t, r.snd.get(t, 2).req)
	if again.Get("Expires") != "5400" || again.To.Tag() != "nt" || again.CallID != sub.CallID || again.CSeq.Seq != sub.CSeq.Seq+2 {
		t.Errorf("refresh after 423: %s", again.String())
	}
}

// A 2xx granting 0 announces the end: the final NOTIFY decides what
// follows, and without one the subscription lapses after Timer N's time.
func TestGrantedZero(t *testing.T) {
	r := newRig(t, testCfg)
	i := r.subscribe(t, "k")
	r.snd.answer(t, i, 200, "Expires: 0")
	r.deliver(t, notify(t, wire(t, r.snd.get(t, i).req), notifyOpts{state: "active;expires=0"}))
	// expires=0 in the NOTIFY: lapsed at once, and a new one starts.
	r.clock.Advance(0)
	if st := r.lastState(t); st.Status != "terminated" || st.Reason != "timeout" || r.snd.count() != 2 {
		t.Fatalf("state %+v, %d requests", st, r.snd.count())
	}
	r.snd.answer(t, 1, 200, "Expires: 0")
	r.deliver(t, notify(t, wire(t, r.snd.get(t, 1).req), notifyOpts{state: "active"}))
	r.clock.Advance(timerN - time.Nanosecond)
	if r.snd.count() != 2 {
		t.Fatal("acted before the grace for the final NOTIFY")
	}
	r.clock.Advance(time.Nanosecond)
	if st := r.lastState(t); st.Status != "terminated" || st.Reason != "timeout" {
		t.Errorf("state %+v", st)
	}
	// That dialog lasted longer than RetryMin: the next starts at once.
	if r.snd.count() != 3 || r.snd.get(t, 2).req.To.Tag() != "" {
		t.Errorf("%d requests", r.snd.count())
	}
}

// Ended dialogs are remembered up to endedCap; older ones become
// strangers.
func TestEndedBound(t *testing.T) {
	r := newRig(t, testCfg)
	r.c.mu.Lock()
	for i := range endedCap + 10 {
		r.c.rememberLocked(fmt.Sprint("tag", i), fmt.Sprint("call", i))
	}
	n, first, last := len(r.c.ended), r.c.ended["tag0"], r.c.ended[fmt.Sprint("tag", endedCap+9)]
	r.c.mu.Unlock()
	if n != endedCap || first != "" || last == "" {
		t.Errorf("%d remembered, first %q, last %q", n, first, last)
	}
}

// A slow OnState holds at most maxQueued states per subscription: the
// oldest waiting are dropped, the newest delivered in order.
func TestSlowOnState(t *testing.T) {
	clock := transaction.NewFakeClock(t0)
	snd := &fakeSender{}
	release := make(chan struct{})
	entered := make(chan struct{})
	var (
		mu  sync.Mutex
		got []string
	)
	c, err := New(testCfg, Env{Sender: snd, Clock: clock, Contact: testContact, OnState: func(_ string, st State) {
		mu.Lock()
		got = append(got, string(st.Body))
		first := len(got) == 1
		mu.Unlock()
		if first {
			close(entered)
			<-release
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Subscribe("k", testContact(), mustURI(t, "sip:bob@example.net"), "presence", nil); err != nil {
		t.Fatal(err)
	}
	snd.answer(t, 0, 200, "Expires: 3600")
	sub := wire(t, snd.get(t, 0).req)
	done := make(chan struct{})
	go func() {
		c.HandleNOTIFY(&fakeTx{}, notify(t, sub, notifyOpts{state: "active", body: "n1"}))
		close(done)
	}()
	<-entered
	const more = maxQueued + 10
	for i := 2; i <= more+1; i++ {
		c.HandleNOTIFY(&fakeTx{}, notify(t, sub, notifyOpts{cseq: i, state: "active", body: fmt.Sprint("n", i)}))
	}
	close(release)
	<-done
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1+maxQueued || got[0] != "n1" || got[1] != fmt.Sprint("n", more+2-maxQueued) || got[len(got)-1] != fmt.Sprint("n", more+1) {
		t.Errorf("%d delivered: first %q, second %q, last %q", len(got), got[0], got[1], got[len(got)-1])
	}
}

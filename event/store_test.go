package event

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/hlas-voip/hlas/sip/transaction"
)

// orderedStore notes whether the 200 had gone out when a subscription
// was written.
type orderedStore struct {
	*fakeStore
	tx         *fakeTx
	answeredAt []int
}

func (o *orderedStore) PutSubscription(ctx context.Context, s StoredSubscription) error {
	o.tx.mu.Lock()
	o.answeredAt = append(o.answeredAt, len(o.tx.res))
	o.tx.mu.Unlock()
	return o.fakeStore.PutSubscription(ctx, s)
}

// Issue 14 §5: a subscription is written before its 2xx.
func TestStoreWrittenBefore2xx(t *testing.T) {
	tx := &fakeTx{}
	os := &orderedStore{fakeStore: newStore(), tx: tx}
	clock := transaction.NewFakeClock(t0)
	n, err := New(Config{}, Env{Sender: &fakeSender{auto: 200}, Clock: clock, Contact: testContact, Store: os}, newPkg("presence"))
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	n.HandleSUBSCRIBE(context.Background(), tx, subscribeReq(t, "c1", "f1", 1), Flow{Proto: "UDP"}, "alice@example.com", "bob@example.com")
	if tx.final(t).StatusCode != 200 {
		t.Fatal(tx.final(t).StatusCode)
	}
	if len(os.answeredAt) != 1 || os.answeredAt[0] != 0 {
		t.Fatalf("written with %v responses already sent, want [0]", os.answeredAt)
	}
}

// A store that cannot write makes the SUBSCRIBE fail (500), leaving
// nothing behind.
func TestStoreFailure(t *testing.T) {
	st := newStore()
	st.fail = errors.New("disk full")
	r := newRig(t, Config{}, st)
	r.snd.auto = 200
	res := r.do(t, subscribeReq(t, "c1", "f1", 1), "alice@example.com")
	if res.StatusCode != 500 || res.Get("Retry-After") == "" {
		t.Fatalf("got %d", res.StatusCode)
	}
	if r.n.Count() != 0 || r.snd.count() != 0 || r.clock.Pending() != 0 {
		t.Errorf("%d subs, %d NOTIFYs, %d timers", r.n.Count(), r.snd.count(), r.clock.Pending())
	}
}

// Issue 14 §5: subscriptions survive a restart: New resumes the stored
// ones with their dialog (tags, route set, CSeq above the last one sent)
// and expiry; a restart does not make watchers re-subscribe.
func TestStoreRoundTrip(t *testing.T) {
	st := newStore()
	r := newRig(t, Config{}, st)
	r.snd.auto = 200
	r.flow.Proto = "TCP"
	tag := r.subscribe(t, "c1", "Record-Route: <sip:p1.example.com;lr>", "Event: presence;id=7", "Accept: text/plain", "Expires: 3000")
	pending := r.do(t, subscribeReq(t, "c2", "f2", 1), "mallory@example.com")
	_ = pending
	r.pkg.decide("mallory@example.com", Pending)
	r.n.Reauthorize("presence", "bob@example.com") // c2 becomes pending: written by the writer
	r.clock.Advance(DefaultMinInterval)
	r.n.Changed("presence", "bob@example.com")
	before := r.snd.all()
	lastSeq := before[len(before)-1].req.CSeq.Seq
	for _, s := range before {
		if s.req.CallID == "c1" {
			lastSeq = max(lastSeq, s.req.CSeq.Seq)
		}
	}
	r.n.Close()
	if st.len() != 2 {
		t.Fatalf("%d stored, want 2", st.len())
	}
	for _, ss := range st.m {
		if ss.CallID == "c2" && ss.State != "pending" {
			t.Errorf("c2 stored as %q after Reauthorize, want pending", ss.State)
		}
		if ss.CallID == "c1" && (ss.EventID != "7" || ss.Accept != "text/plain" || len(ss.RouteSet) != 1 || ss.FlowProto != "TCP" || ss.LocalTag != tag) {
			t.Errorf("c1 stored as %+v", ss)
		}
	}

	// The restart, ten minutes later.
	clock := transaction.NewFakeClock(t0.Add(DefaultMinInterval + 10*time.Minute))
	snd := &fakeSender{auto: 200}
	pkg := newPkg("presence")
	pkg.decide("mallory@example.com", Pending)
	n, err := New(Config{}, Env{Sender: snd, Clock: clock, Contact: testContact, Store: st}, pkg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if n.Count() != 2 || snd.count() != 0 {
		t.Fatalf("resumed %d subscriptions, sent %d NOTIFYs; want 2 and none", n.Count(), snd.count())
	}
	w := n.Watchers("presence", "bob@example.com")
	states := map[string]State{}
	for _, x := range w {
		states[x.Watcher] = x.State
	}
	if states["alice@example.com"] != StateActive || states["mallory@example.com"] != StatePending {
		t.Errorf("resumed states %v", states)
	}
	pkg.set("bob@example.com", 9)
	n.Changed("presence", "bob@example.com")
	if snd.count() != 1 {
		t.Fatalf("%d NOTIFYs after the change, want 1 (to the active one)", snd.count())
	}
	got := snd.last(t).req
	if got.CallID != "c1" || got.From.Tag() != tag || got.To.Tag() != "ft-c1" || got.Get("Event") != "presence;id=7" ||
		len(got.Route) != 1 || got.Route[0].URI.Host != "p1.example.com" || got.ContentType != "text/plain" ||
		string(got.Body) != "bob@example.com v9" || snd.last(t).flow.Proto != "TCP" {
		t.Errorf("resumed NOTIFY:\n%s", got)
	}
	if got.CSeq.Seq <= lastSeq {
		t.Errorf("CSeq %d after a restart, last sent before %d", got.CSeq.Seq, lastSeq)
	}
	if subState(got) != "active;expires="+itoa(3000-int(DefaultMinInterval/time.Second)-600) {
		t.Errorf("Subscription-State %q", subState(got))
	}
	// A refresh in the resumed dialog works.
	tx := &fakeTx{}
	n.HandleSUBSCRIBE(context.Background(), tx, subscribeReq(t, "c1", "ft-c1", 2, "To-tag: "+tag, "Event: presence;id=7"),
		Flow{Proto: "TCP"}, "alice@example.com", "bob@example.com")
	if tx.final(t).StatusCode != 200 {
		t.Fatalf("refresh after restart: %d", tx.final(t).StatusCode)
	}
	// The pending one still expires at its stored time (1 h after t0).
	clock.Advance(t0.Add(time.Hour).Sub(clock.Now()))
	if n.Count() != 1 {
		t.Fatalf("Count %d after the stored expiry, want 1", n.Count())
	}
	n.Close()
	if st.len() != 1 {
		t.Errorf("%d stored after the expiry, want the refreshed one", st.len())
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

// Stored records that cannot be used are deleted at load, not resumed.
func TestStoreLoadSkipsUnusable(t *testing.T) {
	st := newStore()
	good := StoredSubscription{ID: "good", Package: "presence", Watcher: "a@x", Resource: "b@x", State: "active",
		Accept: "application/presence+xml", Created: t0, Expires: t0.Add(time.Hour), Updated: t0,
		CallID: "c", LocalTag: "lt", RemoteTag: "rt", Local: "<sip:b@x>;tag=lt", Remote: "<sip:a@x>;tag=rt",
		RemoteTarget: "sip:a@192.0.2.1", LocalCSeq: 5, FlowProto: "UDP", FlowLocal: "192.0.2.2:5060", FlowRemote: "192.0.2.1:5060"}
	unknownPkg := good
	unknownPkg.ID, unknownPkg.Package, unknownPkg.CallID = "pkg", "dialog", "c2"
	badAddr := good
	badAddr.ID, badAddr.Local, badAddr.CallID = "addr", "<<<", "c3"
	badState := good
	badState.ID, badState.State, badState.CallID = "state", "weird", "c4"
	badFlow := good
	badFlow.ID, badFlow.FlowLocal, badFlow.CallID = "flow", "nope", "c5"
	for _, s := range []StoredSubscription{good, unknownPkg, badAddr, badState, badFlow} {
		st.m[s.ID] = s
	}
	r := newRig(t, Config{}, st)
	if r.n.Count() != 1 {
		t.Fatalf("resumed %d, want 1", r.n.Count())
	}
	if st.len() != 1 {
		t.Errorf("%d records left, want the good one", st.len())
	}
	r.snd.auto = 200
	r.n.Changed("presence", "b@x")
	if got := r.snd.last(t).req; got.CSeq.Seq <= 5 || got.URI.String() != "sip:a@192.0.2.1" {
		t.Errorf("NOTIFY CSeq %d to %s", got.CSeq.Seq, got.URI.String())
	}
}

// resumeSeq bounds the NOTIFYs sent since the record was written.
func TestResumeSeq(t *testing.T) {
	for _, tc := range []struct {
		stored  uint32
		elapsed time.Duration
		min     time.Duration
		subs    int
		want    uint32
	}{
		{10, 0, 5 * time.Second, 1, 13},
		{10, time.Minute, 5 * time.Second, 1, 25},
		{10, time.Minute, 5 * time.Second, 2, 40},
		{1<<32 - 2, time.Hour, time.Second, 1, 1<<32 - 1},
		{0, time.Second, 0, 1, 1003},
	} {
		if got := resumeSeq(tc.stored, t0, t0.Add(tc.elapsed), tc.min, tc.subs); got != tc.want {
			t.Errorf("resumeSeq(%d, %v, %v, %d) = %d, want %d", tc.stored, tc.elapsed, tc.min, tc.subs, got, tc.want)
		}
	}
}

// versionPkg renders the document version in the body.
type versionPkg struct{ *fakePkg }

func (p versionPkg) Document(s *Subscription, full bool) (string, []byte) {
	return "text/plain", fmt.Appendf(nil, "version %d", s.NextVersion())
}

// Document versions keep rising across a restart (a watcher discards a
// reginfo or dialog-info document older than one it has).
func TestStoreVersionsRiseAcrossRestart(t *testing.T) {
	st := newStore()
	pkg := versionPkg{newPkg("reg")}
	r := newRig(t, Config{MinInterval: time.Second}, st, pkg)
	r.snd.auto = 200
	r.subscribe(t, "c1", "Event: reg", "Expires: 3000")
	for range 5 {
		r.clock.Advance(2 * time.Second)
		r.n.Changed("reg", "bob@example.com")
	}
	sent := r.snd.all()
	last := string(sent[len(sent)-1].req.Body)
	if last != "version 5" {
		t.Fatalf("last document before the restart: %q, want version 5", last)
	}
	r.n.Close()

	clock := transaction.NewFakeClock(t0.Add(time.Minute))
	snd := &fakeSender{auto: 200}
	n, err := New(Config{MinInterval: time.Second}, Env{Sender: snd, Clock: clock, Contact: testContact, Store: st}, versionPkg{newPkg("reg")})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	n.Changed("reg", "bob@example.com")
	var v int
	if _, err := fmt.Sscanf(string(snd.last(t).req.Body), "version %d", &v); err != nil || v <= 5 {
		t.Fatalf("first document after the restart: %q, want a version above 5", snd.last(t).req.Body)
	}
}

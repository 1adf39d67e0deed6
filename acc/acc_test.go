package acc

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hlas-voip/hlas/proxy"
	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/transaction"
	"github.com/hlas-voip/hlas/store"
)

// memStore keeps records in memory; while gate is open (non-nil and not
// closed) commits wait for it, as a slow disk would.
type memStore struct {
	mu   sync.Mutex
	recs []store.CDR
	gate chan struct{}
	fail int // commits to fail first
	// purges counts PurgeCDRs calls.
	purges int
}

func (m *memStore) WriteCDRs(ctx context.Context, cdrs []store.CDR) error {
	m.mu.Lock()
	gate := m.gate
	m.mu.Unlock()
	if gate != nil {
		<-gate
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail > 0 {
		m.fail--
		return fmt.Errorf("disk full")
	}
	m.recs = append(m.recs, cdrs...)
	return nil
}

func (m *memStore) CDRs(ctx context.Context, f store.CDRFilter) ([]store.CDR, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]store.CDR(nil), m.recs...), nil
}

// PurgeCDRs implements store.CDRs; it counts its calls in purges.
func (m *memStore) PurgeCDRs(ctx context.Context, before time.Time) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.purges++
	n := len(m.recs)
	m.recs = slices.DeleteFunc(m.recs, func(r store.CDR) bool { return r.Completed().Before(before) })
	return int64(n - len(m.recs)), nil
}

// PurgeableCDRs implements store.CDRs.
func (m *memStore) PurgeableCDRs(ctx context.Context, before time.Time) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var n int64
	for _, r := range m.recs {
		if r.Completed().Before(before) {
			n++
		}
	}
	return n, nil
}

func (m *memStore) all() []store.CDR {
	r, _ := m.CDRs(context.Background(), store.CDRFilter{})
	return r
}

// waitRecords waits until n records are committed and returns them.
func (m *memStore) waitRecords(t *testing.T, n int) []store.CDR {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if r := m.all(); len(r) >= n {
			if len(r) > n {
				t.Fatalf("%d records, want %d: %+v", len(r), n, r)
			}
			return r
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("%d records, want %d", len(m.all()), n)
	return nil
}

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

type fixture struct {
	a     *Accounting
	st    *memStore
	clock *transaction.FakeClock
}

func newFixture(t *testing.T, cfg Config) *fixture {
	t.Helper()
	f := &fixture{st: &memStore{}, clock: transaction.NewFakeClock(t0)}
	a, err := New(cfg, Env{Store: f.st, Clock: f.clock})
	if err != nil {
		t.Fatal(err)
	}
	f.a = a
	t.Cleanup(func() { a.Close() })
	return f
}

func parseReq(t *testing.T, text string) *sip.Request {
	t.Helper()
	m, err := sip.Parse([]byte(strings.ReplaceAll(text, "\n", "\r\n")))
	if err != nil {
		t.Fatal(err)
	}
	return m.(*sip.Request)
}

// request builds method from alice (tag a1) to bob; toTag empty outside
// a dialog; fromCallee swaps the sides (a request by the callee).
func request(t *testing.T, method, callID, toTag string, fromCallee bool, extra ...string) *sip.Request {
	from := "<sip:alice@example.test>;tag=a1"
	to := "<sip:bob@example.test>"
	if toTag != "" {
		to += ";tag=" + toTag
	}
	if fromCallee {
		from, to = "<sip:bob@example.test>;tag="+toTag, "<sip:alice@example.test>;tag=a1"
	}
	return parseReq(t, method+" sip:bob@example.test SIP/2.0\n"+
		"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK"+callID+method+"\n"+
		"From: "+from+"\nTo: "+to+"\nCall-ID: "+callID+"\nCSeq: 1 "+method+"\n"+
		"User-Agent: test phone\nMax-Forwards: 70\n"+strings.Join(extra, "")+"Content-Length: 0\n\n")
}

func response(req *sip.Request, code int, toTag string, extra ...string) *sip.Response {
	res := sip.NewResponse(req, code, "")
	if toTag != "" && res.To.Tag() == "" {
		res.To.Params = res.To.Params.Set("tag", toTag)
	}
	for _, e := range extra {
		name, value, _ := strings.Cut(e, ": ")
		res.Add(name, value)
	}
	return res
}

var caller = proxy.Forwarded{
	Source:        proxy.Flow{Proto: "UDP", Remote: netip.MustParseAddrPort("192.0.2.1:5060")},
	User:          sip.URI{Scheme: "sip", User: "alice", Host: "example.test"},
	Authenticated: true,
	RecordRoute:   true,
}

var bobPhone = proxy.Upstream{Target: sip.URI{Scheme: "sip", User: "bob", Host: "192.0.2.2", Port: 5062},
	Proto: "UDP", Addr: netip.MustParseAddrPort("192.0.2.2:5062")}

// sent returns a send func and a check of whether it ran.
func sent() (func(), func() bool) {
	var mu sync.Mutex
	done := false
	return func() { mu.Lock(); done = true; mu.Unlock() },
		func() bool { mu.Lock(); defer mu.Unlock(); return done }
}

// respond passes res through obs and waits until it was sent.
func respond(t *testing.T, obs proxy.RequestObserver, res *sip.Response, up proxy.Upstream) {
	t.Helper()
	send, wasSent := sent()
	obs.Respond(res, up, send)
	deadline := time.Now().Add(5 * time.Second)
	for !wasSent() {
		if time.Now().After(deadline) {
			t.Fatalf("%d never sent", res.StatusCode)
		}
		time.Sleep(time.Millisecond)
	}
}

// answer starts a call and answers it at t0+ring.
func (f *fixture) answer(t *testing.T, callID string, ring time.Duration, extra ...string) {
	t.Helper()
	inv := request(t, "INVITE", callID, "", false)
	obs := f.a.Forwarding(context.Background(), inv, caller)
	if obs == nil {
		t.Fatal("INVITE not tracked")
	}
	f.clock.Advance(ring)
	respond(t, obs, response(inv, 200, "b1", extra...), bobPhone)
}

func TestCallAnsweredAndHungUp(t *testing.T) {
	for _, tc := range []struct {
		name       string
		fromCallee bool
		by         string
	}{
		{"RFC 3261 §15.1: BYE from the caller", false, ByCaller},
		{"RFC 3261 §15.1: BYE from the callee", true, ByCallee},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, Config{})
			f.answer(t, "c1", 3*time.Second)
			if n := f.a.Calls(); n != 1 {
				t.Fatalf("Calls = %d", n)
			}
			f.clock.Advance(61 * time.Second)
			bye := request(t, "BYE", "c1", "b1", tc.fromCallee, "Reason: Q.850;cause=16;text=\"Normal call clearing\"\n")
			obs := f.a.Forwarding(context.Background(), bye, proxy.Forwarded{})
			if obs == nil {
				t.Fatal("BYE not matched to the call")
			}
			f.clock.Advance(time.Second) // the 200 comes later; the call ended at the BYE
			respond(t, obs, response(bye, 200, ""), bobPhone)
			r := f.st.waitRecords(t, 1)[0]
			want := store.CDR{ID: r.ID, Kind: KindCall, Status: StatusAnswered, CallID: "c1", FromURI: "sip:alice@example.test",
				FromTag: "a1", ToURI: "sip:bob@example.test", ToTag: "b1", RequestURI: "sip:bob@example.test",
				Caller: "alice@example.test", Callee: "bob@example.test", User: "alice@example.test",
				Source: "udp:192.0.2.1:5060", UserAgent: "test phone", Start: t0, Answer: t0.Add(3 * time.Second),
				End: t0.Add(64 * time.Second), Duration: 61 * time.Second, Code: 200, Reason: "OK", Q850: 16,
				Q850Text: "Normal call clearing", EndedBy: tc.by, EndReason: EndBye, Branch: "sip:bob@192.0.2.2:5062",
				BranchAddr: "udp:192.0.2.2:5062"}
			if r != want {
				t.Fatalf("record\n got %+v\nwant %+v", r, want)
			}
			if n := f.a.Calls(); n != 0 {
				t.Fatalf("Calls after the BYE = %d", n)
			}
		})
	}
}

func TestFailedCalls(t *testing.T) {
	for _, tc := range []struct {
		name      string
		code      int
		up        proxy.Upstream
		extra     []string
		status    string
		by, why   string
		q850      int
		q850Text  string
		wantCause bool
	}{
		{name: "busy: 486 from the callee", code: 486, up: bobPhone, extra: []string{"Reason: Q.850;cause=17"},
			status: StatusFailed, by: ByCallee, why: EndRejected, q850: 17},
		{name: "RFC 3261 §16.10: cancelled by the caller", code: 487, up: proxy.Upstream{Local: true, Cancelled: true},
			status: StatusCancelled, by: ByCaller, why: EndCancel},
		{name: "cancelled by an operator (REST API)", code: 487, up: proxy.Upstream{Local: true, Killed: EndAPI},
			status: StatusCancelled, by: ByProxy, why: EndAPI},
		{name: "an operator's cancel of a challenged call is recorded", code: 407, up: proxy.Upstream{Killed: EndAPI},
			status: StatusCancelled, by: ByProxy, why: EndAPI},
		{name: "RFC 3261 §16.8: Timer C", code: 408, up: proxy.Upstream{Local: true},
			status: StatusFailed, by: ByProxy, why: EndTimeout},
		{name: "408 from downstream", code: 408, up: bobPhone, status: StatusFailed, by: ByCallee, why: EndRejected},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, Config{})
			inv := request(t, "INVITE", "c2", "", false)
			obs := f.a.Forwarding(context.Background(), inv, caller)
			f.clock.Advance(5 * time.Second)
			respond(t, obs, response(inv, tc.code, "x9", tc.extra...), tc.up)
			r := f.st.waitRecords(t, 1)[0]
			if r.Status != tc.status || r.Code != tc.code || r.EndedBy != tc.by || r.EndReason != tc.why ||
				r.Q850 != tc.q850 || !r.Answer.IsZero() || r.Duration != 0 || !r.End.Equal(t0.Add(5*time.Second)) {
				t.Fatalf("record %+v", r)
			}
			if f.a.Calls() != 0 {
				t.Fatal("failed call still tracked")
			}
		})
	}
}

func TestCallTimeouts(t *testing.T) {
	t.Run("maximum duration without a BYE", func(t *testing.T) {
		f := newFixture(t, Config{MaxDuration: time.Hour})
		f.answer(t, "c3", time.Second)
		f.clock.Advance(59 * time.Minute)
		if len(f.st.all()) != 0 {
			t.Fatal("ended early")
		}
		f.clock.Advance(time.Minute)
		r := f.st.waitRecords(t, 1)[0]
		if r.EndedBy != ByProxy || r.EndReason != EndMaxDuration || r.Duration != time.Hour || r.Status != StatusAnswered {
			t.Fatalf("record %+v", r)
		}
	})
	t.Run("RFC 4028: session expires without a refresh", func(t *testing.T) {
		f := newFixture(t, Config{})
		f.answer(t, "c4", time.Second, "Session-Expires: 90;refresher=uac")
		f.clock.Advance(60 * time.Second)
		// RFC 4028 §10: the refresh's 2xx restarts the interval.
		re := request(t, "UPDATE", "c4", "b1", false, "Session-Expires: 90\n")
		obs := f.a.Forwarding(context.Background(), re, proxy.Forwarded{})
		if obs == nil {
			t.Fatal("refresh not matched")
		}
		respond(t, obs, response(re, 200, "", "Session-Expires: 90;refresher=uac"), bobPhone)
		f.clock.Advance(80 * time.Second)
		if len(f.st.all()) != 0 {
			t.Fatal("session ended despite the refresh")
		}
		f.clock.Advance(10 * time.Second)
		r := f.st.waitRecords(t, 1)[0]
		if r.EndReason != EndSessionExpired || r.EndedBy != ByProxy || r.Duration != 150*time.Second {
			t.Fatalf("record %+v", r)
		}
	})
	t.Run("a BYE after the timeout finds no call", func(t *testing.T) {
		f := newFixture(t, Config{MaxDuration: time.Minute})
		f.answer(t, "c5", 0)
		f.clock.Advance(time.Minute)
		f.st.waitRecords(t, 1)
		if obs := f.a.Forwarding(context.Background(), request(t, "BYE", "c5", "b1", false), proxy.Forwarded{}); obs != nil {
			t.Fatal("BYE matched an ended call")
		}
	})
}

func TestForkedCall(t *testing.T) {
	// RFC 3261 §16.7 step 5: every 2xx goes upstream; the first answers.
	f := newFixture(t, Config{})
	inv := request(t, "INVITE", "c6", "", false)
	obs := f.a.Forwarding(context.Background(), inv, caller)
	desk := proxy.Upstream{Target: sip.URI{Scheme: "sip", User: "bob", Host: "192.0.2.3"}, Proto: "TCP",
		Addr: netip.MustParseAddrPort("192.0.2.3:5060")}
	respond(t, obs, response(inv, 200, "desk"), desk)
	respond(t, obs, response(inv, 200, "mobile"), bobPhone)
	bye := request(t, "BYE", "c6", "desk", false)
	respond(t, f.a.Forwarding(context.Background(), bye, proxy.Forwarded{}), response(bye, 200, ""), desk)
	r := f.st.waitRecords(t, 1)[0]
	if r.Branch != "sip:bob@192.0.2.3" || r.BranchAddr != "tcp:192.0.2.3:5060" || r.ToTag != "desk" {
		t.Fatalf("record %+v", r)
	}
	// The second branch's dialog was never tracked.
	if obs := f.a.Forwarding(context.Background(), request(t, "BYE", "c6", "mobile", false), proxy.Forwarded{}); obs != nil {
		t.Fatal("BYE of the other branch's dialog matched")
	}
}

func TestResponseHeldUntilCommitted(t *testing.T) {
	f := newFixture(t, Config{})
	f.answer(t, "c7", 0)
	gate := make(chan struct{})
	f.st.mu.Lock()
	f.st.gate = gate
	f.st.mu.Unlock()
	bye := request(t, "BYE", "c7", "b1", false)
	send, wasSent := sent()
	f.a.Forwarding(context.Background(), bye, proxy.Forwarded{}).Respond(response(bye, 200, ""), bobPhone, send)
	time.Sleep(20 * time.Millisecond)
	if wasSent() {
		t.Fatal("the BYE's 200 went upstream before its record was committed")
	}
	close(gate)
	f.st.waitRecords(t, 1)
	deadline := time.Now().Add(5 * time.Second)
	for !wasSent() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if !wasSent() {
		t.Fatal("200 never sent")
	}
}

func TestStoreFailureReleasesResponse(t *testing.T) {
	f := newFixture(t, Config{})
	f.st.fail = 1 // the first attempt fails, the retry commits
	inv := request(t, "INVITE", "c8", "", false)
	respond(t, f.a.Forwarding(context.Background(), inv, caller), response(inv, 486, "x"), bobPhone)
	f.st.waitRecords(t, 1)
}

func TestLimitAndShutdown(t *testing.T) {
	f := newFixture(t, Config{MaxCalls: 1})
	f.answer(t, "c9", 0)
	if obs := f.a.Forwarding(context.Background(), request(t, "INVITE", "c10", "", false), caller); obs != nil {
		t.Fatal("call beyond max_calls tracked")
	}
	ringing := request(t, "INVITE", "c11", "", false)
	f.a.Close()
	if obs := f.a.Forwarding(context.Background(), ringing, caller); obs != nil {
		t.Fatal("tracked after Close")
	}
	rs := f.st.waitRecords(t, 1)
	if rs[0].CallID != "c9" || rs[0].EndReason != EndShutdown || rs[0].EndedBy != ByProxy {
		t.Fatalf("record %+v", rs[0])
	}
}

func TestMessages(t *testing.T) {
	f := newFixture(t, Config{})
	msg := request(t, "MESSAGE", "m1", "", false)
	if f.a.Forwarding(context.Background(), msg, caller) != nil {
		t.Fatal("MESSAGE recorded with messages off")
	}
	f = newFixture(t, Config{Messages: true})
	respond(t, f.a.Forwarding(context.Background(), msg, caller), response(msg, 202, "m"), bobPhone)
	r := f.st.waitRecords(t, 1)[0]
	if r.Kind != KindMessage || r.Status != StatusAnswered || r.Code != 202 || r.Branch == "" {
		t.Fatalf("record %+v", r)
	}
}

func TestSpiralIsRecordedOnce(t *testing.T) {
	f := newFixture(t, Config{})
	inv := request(t, "INVITE", "c12", "", false)
	outer := f.a.Forwarding(context.Background(), inv, caller)
	if inner := f.a.Forwarding(context.Background(), inv, caller); inner != nil {
		t.Fatal("the spiralled INVITE was tracked twice")
	}
	respond(t, outer, response(inv, 486, "x"), bobPhone)
	f.st.waitRecords(t, 1)
}

func TestExport(t *testing.T) {
	r := store.CDR{ID: "1", Kind: KindCall, Status: StatusAnswered, CallID: "c,1", Start: t0, Answer: t0.Add(time.Second),
		End: t0.Add(3 * time.Second), Duration: 2 * time.Second, Code: 200, Reason: "OK"}
	var csv, js strings.Builder
	if err := WriteCSV(&csv, []store.CDR{r}); err != nil {
		t.Fatal(err)
	}
	if err := WriteJSON(&js, []store.CDR{r}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(csv.String()), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "id,kind,status,call_id,") ||
		!strings.Contains(lines[1], `"c,1"`) || !strings.Contains(lines[1], "2025-03-01T12:00:01.000Z,2025-03-01T12:00:03.000Z,2.000,200,OK") {
		t.Fatalf("CSV:\n%s", csv.String())
	}
	if !strings.Contains(js.String(), `"duration":2,"code":200`) || strings.Count(js.String(), "\n") != 1 {
		t.Fatalf("JSON: %s", js.String())
	}
}

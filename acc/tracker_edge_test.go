package acc

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/hlas-voip/hlas/proxy"
	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/store"
)

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// holdWriter makes the writer busy committing one unrelated record that
// waits for a gate, as a slow disk would; the returned release opens the
// gate to let it (and everything after it) commit. It may be called more
// than once, and runs when the test ends (before the fixture's Close,
// which would wait for the gate).
func (f *fixture) holdWriter(t *testing.T) (release func()) {
	t.Helper()
	gate := make(chan struct{})
	release = sync.OnceFunc(func() { close(gate) })
	t.Cleanup(release)
	f.st.mu.Lock()
	f.st.gate = gate
	f.st.mu.Unlock()
	f.a.Record(store.CDR{Kind: KindRegister, Status: StatusFailed, CallID: "blocker", Start: t0, End: t0}, nil)
	waitFor(t, "the writer to take the blocker", func() bool { return f.a.w.queued() == 0 })
	return release
}

// Close records every open call, however many there are: more open calls
// than QueueSize, while the writer is still busy committing, all end up
// on disk as "shutdown" (none dropped as queue_full).
func TestCloseRecordsAllOpenCallsBeyondQueueSize(t *testing.T) {
	const open = 10
	f := newFixture(t, Config{QueueSize: 4})
	for i := range open {
		f.answer(t, fmt.Sprintf("sd%d", i), time.Second)
	}
	release := f.holdWriter(t)
	closed := make(chan struct{})
	go func() { f.a.Close(); close(closed) }()
	waitFor(t, "Close to end the calls", func() bool { return f.a.Calls() == 0 })
	time.Sleep(20 * time.Millisecond) // let Close queue what it would
	release()
	<-closed
	var shutdown int
	for _, r := range f.st.all() {
		if r.EndReason == EndShutdown {
			shutdown++
		}
	}
	if shutdown != open {
		t.Fatalf("%d of %d open calls recorded at a clean shutdown", shutdown, open)
	}
	if n := testutil.ToFloat64(f.a.met.dropped.WithLabelValues("queue_full")); n != 0 {
		t.Fatalf("%v records dropped as queue_full", n)
	}
}

// A forwarded INVITE challenged downstream (a gateway's 407) and retried
// with credentials under the same Call-ID and From tag, a new CSeq, is
// one call with one record, as for the server's own challenges
// (Refused): the 407 goes out at once and records nothing, the retry is
// tracked as the call. A challenge the caller answers with CANCEL (no
// retry will come) is recorded as cancelled.
func TestDownstreamChallengeThenRetryIsOneRecord(t *testing.T) {
	t.Run("retried and answered", func(t *testing.T) {
		f := newFixture(t, Config{})
		inv := request(t, "INVITE", "ch1", "", false)
		obs := f.a.Forwarding(context.Background(), inv, caller)
		send, wasSent := sent()
		obs.Respond(response(inv, 407, "gw", `Proxy-Authenticate: Digest realm="gw", nonce="n1"`), bobPhone, send)
		if !wasSent() {
			t.Fatal("the 407 was held")
		}
		if n := f.a.Calls(); n != 0 {
			t.Fatalf("Calls after the challenge = %d", n)
		}

		retry := request(t, "INVITE", "ch1", "", false,
			`Proxy-Authorization: Digest username="alice", realm="gw", nonce="n1", uri="sip:bob@example.test", response="x"`+"\n")
		retry.CSeq.Seq = 2
		obs = f.a.Forwarding(context.Background(), retry, caller)
		if obs == nil {
			t.Fatal("retry not tracked")
		}
		respond(t, obs, response(retry, 200, "b1"), bobPhone)
		bye := request(t, "BYE", "ch1", "b1", false)
		respond(t, f.a.Forwarding(context.Background(), bye, proxy.Forwarded{}), response(bye, 200, ""), bobPhone)

		time.Sleep(50 * time.Millisecond)
		recs := f.st.all()
		if len(recs) != 1 || recs[0].Code != 200 || recs[0].EndReason != EndBye {
			for _, r := range recs {
				t.Logf("record: status=%s code=%d end=%s", r.Status, r.Code, r.EndReason)
			}
			t.Fatalf("%d records for one challenged-then-answered call, want the answered one", len(recs))
		}
	})
	t.Run("challenge of a cancelled call", func(t *testing.T) {
		f := newFixture(t, Config{})
		inv := request(t, "INVITE", "ch2", "", false)
		obs := f.a.Forwarding(context.Background(), inv, caller)
		respond(t, obs, response(inv, 401, "gw"), proxy.Upstream{Cancelled: true, Target: bobPhone.Target})
		if r := f.st.waitRecords(t, 1)[0]; r.Status != StatusCancelled || r.Code != 401 || r.EndedBy != ByCaller {
			t.Fatalf("record %+v", r)
		}
	})
}

// A MESSAGE challenged downstream and retried with credentials is one
// record, the retry's.
func TestDownstreamChallengedMessageIsOneRecord(t *testing.T) {
	f := newFixture(t, Config{Messages: true})
	msg := request(t, "MESSAGE", "mc1", "", false)
	send, wasSent := sent()
	f.a.Forwarding(context.Background(), msg, caller).Respond(response(msg, 401, "gw"), bobPhone, send)
	if !wasSent() {
		t.Fatal("the 401 was held")
	}
	retry := request(t, "MESSAGE", "mc1", "", false)
	retry.CSeq.Seq = 2
	respond(t, f.a.Forwarding(context.Background(), retry, caller), response(retry, 202, "m"), bobPhone)
	time.Sleep(20 * time.Millisecond)
	if r := f.st.waitRecords(t, 1)[0]; r.Code != 202 || r.Status != StatusAnswered {
		t.Fatalf("record %+v", r)
	}
}

// Both sides hang up at once (BYE glare). The caller's BYE ends the call
// and its 200 waits for the commit; the callee's BYE finds the call done,
// and its 200 waits for that same commit too: no party hears of the end
// before the record is on disk.
func TestByeGlareBoth200sWaitForTheCommit(t *testing.T) {
	f := newFixture(t, Config{})
	f.answer(t, "gl1", time.Second)
	byCaller := request(t, "BYE", "gl1", "b1", false)
	byCallee := request(t, "BYE", "gl1", "b1", true)
	obsCaller := f.a.Forwarding(context.Background(), byCaller, proxy.Forwarded{})
	obsCallee := f.a.Forwarding(context.Background(), byCallee, proxy.Forwarded{})
	if obsCaller == nil || obsCallee == nil {
		t.Fatal("BYEs not matched")
	}
	release := f.holdWriter(t)
	send1, sent1 := sent()
	obsCaller.Respond(response(byCaller, 200, ""), bobPhone, send1)
	send2, sent2 := sent()
	obsCallee.Respond(response(byCallee, 200, ""), bobPhone, send2)
	time.Sleep(20 * time.Millisecond)
	if n := len(f.st.all()); n != 0 {
		t.Fatalf("%d records committed through the gate", n)
	}
	if sent1() {
		t.Fatal("the first BYE's 200 went out before the commit")
	}
	if sent2() {
		t.Fatal("the second BYE's 200 went out before the call's record was committed")
	}
	release()
	waitFor(t, "both 200s", func() bool { return sent1() && sent2() })
	if n := len(f.st.all()); n != 2 { // the blocker and the call
		t.Fatalf("%d records, want 2", n)
	}
}

// A 2xx retransmitted after an answer recorded at once (no Record-Route:
// "untracked") goes out after that record's commit, as the first did.
func TestRetransmitted2xxAfterUntrackedAnswerWaitsForTheCommit(t *testing.T) {
	f := newFixture(t, Config{})
	noRR := caller
	noRR.RecordRoute = false
	inv := request(t, "INVITE", "ut1", "", false)
	obs := f.a.Forwarding(context.Background(), inv, noRR)
	release := f.holdWriter(t)
	send1, sent1 := sent()
	obs.Respond(response(inv, 200, "b1"), bobPhone, send1)
	send2, sent2 := sent()
	obs.Respond(response(inv, 200, "b1"), bobPhone, send2)
	time.Sleep(20 * time.Millisecond)
	if sent1() || sent2() {
		t.Fatalf("2xx sent before the commit (first %v, retransmission %v)", sent1(), sent2())
	}
	release()
	waitFor(t, "both 2xx", func() bool { return sent1() && sent2() })
	if r := f.st.waitRecords(t, 2)[1]; r.EndReason != EndUntracked {
		t.Fatalf("record %+v", r)
	}
}

// A response on a call Close ended (its BYE was on its way) goes out once
// the shutdown records are written, not never.
func TestResponseAfterCloseIsReleased(t *testing.T) {
	f := newFixture(t, Config{})
	f.answer(t, "cl1", time.Second)
	bye := request(t, "BYE", "cl1", "b1", false)
	obs := f.a.Forwarding(context.Background(), bye, proxy.Forwarded{})
	f.a.Close()
	respond(t, obs, response(bye, 200, ""), bobPhone)
	if r := f.st.waitRecords(t, 1)[0]; r.EndReason != EndShutdown {
		t.Fatalf("record %+v", r)
	}
}

// An INVITE outside a dialog with the Call-ID and From tag of a call
// already answered (the inner pass of a spiral that reaches the proxy
// after another fork branch answered, or a retransmission) is not a new
// call: the answered call keeps its entry, the inner outcome makes no
// record, and the caller's BYE still ends the call: one record.
func TestSecondInviteAfterAnswerKeepsTheCall(t *testing.T) {
	f := newFixture(t, Config{})
	inv := request(t, "INVITE", "sp1", "", false)
	outer := f.a.Forwarding(context.Background(), inv, caller)
	respond(t, outer, response(inv, 200, "b1"), bobPhone)
	inner := f.a.Forwarding(context.Background(), inv, caller)
	if inner != nil {
		respond(t, inner, response(inv, 487, "x"), proxy.Upstream{Local: true, Cancelled: true})
	}
	// The inner pass refused by the server itself makes no record either.
	send, wasSent := sent()
	f.a.Refused(inv, response(inv, 482, "p1"), "", "", send)
	waitFor(t, "the 482", wasSent)
	f.clock.Advance(30 * time.Second)
	bye := request(t, "BYE", "sp1", "b1", false)
	obs := f.a.Forwarding(context.Background(), bye, proxy.Forwarded{})
	if obs == nil {
		t.Fatalf("the caller's BYE of the answered call is not matched any more (inner tracked: %v)", inner != nil)
	}
	respond(t, obs, response(bye, 200, ""), bobPhone)
	time.Sleep(20 * time.Millisecond)
	if recs := f.st.all(); len(recs) != 1 || recs[0].EndReason != EndBye {
		t.Fatalf("%d records, want the answered call's: %+v", len(recs), recs)
	}
}

// hangStore is a store whose commits hang until their context ends, as
// on a PostgreSQL connection gone silent.
type hangStore struct {
	memStore
	mu    sync.Mutex
	tries int
}

func (h *hangStore) WriteCDRs(ctx context.Context, cdrs []store.CDR) error {
	h.mu.Lock()
	h.tries++
	h.mu.Unlock()
	<-ctx.Done()
	return ctx.Err()
}

// A hung commit does not hold the responses (nor Close) forever: each
// attempt times out, and after the last the records are given up and
// counted and their responses released.
func TestHungStoreCommitTimesOut(t *testing.T) {
	st := &hangStore{}
	a, err := New(Config{}, Env{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	a.w.timeout = 10 * time.Millisecond // before any record: the writer reads it after a Take
	inv := request(t, "INVITE", "hg1", "", false)
	respond(t, a.Forwarding(context.Background(), inv, caller), response(inv, 486, "x"), bobPhone)
	if n := testutil.ToFloat64(a.met.dropped.WithLabelValues("store_error")); n != 1 {
		t.Fatalf("store_error drops = %v, want 1", n)
	}
	st.mu.Lock()
	tries := st.tries
	st.mu.Unlock()
	if tries != writeAttempts {
		t.Fatalf("%d commit attempts, want %d", tries, writeAttempts)
	}
	a.Record(store.CDR{Kind: KindRegister, CallID: "hg2"}, nil)
	done := make(chan struct{})
	go func() { a.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close hangs on a hung store")
	}
}

// AOR of a URI without a user part does not keep the parsed text (the
// packet buffer) alive: it is a copy.
func TestAORCopiesHostOnlyURI(t *testing.T) {
	src := "sip:example.test:5060"
	u, err := sip.ParseURI(src)
	if err != nil {
		t.Fatal(err)
	}
	inside := func(s string) bool {
		p, b := uintptr(unsafe.Pointer(unsafe.StringData(s))), uintptr(unsafe.Pointer(unsafe.StringData(src)))
		return p >= b && p < b+uintptr(len(src))
	}
	if !inside(u.Host) {
		t.Skip("the parser copies the host: nothing to check")
	}
	if got := AOR(u); got != "example.test" || inside(got) {
		t.Fatalf("AOR = %q, a substring of the URI text: %v", got, inside(got))
	}
}

package acc

import (
	"context"
	"testing"
	"time"
)

// refuse passes res to Refused and waits until it was sent.
func (f *fixture) refuse(t *testing.T, code int, callID string, cseq uint32, user string) {
	t.Helper()
	inv := request(t, "INVITE", callID, "", false)
	inv.CSeq.Seq = cseq
	send, wasSent := sent()
	f.a.Refused(inv, response(inv, code, "p1"), "udp:192.0.2.1:5060", user, send)
	deadline := time.Now().Add(5 * time.Second)
	for !wasSent() {
		if time.Now().After(deadline) {
			t.Fatalf("%d never sent", code)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestRefusedCall(t *testing.T) {
	for _, tc := range []struct {
		code int
		why  string
	}{{404, EndRejected}, {480, EndRejected}, {403, EndRejected}, {483, EndRejected}, {488, EndRejected},
		{503, EndRejected}, {302, EndRedirected}, {300, EndRedirected}} {
		f := newFixture(t, Config{})
		f.refuse(t, tc.code, "r1", 1, "alice@example.test")
		r := f.st.waitRecords(t, 1)[0]
		if r.Kind != KindCall || r.Status != StatusFailed || r.Code != tc.code || r.EndedBy != ByProxy ||
			r.EndReason != tc.why || r.CallID != "r1" || r.FromTag != "a1" || r.ToTag != "p1" ||
			r.User != "alice@example.test" || r.Caller != "alice@example.test" || r.Callee != "bob@example.test" ||
			r.Source != "udp:192.0.2.1:5060" || r.UserAgent != "test phone" || !r.Start.Equal(t0) || !r.End.Equal(t0) ||
			!r.Answer.IsZero() || r.Duration != 0 || r.ID == "" {
			t.Errorf("%d: record %+v", tc.code, r)
		}
	}
}

// A challenge is not a call attempt: the retry with credentials (a new
// CSeq) is, and makes the one record.
func TestRefusedChallengeNotRecorded(t *testing.T) {
	f := newFixture(t, Config{})
	f.refuse(t, 407, "r2", 1, "")
	f.refuse(t, 401, "r2", 1, "")
	f.refuse(t, 404, "r2", 2, "alice@example.test")
	if r := f.st.waitRecords(t, 1)[0]; r.Code != 404 {
		t.Fatalf("record %+v", r)
	}
	time.Sleep(20 * time.Millisecond)
	f.st.waitRecords(t, 1)
}

// A retransmission of a refused INVITE (its response was lost) is refused
// anew: one record; after 64*T1 the same key counts again.
func TestRefusedRetransmission(t *testing.T) {
	f := newFixture(t, Config{})
	f.refuse(t, 404, "r3", 1, "")
	f.clock.Advance(4 * time.Second)
	f.refuse(t, 404, "r3", 1, "")
	f.st.waitRecords(t, 1)
	f.refuse(t, 404, "r3", 2, "") // a new attempt in the same dialog-to-be
	f.st.waitRecords(t, 2)
	f.clock.Advance(refusalMemory - 2*time.Second) // the first is 34 s old, the second 30 s
	f.refuse(t, 404, "r3", 1, "")
	f.st.waitRecords(t, 3)
	if n := len(f.a.refused); n != 2 {
		t.Fatalf("%d refusals remembered, want 2 (the old ones forgotten)", n)
	}
}

// The refusals remembered are bounded by MaxCalls.
func TestRefusedMemoryBounded(t *testing.T) {
	f := newFixture(t, Config{MaxCalls: 3})
	for i := range 10 {
		f.refuse(t, 404, "r4", uint32(i+1), "")
	}
	f.st.waitRecords(t, 10)
	if n := len(f.a.refused); n > 3 || len(f.a.refusedQ) != n {
		t.Fatalf("%d refusals remembered (queue %d), want <= 3", n, len(f.a.refusedQ))
	}
}

// The inner pass of a spiral refusing the INVITE records nothing: the
// outer forwarded INVITE gets the refusal as its branch's response and
// records it.
func TestRefusedInsideSpiral(t *testing.T) {
	f := newFixture(t, Config{})
	inv := request(t, "INVITE", "r5", "", false)
	outer := f.a.Forwarding(context.Background(), inv, caller)
	f.refuse(t, 404, "r5", 1, "")
	time.Sleep(20 * time.Millisecond)
	if n := len(f.st.all()); n != 0 {
		t.Fatalf("%d records from the inner pass", n)
	}
	respond(t, outer, response(inv, 404, "p1"), bobPhone)
	if r := f.st.waitRecords(t, 1)[0]; r.EndedBy != ByCallee || r.Code != 404 {
		t.Fatalf("record %+v", r)
	}
}

// Only INVITEs outside a dialog are call attempts.
func TestRefusedOtherRequests(t *testing.T) {
	f := newFixture(t, Config{})
	for _, req := range []struct{ method, toTag string }{{"MESSAGE", ""}, {"BYE", "b1"}, {"INVITE", "b1"}, {"OPTIONS", ""}} {
		r := request(t, req.method, "r6", req.toTag, false)
		send, wasSent := sent()
		f.a.Refused(r, response(r, 404, "p1"), "", "", send)
		if !wasSent() {
			t.Fatalf("%s: the response was held", req.method)
		}
	}
	time.Sleep(20 * time.Millisecond)
	if n := len(f.st.all()); n != 0 {
		t.Fatalf("%d records", n)
	}
}

// The refusal goes out after its record is committed.
func TestRefusedHeldUntilCommitted(t *testing.T) {
	f := newFixture(t, Config{})
	gate := make(chan struct{})
	f.st.mu.Lock()
	f.st.gate = gate
	f.st.mu.Unlock()
	inv := request(t, "INVITE", "r7", "", false)
	send, wasSent := sent()
	f.a.Refused(inv, response(inv, 404, "p1"), "", "", send)
	time.Sleep(20 * time.Millisecond)
	if wasSent() {
		t.Fatal("the 404 went upstream before its record was committed")
	}
	close(gate)
	f.st.waitRecords(t, 1)
	deadline := time.Now().Add(5 * time.Second)
	for !wasSent() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if !wasSent() {
		t.Fatal("404 never sent")
	}
}

package acc

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/hlas-voip/hlas/proxy"
	"github.com/hlas-voip/hlas/store"
)

// A media relay that sees no media on an answered call for too long ends
// it (EndCall), as the session timer would: the record says the proxy
// ended it for lack of media, and the BYE that may come later finds no
// call.
func TestEndCallByMediaTimeout(t *testing.T) {
	f := newFixture(t, Config{})
	f.answer(t, "mt1", 2*time.Second)
	f.clock.Advance(90 * time.Second)
	for _, tc := range []struct{ name, callID, from, to string }{
		{"unknown Call-ID", "nope", "a1", "b1"},
		{"unknown callee tag", "mt1", "a1", "b2"},
		{"tags swapped: the callee's is not the caller's", "mt1", "b1", "a1"},
	} {
		if f.a.EndCall(proxy.CallEnd{CallID: tc.callID, CallerTag: tc.from, CalleeTag: tc.to, Why: EndMediaTimeout}) {
			t.Fatalf("%s: EndCall ended a call", tc.name)
		}
	}
	if !f.a.EndCall(proxy.CallEnd{CallID: "mt1", CallerTag: "a1", CalleeTag: "b1", Why: EndMediaTimeout}) {
		t.Fatal("EndCall did not find the answered call")
	}
	r := f.st.waitRecords(t, 1)[0]
	want := store.CDR{ID: r.ID, Kind: KindCall, Status: StatusAnswered, CallID: "mt1", FromURI: "sip:alice@example.test",
		FromTag: "a1", ToURI: "sip:bob@example.test", ToTag: "b1", RequestURI: "sip:bob@example.test",
		Caller: "alice@example.test", Callee: "bob@example.test", User: "alice@example.test",
		Source: "udp:192.0.2.1:5060", UserAgent: "test phone", Start: t0, Answer: t0.Add(2 * time.Second),
		End: t0.Add(92 * time.Second), Duration: 90 * time.Second, Code: 200, Reason: "OK",
		EndedBy: ByProxy, EndReason: EndMediaTimeout, Branch: "sip:bob@192.0.2.2:5062", BranchAddr: "udp:192.0.2.2:5062"}
	if r != want {
		t.Fatalf("record\n got %+v\nwant %+v", r, want)
	}
	if n := f.a.Calls(); n != 0 {
		t.Fatalf("Calls = %d after EndCall", n)
	}
	if f.a.EndCall(proxy.CallEnd{CallID: "mt1", CallerTag: "a1", CalleeTag: "b1", Why: EndMediaTimeout}) {
		t.Fatal("EndCall ended the call twice")
	}
	if obs := f.a.Forwarding(context.Background(), request(t, "BYE", "mt1", "b1", false), proxy.Forwarded{}); obs != nil {
		t.Fatal("the BYE after EndCall matched the ended call")
	}
	f.clock.Advance(DefaultMaxDuration)
	time.Sleep(20 * time.Millisecond)
	if n := len(f.st.all()); n != 1 {
		t.Fatalf("%d records: the call ended by EndCall timed out too", n)
	}
}

// EndCall ends answered calls only: a ringing call ends with its final
// response, and after Close there is nothing left to end.
func TestEndCallNotAnswered(t *testing.T) {
	f := newFixture(t, Config{})
	inv := request(t, "INVITE", "mt2", "", false)
	obs := f.a.Forwarding(context.Background(), inv, caller)
	if f.a.EndCall(proxy.CallEnd{CallID: "mt2", CallerTag: "a1", CalleeTag: "", Why: EndMediaTimeout}) || f.a.EndCall(proxy.CallEnd{CallID: "mt2", CallerTag: "a1", CalleeTag: "b1", Why: EndMediaTimeout}) {
		t.Fatal("EndCall ended a ringing call")
	}
	respond(t, obs, response(inv, 486, "b1"), bobPhone)
	if r := f.st.waitRecords(t, 1)[0]; r.EndReason != EndRejected {
		t.Fatalf("record %+v", r)
	}
	f.answer(t, "mt3", 0)
	f.a.Close()
	if f.a.EndCall(proxy.CallEnd{CallID: "mt3", CallerTag: "a1", CalleeTag: "b1", Why: EndMediaTimeout}) {
		t.Fatal("EndCall after Close")
	}
	if r := f.st.waitRecords(t, 2)[1]; r.CallID != "mt3" || r.EndReason != EndShutdown {
		t.Fatalf("record %+v", r)
	}
}

// One timer serves every answered call, armed for the earliest deadline:
// calls with different maximum durations and session timers (RFC 4028)
// each end at their own deadline, in order, whichever answered first, as
// an earlier deadline comes or the earliest call hangs up.
func TestExpiryOfManyCalls(t *testing.T) {
	f := newFixture(t, Config{MaxDuration: time.Hour})
	// Answered at t0+0s, 1s, 2s, ...: max-duration at t0+1h+i s.
	for i := range 5 {
		f.answer(t, fmt.Sprintf("ex%d", i), 0)
		f.clock.Advance(time.Second)
	}
	// At t0+5s, a call with a 90 s session timer: due first, at t0+95s.
	f.answer(t, "ex-se", 0, "Session-Expires: 90")
	if n := f.clock.Pending(); n != 1 {
		t.Fatalf("%d timers pending for 6 calls, want 1", n)
	}
	// ex0, the earliest max-duration, hangs up.
	bye := request(t, "BYE", "ex0", "b1", false)
	respond(t, f.a.Forwarding(context.Background(), bye, proxy.Forwarded{}), response(bye, 200, ""), bobPhone)
	f.st.waitRecords(t, 1)

	f.clock.Advance(90*time.Second - time.Millisecond)
	if n := len(f.st.all()); n != 1 {
		t.Fatalf("%d records before the session expired", n)
	}
	f.clock.Advance(time.Millisecond)
	r := f.st.waitRecords(t, 2)[1]
	if r.CallID != "ex-se" || r.EndReason != EndSessionExpired || !r.End.Equal(t0.Add(95*time.Second)) || r.Duration != 90*time.Second {
		t.Fatalf("record %+v", r)
	}

	f.clock.Advance(time.Hour) // to t0+1h+95s: all due
	recs := f.st.waitRecords(t, 6)[2:]
	for i, r := range recs {
		callID, end := fmt.Sprintf("ex%d", i+1), t0.Add(time.Hour+time.Duration(i+1)*time.Second)
		if r.CallID != callID || r.EndReason != EndMaxDuration || r.EndedBy != ByProxy || !r.End.Equal(end) ||
			r.Duration != time.Hour || r.Status != StatusAnswered {
			t.Errorf("record %d: %+v, want %s ended at %v", i, r, callID, end)
		}
	}
	if n := f.a.Calls(); n != 0 {
		t.Fatalf("Calls = %d", n)
	}
	if n := f.clock.Pending(); n != 0 {
		t.Fatalf("%d timers pending without calls", n)
	}
}

// Calls that fall due together while the disk is slow and the queue is
// full all end (none stays tracked): those the queue takes are written,
// the rest dropped and counted, and the sweep still ends later calls.
func TestExpiryWithTheQueueFull(t *testing.T) {
	const calls, queue = 5, 2
	f := newFixture(t, Config{QueueSize: queue, MaxDuration: time.Hour})
	for i := range calls {
		f.answer(t, fmt.Sprintf("qf%d", i), 0)
	}
	release := f.holdWriter(t)
	f.clock.Advance(time.Hour)
	if n := f.a.Calls(); n != 0 {
		t.Fatalf("Calls = %d after every call fell due", n)
	}
	if n := testutil.ToFloat64(f.a.met.dropped.WithLabelValues("queue_full")); n != calls-queue {
		t.Fatalf("%v records dropped as queue_full, want %d", n, calls-queue)
	}
	if n := f.clock.Pending(); n != 0 {
		t.Fatalf("%d timers pending without calls", n)
	}
	release()
	for _, r := range f.st.waitRecords(t, 1+queue)[1:] { // after the blocker
		if r.EndReason != EndMaxDuration || !strings.HasPrefix(r.CallID, "qf") {
			t.Errorf("record %+v", r)
		}
	}
	// A later call ends on time, and its record is the next one (the
	// writer is FIFO): none of the dropped ones was written meanwhile.
	f.answer(t, "qf-late", 0)
	f.clock.Advance(time.Hour)
	if r := f.st.waitRecords(t, 1+queue+1)[1+queue]; r.CallID != "qf-late" || r.EndReason != EndMaxDuration {
		t.Fatalf("last record %+v, want qf-late's", r)
	}
}

// Dialogs that share a Call-ID (two callers' tags, RFC 3261 §12) are
// calls of their own: each BYE ends its own, whichever of them was
// tracked first, and a new INVITE of either is no new call.
func TestCallsSharingACallID(t *testing.T) {
	for _, first := range []string{"x1", "x2", "x3"} {
		t.Run("the call of "+first+" hangs up first", func(t *testing.T) {
			f := newFixture(t, Config{})
			for _, tag := range []string{"x1", "x2", "x3"} {
				inv := request(t, "INVITE", "shared", "", false)
				inv.From.Params = inv.From.Params.Set("tag", tag)
				obs := f.a.Forwarding(context.Background(), inv, caller)
				if obs == nil {
					t.Fatalf("the INVITE of %s not tracked", tag)
				}
				respond(t, obs, response(inv, 200, "to-"+tag), bobPhone)
				if f.a.Forwarding(context.Background(), inv, caller) != nil {
					t.Fatalf("a second INVITE of %s tracked", tag)
				}
			}
			order := []string{first}
			for _, tag := range []string{"x1", "x2", "x3"} {
				if tag != first {
					order = append(order, tag)
				}
			}
			for i, tag := range order {
				bye := request(t, "BYE", "shared", "to-"+tag, true) // from the callee
				bye.To.Params = bye.To.Params.Set("tag", tag)
				obs := f.a.Forwarding(context.Background(), bye, proxy.Forwarded{})
				if obs == nil {
					t.Fatalf("the BYE of %s's call not matched", tag)
				}
				respond(t, obs, response(bye, 200, ""), bobPhone)
				r := f.st.waitRecords(t, i+1)[i]
				if r.FromTag != tag || r.ToTag != "to-"+tag || r.EndedBy != ByCallee || r.EndReason != EndBye {
					t.Fatalf("record %+v, want the call of %s", r, tag)
				}
				if n := f.a.Calls(); n != 2-i {
					t.Fatalf("Calls = %d after %d BYEs", n, i+1)
				}
			}
		})
	}
}

func TestPacked(t *testing.T) {
	for _, fields := range [][]string{
		{},
		{""},
		{"", "", ""},
		{"a", "", "bc"},
		{strings.Repeat("x", 127), strings.Repeat("y", 128), "z"},
		{strings.Repeat("u", 16383), strings.Repeat("v", 16384), strings.Repeat("w", 70000), "end"},
	} {
		p := pack(fields...)
		want := 0
		for _, s := range fields {
			want += uvarintLen(len(s)) + len(s)
		}
		if len(p) != want {
			t.Errorf("pack of %d fields: %d bytes, want %d", len(fields), len(p), want)
		}
		got := make([]string, len(fields))
		p.unpack(got)
		for i := range fields {
			if got[i] != fields[i] {
				t.Errorf("field %d of %d: %d bytes %.10q..., want %d bytes", i, len(fields), len(got[i]), got[i], len(fields[i]))
			}
		}
	}
}

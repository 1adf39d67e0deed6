package acc

import (
	"context"
	"testing"
	"time"

	"github.com/hlas-voip/hlas/proxy"
)

// ActiveCalls counts a user's calls from the INVITE forwarded until the
// call fails or ends, whichever way it ends: the limit on concurrent calls
// (package security) must neither leak a slot nor miss a call.
func TestActiveCallsPerUser(t *testing.T) {
	f := newFixture(t, Config{MaxDuration: time.Hour})
	const alice = "alice@example.test"
	if n := f.a.ActiveCalls(alice); n != 0 {
		t.Fatalf("ActiveCalls before any call = %d", n)
	}
	f.answer(t, "c1", time.Second) // answered, open
	failing := request(t, "INVITE", "c2", "", false)
	obsFail := f.a.Forwarding(context.Background(), failing, caller)
	ringing := request(t, "INVITE", "c3", "", false)
	_ = f.a.Forwarding(context.Background(), ringing, caller)
	if n := f.a.ActiveCalls(alice); n != 3 {
		t.Fatalf("ActiveCalls with one answered and two ringing = %d, want 3", n)
	}
	if n := f.a.ActiveCalls("bob@example.test"); n != 0 {
		t.Fatalf("another user's count = %d", n)
	}
	respond(t, obsFail, response(failing, 486, "x1"), bobPhone)
	if n := f.a.ActiveCalls(alice); n != 2 {
		t.Fatalf("after a 486: %d, want 2", n)
	}
	bye := request(t, "BYE", "c1", "b1", false)
	obs := f.a.Forwarding(context.Background(), bye, proxy.Forwarded{})
	respond(t, obs, response(bye, 200, ""), bobPhone)
	if n := f.a.ActiveCalls(alice); n != 1 {
		t.Fatalf("after the BYE: %d, want 1", n)
	}
	// An answered call nobody hangs up ends at max_duration.
	f.answer(t, "c4", time.Second)
	f.clock.Advance(2 * time.Hour)
	f.st.waitRecords(t, 3)
	if n := f.a.ActiveCalls(alice); n != 1 {
		t.Fatalf("after max_duration: %d, want 1 (the one still ringing)", n)
	}
}

package auth

import (
	"context"
	"testing"

	"github.com/hlas-voip/hlas/handler"
	"github.com/hlas-voip/hlas/sip"
)

// TestAllocations keeps the hot paths of authentication free of
// allocations but the ones they need: the text of the challenges (one
// string for all of them) and the context carrying the identity.
func TestAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts vary under the race detector")
	}
	ctx := context.Background()
	f := newFixture(t, nil)
	first := register(t, "alice@example.test")
	challenge := f.challenge(t, first, Origin, "alice", "example.test")

	t.Run("RFC3261 22.2 challenge", func(t *testing.T) {
		res := sip.NewResponse(first, 401, "")
		res.Fields = make([]sip.Field, 0, 8)
		if n := testing.AllocsPerRun(100, func() {
			res.Fields = res.Fields[:0]
			f.a.Challenge(res, first, Origin, "example.test", false)
		}); n != 1 {
			t.Errorf("%v allocations, want 1 (the header values)", n)
		}
		if len(res.Fields) != 2 {
			t.Errorf("%d challenges, want 2", len(res.Fields))
		}
	})

	// Requests answering the challenge with nonce-counts 1, 2, ...: each
	// is accepted once.
	const runs = 100
	reqs := make([]*sip.Request, 0, 2*(runs+1))
	for nc := uint32(1); nc <= 2*(runs+1); nc++ {
		reqs = append(reqs, register(t, "alice@example.test", "Authorization: "+answer(t, challenge, Origin, "SHA-256", "alice", "secret", first, nc)+"\r\n"))
	}
	next := 0
	t.Run("RFC7616 3.4 accepted", func(t *testing.T) {
		if n := testing.AllocsPerRun(runs, func() {
			if r := f.a.Check(ctx, reqs[next], Origin, "alice", "example.test"); r.Outcome != Accepted {
				t.Fatalf("request %d: %+v", next, r)
			}
			next++
		}); n != 0 {
			t.Errorf("%v allocations, want none", n)
		}
	})
	t.Run("middleware", func(t *testing.T) {
		h := f.a.Middleware(func(*sip.Request) (Kind, string, string, bool) { return Origin, "alice", "example.test", true })(
			handler.HandlerFunc(func(ctx context.Context, _ handler.ServerTx, _ *sip.Request) {
				if id, ok := FromContext(ctx); !ok || !id.Authenticated || id.Username != "alice" {
					t.Fatalf("identity %+v, %v", id, ok)
				}
			}))
		if n := testing.AllocsPerRun(runs, func() {
			h.ServeSIP(ctx, nil, reqs[next])
			next++
		}); n != 1 {
			t.Errorf("%v allocations, want 1 (the context)", n)
		}
	})
}

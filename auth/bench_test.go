package auth

import (
	"context"
	"fmt"
	"testing"

	"github.com/hlas-voip/hlas/handler"
	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/store"
)

// benchStore opens the embedded SQLite store in a temporary directory
// with 10000 subscribers, as `hlas user import` would leave it.
func benchStore(b *testing.B) store.Store {
	b.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, store.Config{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	us := make([]store.User, 10000)
	for i := range us {
		us[i] = NewUser(fmt.Sprintf("user%05d", i), "example.test", "secret")
	}
	if err := st.PutUsers(ctx, us); err != nil {
		b.Fatal(err)
	}
	return st
}

// cacheCases are the two configurations compared: every request reads
// the store, or the subscriber cache answers.
var cacheCases = []struct {
	name string
	size int
}{
	{"sqlite/no-cache", -1},
	{"sqlite/cache", 0},
}

// BenchmarkCheck measures the credential check of an authenticated
// request — parse the Authorization header, check the nonce, look the
// subscriber up, verify the SHA-256 digest, record the nonce-count — on
// the embedded SQLite store, with and without the subscriber cache. The
// requests answer one nonce with nonce-counts 1, 2, ..., built in batches
// outside the timer (a client's work, not the server's).
func BenchmarkCheck(b *testing.B) {
	st := benchStore(b)
	ctx := context.Background()
	const user, domain, batch = "user00042", "example.test", 4096
	for _, bc := range cacheCases {
		b.Run(bc.name, func(b *testing.B) {
			a, err := New(Config{UserCacheSize: bc.size}, Env{Secret: secret, Users: st})
			if err != nil {
				b.Fatal(err)
			}
			first := register(b, user+"@"+domain)
			var rec recorder
			if _, ok := a.Authenticate(ctx, &rec, first, Origin, user, domain); ok {
				b.Fatal("accepted without credentials")
			}
			challenge := rec.res[0]
			reqs := make([]*sip.Request, batch)
			nc := uint32(0)
			fill := func() {
				for i := range reqs {
					nc++
					h := answer(b, challenge, Origin, "SHA-256", user, "secret", first, nc)
					reqs[i] = register(b, user+"@"+domain, "Authorization: "+h+"\r\n")
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if i%batch == 0 {
					b.StopTimer()
					fill()
					b.StartTimer()
				}
				if r := a.Check(ctx, reqs[i%batch], Origin, user, domain); r.Outcome != Accepted {
					b.Fatalf("request %d: %+v", i, r)
				}
			}
		})
	}
}

// BenchmarkUserLookup measures the subscriber lookup alone, from one
// goroutine and from GOMAXPROCS at once (the server's workers), over 1000
// different subscribers. The clock is read once, outside the loop: Check
// reads it for the nonce anyway and hands it to the lookup.
func BenchmarkUserLookup(b *testing.B) {
	st := benchStore(b)
	ctx := context.Background()
	names := make([]string, 1000)
	for i := range names {
		names[i] = fmt.Sprintf("user%05d", i*7)
	}
	for _, bc := range cacheCases {
		a, err := New(Config{UserCacheSize: bc.size}, Env{Secret: secret, Users: st})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			now := a.env.Now()
			for i := 0; b.Loop(); i++ {
				if _, err := a.user(ctx, now, names[i%len(names)], "example.test"); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(bc.name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			now := a.env.Now()
			b.RunParallel(func(pb *testing.PB) {
				for i := 0; pb.Next(); i++ {
					if _, err := a.user(ctx, now, names[i%len(names)], "example.test"); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// discard is a Responder that drops what it is given.
type discard struct{}

func (discard) Respond(*sip.Response) error { return nil }

// BenchmarkChallenge measures the answer to a REGISTER without
// credentials (RFC 3261 §22.2): a new nonce and a 401 with the SHA-256
// and the MD5 challenge, built by sip.NewResponse.
func BenchmarkChallenge(b *testing.B) {
	a, err := New(Config{}, Env{Secret: secret, Users: newMemUsers(NewUser("alice", "example.test", "secret"))})
	if err != nil {
		b.Fatal(err)
	}
	req := register(b, "alice@example.test")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := a.Authenticate(ctx, discard{}, req, Origin, "alice", "example.test"); ok {
			b.Fatal("accepted without credentials")
		}
	}
}

// BenchmarkMiddleware measures the auth step of the handler chain for an
// authenticated REGISTER, the subscriber in the cache: Check, and the
// identity handed to the next handler in the context.
func BenchmarkMiddleware(b *testing.B) {
	const user, domain, batch = "alice", "example.test", 4096
	a, err := New(Config{}, Env{Secret: secret, Users: newMemUsers(NewUser(user, domain, "secret"))})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	first := register(b, user+"@"+domain)
	var rec recorder
	if _, ok := a.Authenticate(ctx, &rec, first, Origin, user, domain); ok {
		b.Fatal("accepted without credentials")
	}
	challenge := rec.res[0]
	var passed int
	h := a.Middleware(func(*sip.Request) (Kind, string, string, bool) { return Origin, user, domain, true })(
		handler.HandlerFunc(func(ctx context.Context, _ handler.ServerTx, _ *sip.Request) {
			if id, ok := FromContext(ctx); ok && id.Authenticated {
				passed++
			}
		}))
	reqs := make([]*sip.Request, batch)
	nc := uint32(0)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if i%batch == 0 {
			b.StopTimer()
			for j := range reqs {
				nc++
				reqs[j] = register(b, user+"@"+domain, "Authorization: "+answer(b, challenge, Origin, "MD5", user, "secret", first, nc)+"\r\n")
			}
			b.StartTimer()
		}
		h.ServeSIP(ctx, nil, reqs[i%batch])
		if passed != i+1 {
			b.Fatalf("request %d not passed on", i)
		}
	}
}

package resolve

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// CacheOnly: answers from the cache alone, no query on a miss, and no
// partial target list when only some of the answers are cached.
func TestCacheOnly(t *testing.T) {
	srv := startZones(t, "rfc3263.zone")
	r, clock := newResolver(t, srv, Config{})
	u := mustURI(t, "sip:alice@example.test")
	ctx := context.Background()

	if _, err := r.Resolve(CacheOnly(ctx), u); !errors.Is(err, ErrNotCached) {
		t.Fatalf("cold cache: %v, want ErrNotCached", err)
	}
	if n := srv.Queries("example.test.", dns.TypeNAPTR); n != 0 {
		t.Errorf("a cache-only lookup sent %d NAPTR queries", n)
	}
	full, err := r.Resolve(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	cached, err := r.Resolve(CacheOnly(ctx), u)
	if err != nil {
		t.Fatalf("warm cache: %v", err)
	}
	if got, want := lines(cached.All()), lines(full.All()); !slices.Equal(got, want) {
		t.Errorf("from the cache %v, from the servers %v", got, want)
	}
	queries := r.Stats().Queries
	clock.Advance(25 * time.Hour) // every TTL of the zone is over
	if _, err := r.Resolve(CacheOnly(ctx), u); !errors.Is(err, ErrNotCached) {
		t.Errorf("expired: %v, want ErrNotCached", err)
	}
	if r.Stats().Queries != queries {
		t.Error("a cache-only lookup asked a server after expiry")
	}
	// Numeric hosts need no answer at all.
	if _, err := r.Resolve(CacheOnly(ctx), mustURI(t, "sip:bob@192.0.2.1")); err != nil {
		t.Errorf("numeric host: %v", err)
	}
}

// CacheOnly with ENUM: a number whose NAPTR records are not cached fails
// with ErrNotCached and asks nothing; once looked up, it is answered from
// the cache.
func TestCacheOnlyENUM(t *testing.T) {
	srv := startZones(t, "enum.zone")
	r, _ := newResolver(t, srv, Config{})
	ctx := context.Background()
	const number = "+420224357628"
	if _, err := r.ENUM(CacheOnly(ctx), number); !errors.Is(err, ErrNotCached) {
		t.Fatalf("cold cache: %v, want ErrNotCached", err)
	}
	if q := r.Stats().Queries; q != 0 {
		t.Errorf("a cache-only ENUM lookup sent %d queries", q)
	}
	full, err := r.ENUM(ctx, number)
	if err != nil {
		t.Fatal(err)
	}
	cached, err := r.ENUM(CacheOnly(ctx), number)
	if err != nil || len(cached) != len(full) || cached[0].String() != full[0].String() {
		t.Errorf("warm cache: %v %v, want %v", cached, err, full)
	}
}

// CacheOnly with only some answers cached (NAPTR, SRV and sip1's
// addresses, not sip2's or ws's): no partial target list, ErrNotCached.
func TestCacheOnlyPartial(t *testing.T) {
	srv := startZones(t, "rfc3263.zone")
	r, _ := newResolver(t, srv, Config{})
	ctx := context.Background()
	for _, q := range []struct {
		name  string
		qtype uint16
	}{
		{"example.test.", dns.TypeNAPTR},
		{"_sip._udp.example.test.", dns.TypeSRV}, {"_sip._tcp.example.test.", dns.TypeSRV},
		{"_sips._tcp.example.test.", dns.TypeSRV}, {"_sip._ws.example.test.", dns.TypeSRV},
		{"sip1.example.test.", dns.TypeA}, {"sip1.example.test.", dns.TypeAAAA},
	} {
		if _, err := r.lookup(ctx, q.name, q.qtype); err != nil {
			t.Fatal(err)
		}
	}
	queries := r.Stats().Queries
	ts, err := r.Resolve(CacheOnly(ctx), mustURI(t, "sip:alice@example.test"))
	if !errors.Is(err, ErrNotCached) {
		t.Fatalf("partly cached: %v, %v; want ErrNotCached, not a partial list", err, ts)
	}
	if r.Stats().Queries != queries {
		t.Error("a cache-only lookup asked a server")
	}
}

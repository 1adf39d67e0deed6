package resolve

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// RFC 1035 §7.4: an answer is cached for its TTL, and asked again after.
func TestCacheTTL(t *testing.T) {
	srv := startZones(t, "rfc3263.zone")
	r, clock := newResolver(t, srv, Config{})
	ctx := context.Background()
	const name = "short.ttl.test." // TTL 60
	ask := func() {
		t.Helper()
		rrs, err := r.lookup(ctx, name, dns.TypeA)
		if err != nil || len(rrs) != 1 {
			t.Fatalf("lookup %s: %v %v", name, rrs, err)
		}
	}
	ask()
	ask()
	if n := srv.Queries(name, dns.TypeA); n != 1 {
		t.Fatalf("queries after two lookups within the TTL = %d, want 1", n)
	}
	clock.Advance(59 * time.Second)
	ask()
	if n := srv.Queries(name, dns.TypeA); n != 1 {
		t.Fatalf("queries at 59s of a 60s TTL = %d, want 1", n)
	}
	clock.Advance(time.Second)
	ask()
	if n := srv.Queries(name, dns.TypeA); n != 2 {
		t.Fatalf("queries once the TTL ran out = %d, want 2", n)
	}
	st := r.Stats()
	if st.CacheHits != 2 || st.CacheMisses != 2 || st.Queries != 2 || st.CacheEntries != 1 {
		t.Errorf("Stats() = %+v, want 2 hits, 2 misses, 2 queries, 1 entry", st)
	}
}

// RFC 2308 §5: NXDOMAIN and NODATA are cached for the smaller of the SOA's
// TTL and its MINIMUM; without a SOA they are not cached.
func TestNegativeCache(t *testing.T) {
	srv := startZones(t, "rfc3263.zone") // ttl.test: SOA TTL 3600, MINIMUM 60
	r, clock := newResolver(t, srv, Config{})
	ctx := context.Background()
	tests := []struct {
		name   string
		qtype  uint16
		cached time.Duration // 0: not cached
	}{
		{"missing.ttl.test.", dns.TypeA, 60 * time.Second},     // NXDOMAIN, §5
		{"nodata.ttl.test.", dns.TypeA, 60 * time.Second},      // NODATA, §5
		{"nowhere.nozone.", dns.TypeSRV, 0},                    // no SOA, §5: not cached
		{"_sip._udp.host.test.", dns.TypeSRV, 5 * time.Minute}, // host.test MINIMUM 300
	}
	for _, tc := range tests {
		for range 2 {
			rrs, err := r.lookup(ctx, tc.name, tc.qtype)
			if err != nil || len(rrs) != 0 {
				t.Fatalf("lookup %s = %v, %v; want a negative answer", tc.name, rrs, err)
			}
		}
		want := 1
		if tc.cached == 0 {
			want = 2
		}
		if n := srv.Queries(tc.name, tc.qtype); n != want {
			t.Errorf("%s: %d queries for two lookups, want %d", tc.name, n, want)
		}
	}
	clock.Advance(59 * time.Second)
	if _, err := r.lookup(ctx, "missing.ttl.test.", dns.TypeA); err != nil {
		t.Fatal(err)
	}
	if n := srv.Queries("missing.ttl.test.", dns.TypeA); n != 1 {
		t.Errorf("NXDOMAIN asked again within its negative TTL: %d queries", n)
	}
	clock.Advance(time.Second)
	if _, err := r.lookup(ctx, "missing.ttl.test.", dns.TypeA); err != nil {
		t.Fatal(err)
	}
	if n := srv.Queries("missing.ttl.test.", dns.TypeA); n != 2 {
		t.Errorf("NXDOMAIN after its negative TTL: %d queries, want 2", n)
	}
	// A name that appears is seen once its negative answer expires.
	if rrs, _ := r.lookup(ctx, "late.ttl.test.", dns.TypeA); len(rrs) != 0 {
		t.Fatalf("late.ttl.test exists too early: %v", rrs)
	}
	if err := srv.Add("late.ttl.test. 60 IN A 192.0.2.99"); err != nil {
		t.Fatal(err)
	}
	if rrs, _ := r.lookup(ctx, "late.ttl.test.", dns.TypeA); len(rrs) != 0 {
		t.Errorf("negative answer not cached: %v", rrs)
	}
	clock.Advance(time.Minute)
	if rrs, err := r.lookup(ctx, "late.ttl.test.", dns.TypeA); err != nil || len(rrs) != 1 {
		t.Errorf("after the negative TTL: %v %v, want the new record", rrs, err)
	}
}

// RFC 1035 §4.2.1, RFC 7766 §6.2.1: a truncated UDP answer is asked again
// over TCP.
func TestTruncationFallsBackToTCP(t *testing.T) {
	srv := startZones(t, "rfc3263.zone")
	srv.Truncate("_sip._udp.weight.test")
	r, _ := newResolver(t, srv, Config{})
	ts, err := r.Resolve(context.Background(), mustURI(t, "sip:alice@weight.test"))
	if err != nil {
		t.Fatal(err)
	}
	if ts.Len() != 3 {
		t.Errorf("targets %v, want the three of the SRV answer got over TCP", lines(ts.All()))
	}
	if n := srv.TCPQueries("_sip._udp.weight.test", dns.TypeSRV); n != 1 {
		t.Errorf("TCP queries = %d, want 1", n)
	}
	if n := srv.TCPQueries("w10.weight.test", dns.TypeA); n != 0 {
		t.Errorf("an untruncated answer was asked over TCP %d times", n)
	}
	if st := r.Stats(); st.TCPFallbacks != 1 {
		t.Errorf("Stats().TCPFallbacks = %d, want 1", st.TCPFallbacks)
	}
}

// The cache holds at most CacheSize answers, the least recently used going
// first.
func TestCacheBounded(t *testing.T) {
	srv := startZones(t, "rfc3263.zone")
	r, _ := newResolver(t, srv, Config{CacheSize: 2})
	ctx := context.Background()
	for _, name := range []string{"w10.weight.test.", "w30.weight.test.", "w10.weight.test.", "w60.weight.test."} {
		if _, err := r.lookup(ctx, name, dns.TypeA); err != nil {
			t.Fatal(err)
		}
	}
	if n := r.Stats().CacheEntries; n != 2 {
		t.Errorf("CacheEntries = %d, want 2", n)
	}
	// w30 was the least recently used and made room for w60.
	if _, err := r.lookup(ctx, "w30.weight.test.", dns.TypeA); err != nil {
		t.Fatal(err)
	}
	if _, err := r.lookup(ctx, "w10.weight.test.", dns.TypeA); err != nil {
		t.Fatal(err)
	}
	if a, b := srv.Queries("w30.weight.test.", dns.TypeA), srv.Queries("w10.weight.test.", dns.TypeA); a != 2 || b != 2 {
		t.Errorf("queries w30 %d (want 2: evicted), w10 %d (want 2: evicted by w30)", a, b)
	}
	// A negative size turns the cache off.
	r, _ = newResolver(t, srv, Config{CacheSize: -1})
	for range 2 {
		if _, err := r.lookup(ctx, "w60.weight.test.", dns.TypeA); err != nil {
			t.Fatal(err)
		}
	}
	if n := r.Stats().CacheEntries; n != 0 {
		t.Errorf("CacheEntries with the cache off = %d", n)
	}
}

// Lookups of one name at once share a query.
func TestLookupShared(t *testing.T) {
	srv := startZones(t, "rfc3263.zone")
	r, _ := newResolver(t, srv, Config{})
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if rrs, err := r.lookup(context.Background(), "sip1.example.test.", dns.TypeAAAA); err != nil || len(rrs) != 1 {
				t.Errorf("lookup: %v %v", rrs, err)
			}
		})
	}
	wg.Wait()
	if n := srv.Queries("sip1.example.test.", dns.TypeAAAA); n < 1 || n > 20 {
		t.Errorf("%d queries", n)
	}
	if st := r.Stats(); st.CacheHits+st.CacheMisses != 20 || st.CacheMisses != uint64(srv.Queries("sip1.example.test.", dns.TypeAAAA)) {
		t.Errorf("Stats() = %+v", st)
	}
}

package resolve

import (
	"context"
	"testing"
)

// Resolve on the call path: every answer (NAPTR, SRV, A, AAAA) from the
// cache after the first lookup, as for all but the first call to a domain
// within the TTLs.
func BenchmarkResolveCached(b *testing.B) {
	srv := startZones(b, "rfc3263.zone")
	for _, uri := range []string{"sip:alice@example.test", "sip:alice@weight.test", "sip:alice@192.0.2.1:5060"} {
		b.Run(uri, func(b *testing.B) {
			r, _ := newResolver(b, srv, Config{})
			u := mustURI(b, uri)
			ctx := context.Background()
			if _, err := r.Resolve(ctx, u); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				ts, err := r.Resolve(ctx, u)
				if err != nil {
					b.Fatal(err)
				}
				if _, ok := ts.Next(); !ok {
					b.Fatal("no target")
				}
			}
		})
	}
}

// ENUM of the seed's number from the cache.
func BenchmarkENUMCached(b *testing.B) {
	srv := startZones(b, "enum.zone")
	r, _ := newResolver(b, srv, Config{})
	ctx := context.Background()
	if _, err := r.ENUM(ctx, "+420224357628"); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.ENUM(ctx, "+420224357628"); err != nil {
			b.Fatal(err)
		}
	}
}

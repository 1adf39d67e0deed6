package stir

import (
	"context"
	"testing"
)

func BenchmarkSign(b *testing.B) {
	f := memFixture(b)
	now := f.clock.Now()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.signer.Sign(alice, bob, AttestFull, "4437c7eb-8f7a-4f0e-a863-f53a0e60251a", now); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyCached is the per-call cost once the certificate is cached.
func BenchmarkVerifyCached(b *testing.B) {
	f := memFixture(b)
	h := f.sign(b)
	ctx := context.Background()
	if r := f.v.Verify(ctx, h, alice, bob); r.Code != CodeValid {
		b.Fatal(r.Err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if r := f.v.Verify(ctx, h, alice, bob); r.Code != CodeValid {
			b.Fatal(r.Err)
		}
	}
}

// BenchmarkVerifyRejectStale is what a replayed header costs: no
// signature check, no fetch.
func BenchmarkVerifyRejectStale(b *testing.B) {
	f := memFixture(b)
	h := f.signWith(b, f.signer, f.clock.Now().Add(-120e9))
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if r := f.v.Verify(ctx, h, alice, bob); r.Code != CodeStaleDate {
			b.Fatal(r.Code)
		}
	}
}

func BenchmarkParseIdentity(b *testing.B) {
	f := memFixture(b)
	h := f.sign(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := ParseIdentity(h); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCached(b *testing.B) {
	f := memFixture(b)
	h := f.sign(b)
	f.v.Verify(context.Background(), h, alice, bob)
	b.ReportAllocs()
	for b.Loop() {
		if !f.v.Cached(h) {
			b.Fatal("not cached")
		}
	}
}

func BenchmarkNormalizeTN(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := NormalizeTN("sip:+12025550100@example.com;user=phone"); !ok {
			b.Fatal("not a number")
		}
	}
}

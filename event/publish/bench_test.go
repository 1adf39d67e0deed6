package publish

import (
	"context"
	"fmt"
	"testing"
)

// BenchmarkPublishRefresh is the common PUBLISH: a device refreshing its
// state without a body (RFC 3903 §4.3), spread over many resources.
func BenchmarkPublishRefresh(b *testing.B) {
	for _, withStore := range []bool{false, true} {
		name := "memory"
		if withStore {
			name = "memstore"
		}
		b.Run(name, func(b *testing.B) {
			c := newClock()
			var s *State
			if withStore {
				s = newState(b, Config{}, newMemStore(), c)
			} else {
				s = newState(b, Config{}, nil, c)
			}
			const n = 1000
			etags := make([]string, n)
			reqs := make([]Request, n)
			for i := range n {
				r := fmt.Sprintf("user%d@example.test", i)
				etags[i] = mustOK(b, s, initial(r, "<presence>open</presence>", 3600)).ETag
				reqs[i] = refresh(r, "", 3600)
			}
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				j := i % n
				reqs[j].IfMatch = etags[j]
				res := s.Publish(ctx, reqs[j])
				if res.Code != 200 {
					b.Fatalf("refresh = %+v", res)
				}
				etags[j] = res.ETag
			}
		})
	}
}

// BenchmarkPublishParallel: refreshes from many goroutines at once, to
// show what the one lock costs.
func BenchmarkPublishParallel(b *testing.B) {
	c := newClock()
	s := newState(b, Config{}, nil, c)
	b.ReportAllocs()
	var next int64
	var mu = make(chan struct{}, 1)
	mu <- struct{}{}
	b.RunParallel(func(pb *testing.PB) {
		<-mu
		next++
		r := fmt.Sprintf("user%d@example.test", next)
		mu <- struct{}{}
		etag := mustOK(b, s, initial(r, "<presence>open</presence>", 3600)).ETag
		ctx := context.Background()
		req := refresh(r, "", 3600)
		for pb.Next() {
			req.IfMatch = etag
			res := s.Publish(ctx, req)
			if res.Code != 200 {
				b.Errorf("refresh = %+v", res)
				return
			}
			etag = res.ETag
		}
	})
}

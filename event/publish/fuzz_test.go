package publish

import (
	"context"
	"slices"
	"testing"
	"time"
)

// FuzzPublish drives a State with arbitrary requests — any SIP-If-Match
// text, Expires, Content-Type and body — and checks that nothing panics,
// limits hold, 200s carry a token ETag, and memory matches the store.
func FuzzPublish(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3}, "presence", "", "application/pidf+xml", "<presence/>", 3600)
	f.Add([]byte{5, 5, 5}, "presence", "abc, def", "", "", 0)
	f.Add([]byte{9}, "dialog", "x", "application/dialog-info+xml", "<d/>", -1)
	f.Fuzz(func(t *testing.T, ops []byte, event, ifMatch, ct, body string, expires int) {
		c := newClock()
		st := newMemStore()
		s := newState(t, Config{MaxPerResource: 3, MaxPublications: 5, MaxBody: 256}, st, c)
		ctx := context.Background()
		var etags []string
		if len(ops) > 64 {
			ops = ops[:64]
		}
		for _, op := range ops {
			r := Request{Event: event, Resource: []string{"a@x", "b@x"}[op&1], Expires: expires, ContentType: ct, Body: []byte(body)}
			switch op >> 1 & 3 {
			case 0:
				r.IfMatch = ifMatch
			case 1:
				if len(etags) > 0 {
					r.IfMatch = etags[int(op>>3)%len(etags)]
				}
			case 2:
				r.Event, r.ContentType, r.Body = "presence", pidf, []byte("<presence/>")
			case 3:
				c.Advance(time.Duration(op) * time.Second)
				s.Sweep(c.Now())
				continue
			}
			res := s.Publish(ctx, r)
			if res.Code == 200 {
				if !isToken(res.ETag) {
					t.Fatalf("200 with ETag %q", res.ETag)
				}
				if res.Expires < 0 || res.Expires > 3600 {
					t.Fatalf("200 with Expires %d", res.Expires)
				}
				etags = append(etags, res.ETag)
			}
			if n := s.Count(); n > 5 {
				t.Fatalf("Count %d above max_publications", n)
			}
			if got, want := memEtags(s), st.etags(); !slices.Equal(got, want) {
				t.Fatalf("memory %v, store %v", got, want)
			}
		}
	})
}

package store

import (
	"context"
	"testing"
	"time"
)

func TestSubscriptionRecords(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			s := open(t)
			ctx := context.Background()
			now := time.UnixMilli(1_800_000_000_000)
			if err := s.PutSubscriptionRecord(ctx, "a", now.Add(time.Hour), []byte(`{"id":"a","v":1}`)); err != nil {
				t.Fatal(err)
			}
			if err := s.PutSubscriptionRecord(ctx, "b", now.Add(time.Minute), []byte(`{"id":"b"}`)); err != nil {
				t.Fatal(err)
			}
			if err := s.PutSubscriptionRecord(ctx, "a", now.Add(2*time.Hour), []byte(`{"id":"a","v":2}`)); err != nil {
				t.Fatal(err)
			}
			got, err := s.SubscriptionRecords(ctx, now)
			if err != nil || len(got) != 2 || string(got[0]) != `{"id":"a","v":2}` || string(got[1]) != `{"id":"b"}` {
				t.Fatalf("records = %q, %v", got, err)
			}
			// b lapses; a is deleted.
			if got, _ = s.SubscriptionRecords(ctx, now.Add(time.Minute)); len(got) != 1 {
				t.Fatalf("after b lapsed: %q", got)
			}
			if err := s.DeleteSubscriptionRecord(ctx, "a"); err != nil {
				t.Fatal(err)
			}
			if err := s.DeleteSubscriptionRecord(ctx, "a"); err != nil {
				t.Fatalf("deleting a missing record: %v", err)
			}
			if got, _ = s.SubscriptionRecords(ctx, now); len(got) != 0 {
				t.Fatalf("after delete: %q", got)
			}
		})
	}
}

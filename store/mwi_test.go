package store

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestMailboxes(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			s := open(t)
			ctx := context.Background()
			if _, err := s.Mailbox(ctx, "alice@example.test"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Mailbox of nobody: %v, want ErrNotFound", err)
			}
			t0 := time.UnixMilli(1_800_000_000_000)
			if err := s.PutMailbox(ctx, Mailbox{AOR: "alice@example.test", New: 2, Old: 8, UrgentOld: 2, Updated: t0}); err != nil {
				t.Fatal(err)
			}
			if err := s.PutMailbox(ctx, Mailbox{AOR: "bob@example.test", Old: 1, Updated: t0.Add(time.Second)}); err != nil {
				t.Fatal(err)
			}
			m, err := s.Mailbox(ctx, "alice@example.test")
			if err != nil || m.New != 2 || m.Old != 8 || m.UrgentNew != 0 || m.UrgentOld != 2 || !m.Updated.Equal(t0) {
				t.Fatalf("Mailbox = %+v, %v", m, err)
			}
			if err := s.PutMailbox(ctx, Mailbox{AOR: "alice@example.test", New: 0, Old: 10, Updated: t0.Add(2 * time.Second)}); err != nil {
				t.Fatal(err)
			}
			since, err := s.MailboxesSince(ctx, t0.Add(time.Second))
			if err != nil || len(since) != 2 || since[0].AOR != "bob@example.test" || since[1].AOR != "alice@example.test" || since[1].Old != 10 {
				t.Fatalf("MailboxesSince = %+v, %v", since, err)
			}
			if err := s.PutMailbox(ctx, Mailbox{AOR: "x@y", New: -1}); err == nil {
				t.Fatal("a negative count was stored")
			}
		})
	}
}

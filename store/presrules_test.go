package store

import (
	"context"
	"errors"
	"testing"
)

func TestPresenceRules(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			s := open(t)
			ctx := context.Background()
			v0, err := s.PresenceRulesVersion(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range []PresenceRule{
				{Presentity: "alice@example.test", Watcher: "mallory@evil.test", Action: "block"},
				{Presentity: "alice@example.test", Watcher: "*@partner.test", Action: "allow"},
				{Presentity: "bob@example.test", Watcher: "carol@example.test", Action: "block"},
			} {
				if err := s.PutPresenceRule(ctx, r); err != nil {
					t.Fatal(err)
				}
			}
			v1, _ := s.PresenceRulesVersion(ctx)
			if v1 == v0 {
				t.Fatal("version unchanged by puts")
			}
			got, err := s.PresenceRules(ctx, "alice@example.test")
			if err != nil || len(got) != 2 || got[0].Watcher != "*@partner.test" || got[1].Action != "block" {
				t.Fatalf("rules of alice = %+v, %v", got, err)
			}
			if all, _ := s.PresenceRules(ctx, ""); len(all) != 3 {
				t.Fatalf("all rules = %+v", all)
			}
			if err := s.PutPresenceRule(ctx, PresenceRule{Presentity: "alice@example.test", Watcher: "mallory@evil.test", Action: "allow"}); err != nil {
				t.Fatal(err)
			}
			if got, _ = s.PresenceRules(ctx, "alice@example.test"); got[1].Action != "allow" {
				t.Fatalf("replaced rule = %+v", got[1])
			}
			if err := s.DeletePresenceRule(ctx, "alice@example.test", "mallory@evil.test"); err != nil {
				t.Fatal(err)
			}
			if err := s.DeletePresenceRule(ctx, "alice@example.test", "mallory@evil.test"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("second delete: %v", err)
			}
			if v2, _ := s.PresenceRulesVersion(ctx); v2 == v1 {
				t.Fatal("version unchanged by put and delete")
			}
			if err := s.PutPresenceRule(ctx, PresenceRule{Presentity: "a@b", Watcher: "c@d", Action: "maybe"}); err == nil {
				t.Fatal("an unknown action was stored")
			}
		})
	}
}

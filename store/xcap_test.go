package store

import (
	"context"
	"errors"
	"sync"
	"testing"
)

func TestXCAPDocuments(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			s := open(t)
			ctx := context.Background()
			v0, err := s.XCAPVersion(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.XCAPDocument(ctx, "resource-lists", "alice@example.test", "index"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("missing document: %v", err)
			}
			d := XCAPDocument{AUID: "resource-lists", Owner: "alice@example.test", Name: "index", Body: []byte("<resource-lists/>")}
			e1, err := s.PutXCAPDocument(ctx, d, "")
			if err != nil || e1 == "" {
				t.Fatalf("create: %q %v", e1, err)
			}
			if _, err := s.PutXCAPDocument(ctx, d, ""); !errors.Is(err, ErrConflict) {
				t.Fatalf("second create: %v, want ErrConflict", err)
			}
			d.Body = []byte("<resource-lists><list name=\"a\"/></resource-lists>")
			if _, err := s.PutXCAPDocument(ctx, d, "stale"); !errors.Is(err, ErrConflict) {
				t.Fatalf("replace with a wrong tag: %v", err)
			}
			e2, err := s.PutXCAPDocument(ctx, d, e1)
			if err != nil || e2 == e1 {
				t.Fatalf("replace: %q %v", e2, err)
			}
			got, err := s.XCAPDocument(ctx, "resource-lists", "alice@example.test", "index")
			if err != nil || got.ETag != e2 || string(got.Body) != string(d.Body) {
				t.Fatalf("read back %+v %v", got, err)
			}
			other := XCAPDocument{AUID: "rls-services", Owner: "bob@example.test", Name: "index", Body: []byte("<rls-services/>")}
			if _, err := s.PutXCAPDocument(ctx, other, ""); err != nil {
				t.Fatal(err)
			}
			if all, _ := s.XCAPDocuments(ctx, "resource-lists", ""); len(all) != 1 || all[0].Owner != "alice@example.test" {
				t.Fatalf("documents of the auid: %+v", all)
			}
			if mine, _ := s.XCAPDocuments(ctx, "rls-services", "alice@example.test"); len(mine) != 0 {
				t.Fatalf("alice's services: %+v", mine)
			}
			if err := s.DeleteXCAPDocument(ctx, "resource-lists", "alice@example.test", "index", e1); !errors.Is(err, ErrConflict) {
				t.Fatalf("delete with a stale tag: %v", err)
			}
			if err := s.DeleteXCAPDocument(ctx, "resource-lists", "alice@example.test", "index", e2); err != nil {
				t.Fatal(err)
			}
			if err := s.DeleteXCAPDocument(ctx, "resource-lists", "alice@example.test", "index", e2); !errors.Is(err, ErrNotFound) {
				t.Fatalf("second delete: %v", err)
			}
			if v1, _ := s.XCAPVersion(ctx); v1 == v0 {
				t.Fatal("version unchanged by writes")
			}
		})
	}
}

// Concurrent read-modify-write cycles that retry on ErrConflict lose no
// update: the condition is part of the write.
func TestXCAPCompareAndSet(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			s := open(t)
			ctx := context.Background()
			if _, err := s.PutXCAPDocument(ctx, XCAPDocument{AUID: "a", Owner: "o", Name: "n", Body: []byte{}}, ""); err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			const writers, each = 4, 10
			for w := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range each {
						for {
							d, err := s.XCAPDocument(ctx, "a", "o", "n")
							if err != nil {
								t.Error(err)
								return
							}
							d.Body = append(d.Body, byte('a'+w))
							if _, err := s.PutXCAPDocument(ctx, d, d.ETag); err == nil {
								break
							} else if !errors.Is(err, ErrConflict) {
								t.Error(err)
								return
							}
						}
					}
				}()
			}
			wg.Wait()
			d, _ := s.XCAPDocument(ctx, "a", "o", "n")
			if len(d.Body) != writers*each {
				t.Fatalf("%d updates kept, want %d", len(d.Body), writers*each)
			}
		})
	}
}

func TestReplacePresenceRules(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			s := open(t)
			ctx := context.Background()
			_ = s.PutPresenceRule(ctx, PresenceRule{Presentity: "alice@x", Watcher: "old@y", Action: "allow"})
			_ = s.PutPresenceRule(ctx, PresenceRule{Presentity: "bob@x", Watcher: "old@y", Action: "block"})
			v0, _ := s.PresenceRulesVersion(ctx)
			err := s.ReplacePresenceRules(ctx, "alice@x", []PresenceRule{
				{Watcher: "*", Action: "confirm"}, {Watcher: "carol@y", Action: "polite-block"}})
			if err != nil {
				t.Fatal(err)
			}
			got, _ := s.PresenceRules(ctx, "alice@x")
			if len(got) != 2 || got[0].Watcher != "*" || got[1].Action != "polite-block" {
				t.Fatalf("alice's rules %+v", got)
			}
			if bob, _ := s.PresenceRules(ctx, "bob@x"); len(bob) != 1 {
				t.Fatalf("bob's rules touched: %+v", bob)
			}
			if v1, _ := s.PresenceRulesVersion(ctx); v1 == v0 {
				t.Fatal("version unchanged")
			}
			if err := s.ReplacePresenceRules(ctx, "alice@x", []PresenceRule{{Watcher: "z@y", Action: "maybe"}}); err == nil {
				t.Fatal("a bad action was accepted")
			}
			if got, _ := s.PresenceRules(ctx, "alice@x"); len(got) != 2 {
				t.Fatalf("a refused replacement changed the rules: %+v", got)
			}
		})
	}
}

package store

import (
	"context"
	"errors"
	"testing"
)

func TestAPITokens(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) { testAPITokens(t, open(t)) })
	}
}

func testAPITokens(t *testing.T, s Store) {
	ctx := context.Background()
	if _, err := s.APITokenByHash(ctx, "ab"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("APITokenByHash on an empty table = %v, want ErrNotFound", err)
	}
	if err := s.AddAPIToken(ctx, APIToken{Name: "ops", Hash: "h1"}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddAPIToken(ctx, APIToken{Name: "grafana", Hash: "h2", ReadOnly: true}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddAPIToken(ctx, APIToken{Name: "ops", Hash: "h3"}); !errors.Is(err, ErrExists) {
		t.Errorf("a second token named ops: %v, want ErrExists", err)
	}
	if err := s.AddAPIToken(ctx, APIToken{Name: "other", Hash: "h1"}); !errors.Is(err, ErrExists) {
		t.Errorf("a second token with hash h1: %v, want ErrExists", err)
	}
	if err := s.AddAPIToken(ctx, APIToken{Name: "", Hash: "h4"}); err == nil {
		t.Error("a token without a name was stored")
	}
	ts, err := s.APITokens(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 2 || ts[0].Name != "grafana" || !ts[0].ReadOnly || ts[1].Name != "ops" || ts[1].ReadOnly || ts[1].Created.IsZero() {
		t.Fatalf("APITokens = %+v", ts)
	}
	got, err := s.APITokenByHash(ctx, "h2")
	if err != nil || got.Name != "grafana" || !got.ReadOnly {
		t.Fatalf("APITokenByHash(h2) = %+v, %v", got, err)
	}
	if err := s.DeleteAPIToken(ctx, "grafana"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteAPIToken(ctx, "grafana"); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleting twice: %v, want ErrNotFound", err)
	}
	if _, err := s.APITokenByHash(ctx, "h2"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a deleted token is still found: %v", err)
	}
}

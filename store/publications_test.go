package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// publicationsOf returns the publications table of s, created here so that
// the tests do not depend on newSQLStore creating it (it is idempotent
// when newSQLStore does).
func publicationsOf(t *testing.T, s Store) Publications {
	t.Helper()
	var sq *sqlStore
	switch v := s.(type) {
	case *journaled:
		sq = v.sqlStore
	case *sqlStore:
		sq = v
	default:
		t.Fatalf("store of type %T", s)
	}
	if err := sq.createPublications(context.Background()); err != nil {
		t.Fatal(err)
	}
	return sq
}

func TestPublications(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			t.Run("put replace delete", func(t *testing.T) { testPublications(t, publicationsOf(t, open(t))) })
			t.Run("one winner per ETag", func(t *testing.T) { testPublicationRace(t, publicationsOf(t, open(t))) })
		})
	}
}

func pub(event, resource, etag, id string, created, expires time.Time, body string) Publication {
	return Publication{Event: event, Resource: resource, ETag: etag, ID: id, ContentType: "application/pidf+xml",
		Body: []byte(body), Created: created, Updated: created, Expires: expires}
}

func samePublication(a, b Publication) bool {
	return a.Event == b.Event && a.Resource == b.Resource && a.ETag == b.ETag && a.ID == b.ID &&
		a.ContentType == b.ContentType && bytes.Equal(a.Body, b.Body) &&
		a.Created.UnixMilli() == b.Created.UnixMilli() && a.Updated.UnixMilli() == b.Updated.UnixMilli() &&
		a.Expires.UnixMilli() == b.Expires.UnixMilli()
}

func testPublications(t *testing.T, s Publications) {
	ctx := context.Background()
	now := time.UnixMilli(1_800_000_000_123)
	hour := now.Add(time.Hour)
	// A body with a NUL byte and invalid UTF-8 survives both back ends.
	binary := "<presence>\x00\xff\xfe</presence>"
	a1 := pub("presence", "alice@example.test", "etag-a1", "id-a", now, hour, binary)
	b1 := pub("presence", "alice@example.test", "etag-b1", "id-b", now.Add(time.Millisecond), hour, "<b/>")
	c1 := pub("dialog", "alice@example.test", "etag-c1", "id-c", now, now.Add(time.Minute), "<dialog-info/>")
	d1 := pub("presence", "bob@example.test", "etag-d1", "id-d", now, now.Add(time.Second), "<d/>")
	for _, p := range []Publication{b1, a1, c1, d1} {
		if err := s.PutPublication(ctx, p, ""); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PutPublication(ctx, a1, ""); !errors.Is(err, ErrExists) {
		t.Fatalf("second initial put of one ETag: %v, want ErrExists", err)
	}
	if err := s.PutPublication(ctx, Publication{Event: "presence", Resource: "x@y"}, ""); err == nil {
		t.Fatal("put without ETag and ID succeeded")
	}
	got, err := s.Publications(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	// Ordered by event, resource, then oldest first.
	want := []Publication{c1, a1, b1, d1}
	if len(got) != len(want) {
		t.Fatalf("Publications = %d rows, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if !samePublication(got[i], want[i]) {
			t.Errorf("row %d = %+v, want %+v", i, got[i], want[i])
		}
	}

	// Modify: a new ETag and body replace the old version.
	a2 := a1
	a2.ETag, a2.Body, a2.Updated, a2.Expires = "etag-a2", []byte("<a2/>"), now.Add(time.Minute), now.Add(2*time.Hour)
	if err := s.PutPublication(ctx, a2, "etag-a1"); err != nil {
		t.Fatal(err)
	}
	// The precondition is the old ETag: using it again fails, as does an
	// ETag of another resource or event.
	if err := s.PutPublication(ctx, a2, "etag-a1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("replace of a replaced ETag: %v, want ErrNotFound", err)
	}
	wrong := a2
	wrong.ETag = "etag-x"
	if err := s.PutPublication(ctx, wrong, "etag-d1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("replace of another resource's ETag: %v, want ErrNotFound", err)
	}
	wrong.Event = "dialog"
	if err := s.PutPublication(ctx, wrong, "etag-a2"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("replace of another event's ETag: %v, want ErrNotFound", err)
	}

	// Expired rows are not returned, and purge removes them.
	later := now.Add(30 * time.Second)
	got, err = s.Publications(ctx, later)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || !samePublication(got[1], a2) {
		t.Fatalf("Publications after 30s = %+v, want dialog, a2, b1", got)
	}
	n, err := s.PurgePublications(ctx, later)
	if err != nil || n != 1 {
		t.Fatalf("PurgePublications = %d, %v; want 1", n, err)
	}
	if err := s.DeletePublication(ctx, "presence", "bob@example.test", "etag-d1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete of a purged row: %v, want ErrNotFound", err)
	}

	// Remove.
	if err := s.DeletePublication(ctx, "presence", "alice@example.test", "etag-a2"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeletePublication(ctx, "presence", "alice@example.test", "etag-a2"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v, want ErrNotFound", err)
	}
	got, err = s.Publications(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ETag != "etag-c1" || got[1].ETag != "etag-b1" {
		t.Fatalf("Publications after removal = %+v", got)
	}

	// An empty body (nil) is stored as empty.
	e := pub("presence", "carol@example.test", "etag-e", "id-e", now, hour, "")
	e.Body = nil
	if err := s.PutPublication(ctx, e, ""); err != nil {
		t.Fatal(err)
	}
}

// testPublicationRace: many writers replace the same ETag at once; RFC 3903
// §6 lets exactly one succeed, the others find their precondition gone.
func testPublicationRace(t *testing.T, s Publications) {
	ctx := context.Background()
	now := time.UnixMilli(1_800_000_000_000)
	p := pub("presence", "alice@example.test", "etag-0", "id", now, now.Add(time.Hour), "<p/>")
	if err := s.PutPublication(ctx, p, ""); err != nil {
		t.Fatal(err)
	}
	const writers = 8
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			q := p
			q.ETag = fmt.Sprintf("etag-%d", i+1)
			errs[i] = s.PutPublication(ctx, q, "etag-0")
		}()
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, ErrNotFound):
			t.Errorf("writer failed with %v, want nil or ErrNotFound", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d writers replaced etag-0, want 1", won)
	}
	got, err := s.Publications(ctx, now)
	if err != nil || len(got) != 1 || got[0].ETag == "etag-0" {
		t.Fatalf("Publications = %+v, %v; want the winner's row only", got, err)
	}
}

// TestPublicationsReopen: published state outlives the process (RFC 3903
// state held by the server must survive its restart, issue 14 item 5).
func TestPublicationsReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "hlas.db")
	now := time.UnixMilli(1_800_000_000_456)
	p := pub("presence", "alice@example.test", "etag-1", "id-1", now, now.Add(time.Hour), "<presence/>")
	s, err := OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if err := publicationsOf(t, s).PutPublication(ctx, p, ""); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := publicationsOf(t, s).Publications(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !samePublication(got[0], p) {
		t.Fatalf("after reopen: %+v, want %+v", got, p)
	}
}

// Concurrent writers share transactions (group commit) and each gets its
// own outcome: every put lands, a replace on a stale ETag fails alone.
func TestPublicationGroupCommit(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			s := open(t)
			ctx := context.Background()
			now := time.Now()
			const writers, each = 8, 25
			var wg sync.WaitGroup
			errs := make(chan error, writers*each*2)
			for w := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range each {
						p := Publication{Event: "presence", Resource: fmt.Sprintf("u%d@x", w), ETag: fmt.Sprintf("e%d-%d", w, i), ID: "d",
							ContentType: "application/pidf+xml", Body: []byte("x"), Created: now, Updated: now, Expires: now.Add(time.Hour)}
						prev := ""
						if i > 0 {
							prev = fmt.Sprintf("e%d-%d", w, i-1)
						}
						errs <- s.PutPublication(ctx, p, prev)
						// A replace naming an ETag that is gone fails, alone.
						if err := s.PutPublication(ctx, p, "stale"); !errors.Is(err, ErrNotFound) {
							errs <- fmt.Errorf("stale replace: %v", err)
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			pubs, err := s.Publications(ctx, now)
			if err != nil || len(pubs) != writers {
				t.Fatalf("%d publications, want %d (%v)", len(pubs), writers, err)
			}
			for _, p := range pubs {
				if p.ETag[len(p.ETag)-2:] != "24" {
					t.Fatalf("publication %s at %s, want its last version", p.Resource, p.ETag)
				}
			}
		})
	}
}

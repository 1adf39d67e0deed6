package store

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"
)

// pubsOf returns s's publications live at now, failing the test on error.
func pubsOf(t *testing.T, s Publications, now time.Time) []Publication {
	t.Helper()
	ps, err := s.Publications(context.Background(), now)
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

func samePubs(t *testing.T, what string, got, want []Publication) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d publications %+v, want %d %+v", what, len(got), got, len(want), want)
	}
	for i := range want {
		if !samePublication(got[i], want[i]) {
			t.Fatalf("%s: publication %d = %+v, want %+v", what, i, got[i], want[i])
		}
	}
}

func pubTableRows(t *testing.T, j *journaled) int {
	t.Helper()
	var n int
	if err := j.db.QueryRow(`SELECT count(*) FROM hlas_publications`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// The owner's publication writes are appends: the table sees none until
// a checkpoint, while the owner and another process see them all along;
// the checkpoint moves them into the table.
func TestJournalPublications(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	j := openJournaled(t, dir)
	defer j.Close()
	now := time.UnixMilli(time.Now().UnixMilli())
	a := pub("presence", "alice@example.test", "a1", "da", now, now.Add(time.Hour), "<a1/>")
	b := pub("presence", "bob@example.test", "b1", "db", now, now.Add(time.Hour), "<b1/>")
	if err := j.PutPublication(ctx, a, ""); err != nil {
		t.Fatal(err)
	}
	if err := j.PutPublication(ctx, b, ""); err != nil {
		t.Fatal(err)
	}
	// A batch's writes see the ones before them: a refresh, then the
	// removal of what it made, then a refresh of the removed one.
	a2 := a
	a2.ETag, a2.Body = "a2", []byte("<a2/>")
	ws := []PublicationWrite{{P: a2, Replaces: "a1"}, {P: Publication{Event: "presence", Resource: a.Resource, ETag: "a2"}, Delete: true}, {P: a2, Replaces: "a2"}}
	if err := j.WritePublications(ctx, ws); err != nil {
		t.Fatal(err)
	}
	if ws[0].Err != nil || ws[1].Err != nil || !errors.Is(ws[2].Err, ErrNotFound) {
		t.Fatalf("batch outcomes %v, %v, %v; want nil, nil, not found", ws[0].Err, ws[1].Err, ws[2].Err)
	}
	want := []Publication{b}
	samePubs(t, "owner", pubsOf(t, j, now), want)
	other, err := OpenSQLite(ctx, j.path[:len(j.path)-len(journalSuffix)])
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	samePubs(t, "another process", pubsOf(t, other, now), want)
	if n := pubTableRows(t, j); n != 0 {
		t.Fatalf("%d rows in the table before a checkpoint, want 0", n)
	}
	if err := j.checkpoint(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if n := pubTableRows(t, j); n != 1 {
		t.Fatalf("%d rows in the table after the checkpoint, want 1", n)
	}
	samePubs(t, "owner after the checkpoint", pubsOf(t, j, now), want)
	samePubs(t, "another process after the checkpoint", pubsOf(t, other, now), want)
	// The preconditions hold across the checkpoint.
	if err := j.PutPublication(ctx, b, ""); !errors.Is(err, ErrExists) {
		t.Fatalf("a new publication with a taken ID: %v, want ErrExists", err)
	}
	b2 := b
	b2.ETag = "b2"
	if err := j.PutPublication(ctx, b2, "b1"); err != nil {
		t.Fatal(err)
	}
	if err := j.DeletePublication(ctx, "presence", b.Resource, "b1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("removal by a replaced ETag: %v, want ErrNotFound", err)
	}
}

// After a crash the next owner replays the publications of both
// journals into the table and checks preconditions against them.
func TestJournalPublicationsRecovery(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	j := openJournaled(t, dir)
	now := time.UnixMilli(time.Now().UnixMilli())
	a := pub("presence", "alice@example.test", "a1", "da", now, now.Add(time.Hour), "<a1/>")
	c := pub("dialog", "carol@example.test", "c1", "dc", now, now.Add(time.Hour), "<c1/>")
	for _, p := range []Publication{a, c} {
		if err := j.PutPublication(ctx, p, ""); err != nil {
			t.Fatal(err)
		}
	}
	// Rotate as a checkpoint would, without applying: the crash comes
	// before the table is written; later changes go to the new journal.
	j.mu.Lock()
	if err := os.Rename(j.path, j.path+".1"); err != nil {
		t.Fatal(err)
	}
	nf, err := os.OpenFile(j.path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	j.f.Close()
	j.f, j.size = nf, 0
	j.mu.Unlock()
	a2 := a
	a2.ETag, a2.Body = "a2", []byte("<a2/>")
	if err := j.PutPublication(ctx, a2, "a1"); err != nil {
		t.Fatal(err)
	}
	if err := j.DeletePublication(ctx, "dialog", c.Resource, "c1"); err != nil {
		t.Fatal(err)
	}
	j.crash()

	j = openJournaled(t, dir)
	defer j.Close()
	samePubs(t, "after recovery", pubsOf(t, j, now), []Publication{a2})
	if n := pubTableRows(t, j); n != 1 {
		t.Fatalf("%d rows in the table after the replay, want 1", n)
	}
	if err := j.PutPublication(ctx, a2, "a1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a refresh of the replaced ETag: %v, want ErrNotFound", err)
	}
	a3 := a2
	a3.ETag = "a3"
	if err := j.PutPublication(ctx, a3, "a2"); err != nil {
		t.Fatalf("a refresh of the recovered ETag: %v", err)
	}
	if err := j.PutPublication(ctx, c, ""); err != nil {
		t.Fatalf("the removed publication's ID again: %v", err)
	}
}

// A write the journal could not take changes nothing: the same write
// succeeds once the journal works again (it is not ErrExists).
func TestJournalPublicationWriteFails(t *testing.T) {
	ctx := context.Background()
	j := openJournaled(t, t.TempDir())
	defer j.Close()
	now := time.UnixMilli(time.Now().UnixMilli())
	ro, err := os.Open(j.path) // read-only: every write fails
	if err != nil {
		t.Fatal(err)
	}
	j.mu.Lock()
	j.f.Close()
	j.f = ro
	j.mu.Unlock()
	a := pub("presence", "alice@example.test", "a1", "da", now, now.Add(time.Hour), "<a1/>")
	ws := []PublicationWrite{{P: a}}
	if err := j.WritePublications(ctx, ws); err == nil {
		t.Fatal("a failed journal write was reported committed")
	}
	samePubs(t, "after the failed write", pubsOf(t, j, now), nil)
	if err := j.checkpoint(ctx, 0); err != nil { // starts a usable journal
		t.Fatal(err)
	}
	if err := j.PutPublication(ctx, a, ""); err != nil {
		t.Fatalf("the write again: %v", err)
	}
	samePubs(t, "after the write", pubsOf(t, j, now), []Publication{a})
}

// PurgePublications counts publications that lapsed while still in the
// journal, and their IDs are free afterwards.
func TestJournalPublicationsPurge(t *testing.T) {
	ctx := context.Background()
	j := openJournaled(t, t.TempDir())
	defer j.Close()
	now := time.UnixMilli(time.Now().UnixMilli())
	old := pub("presence", "alice@example.test", "a1", "da", now.Add(-time.Hour), now.Add(-time.Second), "<a1/>")
	live := pub("presence", "bob@example.test", "b1", "db", now, now.Add(time.Hour), "<b1/>")
	for _, p := range []Publication{old, live} {
		if err := j.PutPublication(ctx, p, ""); err != nil {
			t.Fatal(err)
		}
	}
	n, err := j.PurgePublications(ctx, now)
	if err != nil || n != 1 {
		t.Fatalf("purged %d, %v; want 1", n, err)
	}
	samePubs(t, "after the purge", pubsOf(t, j, now.Add(-time.Hour)), []Publication{live})
	again := old
	again.ETag, again.Expires = "a2", now.Add(time.Hour)
	if err := j.PutPublication(ctx, again, ""); err != nil {
		t.Fatalf("a new publication under a purged one's ID: %v", err)
	}
}

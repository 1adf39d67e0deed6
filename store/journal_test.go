package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// sqlOf is the database/sql store behind s, journaled or not.
func sqlOf(s Store) *sqlStore {
	if j, ok := s.(*journaled); ok {
		return j.sqlStore
	}
	return s.(*sqlStore)
}

// openJournaled opens the embedded store in dir as Open does, but leaves
// checkpoints to the test.
func openJournaled(t *testing.T, dir string) *journaled {
	t.Helper()
	return openSQLiteJournal(t, filepath.Join(dir, SQLiteFile), time.Hour, 0)
}

// openSQLiteJournal is OpenSQLite with the journal's checkpoint interval
// and size limit (0: the defaults).
func openSQLiteJournal(tb testing.TB, path string, every time.Duration, limit int64) *journaled {
	tb.Helper()
	ctx := context.Background()
	s, err := openSQLiteDB(ctx, path)
	if err != nil {
		tb.Fatal(err)
	}
	j, err := openJournal(ctx, s, path, every, limit)
	if err != nil {
		s.Close()
		tb.Fatal(err)
	}
	return j
}

// crash stops the owner as a killed process would: no checkpoint, files
// and lock simply released.
func (j *journaled) crash() {
	j.mu.Lock()
	j.closed = true
	j.mu.Unlock()
	close(j.stop)
	j.wg.Wait()
	j.f.Close()
	j.lock.Close()
	j.sqlStore.Close()
}

func testBinding(i int, now time.Time) Binding {
	return Binding{
		AOR: fmt.Sprintf("u%d@example.test", i), ID: fmt.Sprintf("id%d", i), Contact: fmt.Sprintf("<sip:u%d@198.51.100.7:5060>", i),
		Q: 1000, Expires: now.Add(time.Hour), CallID: fmt.Sprintf("c%d", i), CSeq: uint32(i + 1), Path: "<sip:edge.test;lr>",
		Instance: `"<urn:uuid:00000000-0000-0000-0000-00000000000` + fmt.Sprint(i%10) + `>"`, RegID: 1,
		Source: "198.51.100.7:5060", Local: "192.0.2.1:5060", Transport: "UDP", UserAgent: "test", Updated: now,
		NAT: i%2 == 1,
	}
}

// tableRows reads the hlas_bindings table itself, without the journal.
func tableRows(t *testing.T, j *journaled, now time.Time) []Binding {
	t.Helper()
	bs, err := j.sqlStore.Bindings(context.Background(), "", now)
	if err != nil {
		t.Fatal(err)
	}
	return bs
}

func bindingsOf(t *testing.T, s Bindings, aor string, now time.Time) []Binding {
	t.Helper()
	bs, err := s.Bindings(context.Background(), aor, now)
	if err != nil {
		t.Fatal(err)
	}
	return bs
}

func sameBindings(t *testing.T, what string, got, want []Binding) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d bindings, want %d: %+v", what, len(got), len(want), got)
	}
	for i := range got {
		g, w := got[i], want[i]
		if !g.Expires.Equal(w.Expires) || !g.Updated.Equal(w.Updated) {
			t.Errorf("%s[%d]: times %v %v, want %v %v", what, i, g.Expires, g.Updated, w.Expires, w.Updated)
		}
		g.Expires, g.Updated, w.Expires, w.Updated = time.Time{}, time.Time{}, time.Time{}, time.Time{}
		if g != w {
			t.Errorf("%s[%d] = %+v, want %+v", what, i, g, w)
		}
	}
}

// A write is committed to the journal, not the table; the checkpoint
// moves it to the table and removes the journal it came from.
func TestJournalCheckpoint(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	j := openJournaled(t, dir)
	defer j.Close()
	now := time.Unix(time.Now().Unix(), 0)
	b0, b1 := testBinding(0, now), testBinding(1, now)
	if err := j.WriteBindings(ctx, []Binding{b0, b1}, nil); err != nil {
		t.Fatal(err)
	}
	if n := len(tableRows(t, j, now)); n != 0 {
		t.Fatalf("table has %d rows before the checkpoint", n)
	}
	sameBindings(t, "through the journal", bindingsOf(t, j, "", now), []Binding{b0, b1})
	sameBindings(t, "one AOR", bindingsOf(t, j, b1.AOR, now), []Binding{b1})
	if err := j.checkpoint(ctx, 0); err != nil {
		t.Fatal(err)
	}
	sameBindings(t, "table after checkpoint", tableRows(t, j, now), []Binding{b0, b1})
	if _, err := os.Stat(j.path + ".1"); !os.IsNotExist(err) {
		t.Errorf("old journal still there: %v", err)
	}
	// A delete in the journal hides the row in the table.
	if err := j.WriteBindings(ctx, nil, []BindingKey{{AOR: b0.AOR, ID: b0.ID}}); err != nil {
		t.Fatal(err)
	}
	sameBindings(t, "after delete", bindingsOf(t, j, "", now), []Binding{b1})
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(j.path); !os.IsNotExist(err) {
		t.Errorf("a clean close left the journal: %v", err)
	}
	j2 := openJournaled(t, dir)
	defer j2.Close()
	sameBindings(t, "table after close", tableRows(t, j2, now), []Binding{b1})
}

// After a crash the next owner replays both journals, older first, and
// ignores the torn tail of an interrupted write.
func TestJournalRecovery(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	now := time.Unix(time.Now().Unix(), 0)
	j := openJournaled(t, dir)
	b0, b1, b2 := testBinding(0, now), testBinding(1, now), testBinding(2, now)
	if err := j.WriteBindings(ctx, []Binding{b0, b1}, nil); err != nil {
		t.Fatal(err)
	}
	// Rotate as a checkpoint would, without applying: the crash comes
	// in the middle of it.
	j.mu.Lock()
	if err := os.Rename(j.path, j.path+".1"); err != nil {
		t.Fatal(err)
	}
	nf, err := os.OpenFile(j.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	j.f.Close()
	j.f = nf
	j.mu.Unlock()
	b1.CSeq, b1.Expires = 99, now.Add(2*time.Hour)
	if err := j.WriteBindings(ctx, []Binding{b1, b2}, []BindingKey{{AOR: b0.AOR, ID: b0.ID}}); err != nil {
		t.Fatal(err)
	}
	// A batch cut short by the crash: never acknowledged, never applied.
	torn := testBinding(3, now)
	if err := j.WriteBindings(ctx, []Binding{torn}, nil); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(j.path)
	if err != nil {
		t.Fatal(err)
	}
	j.crash()
	if err := os.Truncate(j.path, fi.Size()-3); err != nil {
		t.Fatal(err)
	}

	j2 := openJournaled(t, dir)
	defer j2.Close()
	sameBindings(t, "table after recovery", tableRows(t, j2, now), []Binding{b1, b2})
	for _, p := range []string{j2.path + ".1"} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s left after recovery: %v", filepath.Base(p), err)
		}
	}
}

// A second process (hlas reg list while the server runs) does not own
// the journal; it reads the table with the owner's journals over it.
func TestJournalReadThrough(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	now := time.Unix(time.Now().Unix(), 0)
	owner := openJournaled(t, dir)
	defer owner.Close()
	reader := openJournaled(t, dir)
	defer reader.Close()
	if !owner.owner || reader.owner {
		t.Fatalf("owner %v, reader %v", owner.owner, reader.owner)
	}
	b0, b1 := testBinding(0, now), testBinding(1, now)
	if err := owner.WriteBindings(ctx, []Binding{b0, b1}, nil); err != nil {
		t.Fatal(err)
	}
	sameBindings(t, "reader before checkpoint", bindingsOf(t, reader, "", now), []Binding{b0, b1})
	if err := owner.checkpoint(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if err := owner.WriteBindings(ctx, nil, []BindingKey{{AOR: b1.AOR, ID: b1.ID}}); err != nil {
		t.Fatal(err)
	}
	sameBindings(t, "reader after checkpoint and delete", bindingsOf(t, reader, "", now), []Binding{b0})
	if g := reader.generation(); g != 1 {
		t.Errorf("generation %d, want 1", g)
	}
	// Lapsed bindings are left out of the journal's view as of the table's.
	sameBindings(t, "reader later", bindingsOf(t, reader, "", now.Add(2*time.Hour)), nil)
}

// PurgeBindings counts bindings that lapsed while still in the journal.
func TestJournalPurge(t *testing.T) {
	ctx := context.Background()
	j := openJournaled(t, t.TempDir())
	defer j.Close()
	now := time.Unix(time.Now().Unix(), 0)
	b0 := testBinding(0, now)
	b0.Expires = now.Add(-time.Second)
	if err := j.WriteBindings(ctx, []Binding{b0, testBinding(1, now)}, nil); err != nil {
		t.Fatal(err)
	}
	n, err := j.PurgeBindings(ctx, now)
	if err != nil || n != 1 {
		t.Fatalf("purged %d, %v; want 1", n, err)
	}
}

// FuzzJournalBatch feeds damaged batches to the decoder: it must reject
// them whole or decode them, never panic or apply part of one.
func FuzzJournalBatch(f *testing.F) {
	now := time.Unix(1700000000, 0)
	b := testBinding(1, now)
	f.Add(encodePut(append([]byte(nil), 1), &b))
	f.Add(append(append([]byte(nil), 2, opDel, 1, 'a', 1, 'b'), encodePut(nil, &b)...))
	b0 := testBinding(2, now) // without flags: opPut
	f.Add(append(append([]byte(nil), 2), append(encodePut(nil, &b0), encodePut(nil, &b)...)...))
	f.Add([]byte{0})
	pub := Publication{Event: "presence", Resource: "a@b", ID: "i", ETag: "e", ContentType: "application/pidf+xml",
		Body: []byte("<x/>"), Created: now, Updated: now, Expires: now.Add(time.Hour)}
	f.Add(append(encodePubPut(append([]byte(nil), 2), &pub), opPubDel, 1, 'p', 1, 'r', 1, 'i'))
	f.Add(append(encodePubPut([]byte{2}, &pub), opDel, 1, 'a', 1, 'b'))
	f.Fuzz(func(t *testing.T, p []byte) {
		m := newJournalChanges()
		if err := decodeBatch(p, m); err != nil && len(m.bindings)+len(m.pubs) != 0 {
			t.Fatalf("a rejected batch changed %d bindings and %d publications", len(m.bindings), len(m.pubs))
		}
	})
}

// A checkpoint larger than one transaction's chunk lands whole.
func TestJournalCheckpointInChunks(t *testing.T) {
	ctx := context.Background()
	j := openJournaled(t, t.TempDir())
	defer j.Close()
	now := time.Unix(time.Now().Unix(), 0)
	n := 2*checkpointChunk + 7
	put := make([]Binding, n)
	for i := range put {
		put[i] = testBinding(i, now)
	}
	if err := j.WriteBindings(ctx, put, nil); err != nil {
		t.Fatal(err)
	}
	if err := j.WriteBindings(ctx, nil, []BindingKey{{AOR: put[5].AOR, ID: put[5].ID}}); err != nil {
		t.Fatal(err)
	}
	if err := j.checkpoint(ctx, time.Microsecond); err != nil {
		t.Fatal(err)
	}
	if got := len(tableRows(t, j, now)); got != n-1 {
		t.Fatalf("table has %d rows after the checkpoint, want %d", got, n-1)
	}
}

// A journal that cannot be written (a full disk, a lost file system)
// fails the commit, so the REGISTER gets its 500, and the failed batch is
// not shown as committed. When what the write left cannot be cut off
// either, the journal takes no more appends until a checkpoint starts a
// fresh file.
func TestJournalWriteFails(t *testing.T) {
	ctx := context.Background()
	j := openJournaled(t, t.TempDir())
	defer j.Close()
	now := time.Unix(time.Now().Unix(), 0)
	ro, err := os.Open(j.path) // read-only: every write fails
	if err != nil {
		t.Fatal(err)
	}
	j.mu.Lock()
	j.f.Close()
	j.f = ro
	j.mu.Unlock()
	if err := j.WriteBindings(ctx, []Binding{testBinding(0, now)}, nil); err == nil {
		t.Fatal("a failed journal write was reported committed")
	}
	sameBindings(t, "after the failed write", bindingsOf(t, j, "", now), nil)
	if err := j.WriteBindings(ctx, []Binding{testBinding(1, now)}, nil); err == nil {
		t.Fatal("appended after a failed write that could not be cut off")
	}
	if err := j.checkpoint(ctx, 0); err != nil {
		t.Fatal(err)
	}
	b2 := testBinding(2, now)
	if err := j.WriteBindings(ctx, []Binding{b2}, nil); err != nil {
		t.Fatalf("write after the checkpoint: %v", err)
	}
	sameBindings(t, "after the checkpoint", bindingsOf(t, j, "", now), []Binding{b2})
}

// A checkpoint that fails keeps the renamed journal and its changes, and
// the next checkpoint writes them before anything newer.
func TestJournalCheckpointRetried(t *testing.T) {
	j := openJournaled(t, t.TempDir())
	defer j.Close()
	now := time.Unix(time.Now().Unix(), 0)
	b0, b1 := testBinding(0, now), testBinding(1, now)
	if err := j.WriteBindings(context.Background(), []Binding{b0}, nil); err != nil {
		t.Fatal(err)
	}
	dead, cancel := context.WithCancel(context.Background())
	cancel() // the database cannot be reached
	if err := j.checkpoint(dead, 0); err == nil {
		t.Fatal("checkpoint with a dead database succeeded")
	}
	if _, err := os.Stat(j.path + ".1"); err != nil {
		t.Fatalf("the journal being checkpointed is gone after a failure: %v", err)
	}
	b0.CSeq = 50 // a newer change of the same binding, in the new journal
	if err := j.WriteBindings(context.Background(), []Binding{b0, b1}, nil); err != nil {
		t.Fatal(err)
	}
	sameBindings(t, "while the checkpoint is pending", bindingsOf(t, j, "", now), []Binding{b0, b1})
	for range 2 { // the retry of the old journal, then the new one
		if err := j.checkpoint(context.Background(), 0); err != nil {
			t.Fatal(err)
		}
	}
	sameBindings(t, "table after the retry", tableRows(t, j, now), []Binding{b0, b1})
	if _, err := os.Stat(j.path + ".1"); !os.IsNotExist(err) {
		t.Errorf("old journal left after the retry: %v", err)
	}
}

// A write the disk cuts short (full, or over a size limit) leaves part of
// a batch in the journal; batches acknowledged after it must still be
// replayed after a crash, and seen by another process meanwhile.
func TestJournalShortWrite(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	now := time.Unix(time.Now().Unix(), 0)
	j := openJournaled(t, dir)
	reader := openJournaled(t, dir)
	defer reader.Close()
	b0, b1, b2 := testBinding(0, now), testBinding(1, now), testBinding(2, now)
	if err := j.WriteBindings(ctx, []Binding{b0}, nil); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(j.path)
	if err != nil {
		t.Fatal(err)
	}
	// The kernel writes what fits under RLIMIT_FSIZE and fails the rest
	// (SIGXFSZ, which the Go runtime ignores), as it does on a full disk.
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	lim := old
	lim.Cur = uint64(fi.Size()) + 20
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		t.Skipf("cannot limit file sizes: %v", err)
	}
	err = j.WriteBindings(ctx, []Binding{b1}, nil)
	if rerr := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); rerr != nil {
		t.Fatal(rerr)
	}
	if err == nil {
		t.Fatal("a write cut short was reported committed")
	}
	if err := j.WriteBindings(ctx, []Binding{b2}, nil); err != nil {
		t.Fatal(err)
	}
	sameBindings(t, "another process", bindingsOf(t, reader, "", now), []Binding{b0, b2})
	j.crash()
	j2 := openJournaled(t, dir)
	defer j2.Close()
	sameBindings(t, "table after recovery", tableRows(t, j2, now), []Binding{b0, b2})
}

// A checkpoint that fails at Close leaves the journal in place (Close
// reports the error), and the next owner replays it.
func TestJournalCloseCheckpointFails(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	now := time.Unix(time.Now().Unix(), 0)
	j := openJournaled(t, dir)
	b0 := testBinding(0, now)
	if err := j.WriteBindings(ctx, []Binding{b0}, nil); err != nil {
		t.Fatal(err)
	}
	// The table gone from under the store: the checkpoint cannot write it.
	if _, err := j.db.Exec(`DROP TABLE hlas_bindings`); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err == nil {
		t.Fatal("Close reported a failed checkpoint as done")
	}
	j2 := openJournaled(t, dir) // creates the table again, then replays
	defer j2.Close()
	sameBindings(t, "table after the next open", tableRows(t, j2, now), []Binding{b0})
}

// A journal grown past its size limit is checkpointed at once, without
// waiting for the interval, which bounds the replay after a crash.
func TestJournalCheckpointWhenBig(t *testing.T) {
	j := openSQLiteJournal(t, filepath.Join(t.TempDir(), SQLiteFile), time.Hour, 1)
	defer j.Close()
	now := time.Unix(time.Now().Unix(), 0)
	b0 := testBinding(0, now)
	if err := j.WriteBindings(context.Background(), []Binding{b0}, nil); err != nil {
		t.Fatal(err)
	}
	for len(tableRows(t, j, now)) == 0 {
		time.Sleep(time.Millisecond) // the background checkpoint; the test's timeout bounds it
	}
	sameBindings(t, "table", tableRows(t, j, now), []Binding{b0})
}

package store

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
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
		t.Fatalf("second initial put of one publication: %v, want ErrExists", err)
	}
	// The ID names the row: a new publication under a taken ID is refused
	// whatever its ETag, the same ID under another resource is another row.
	dupID := a1
	dupID.ETag = "etag-other"
	if err := s.PutPublication(ctx, dupID, ""); !errors.Is(err, ErrExists) {
		t.Fatalf("initial put under a taken ID: %v, want ErrExists", err)
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
	// The ETag of another publication of the same resource is no match
	// either: the row is the one of p.ID.
	wrong = b1
	wrong.ETag = "etag-y"
	if err := s.PutPublication(ctx, wrong, "etag-a2"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("replace naming another publication's ETag: %v, want ErrNotFound", err)
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

// TestWritePublications: a batch is one transaction in which each write
// gets its own outcome; a write whose precondition fails does not fail
// the others, any other failure fails them all and changes nothing.
func TestWritePublications(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			s := open(t)
			ctx := context.Background()
			now := time.UnixMilli(1_800_000_000_000)
			hour := now.Add(time.Hour)
			a := pub("presence", "alice@example.test", "a1", "id-a", now, hour, "<a1/>")
			b := pub("presence", "bob@example.test", "b1", "id-b", now, hour, "<b1/>")
			if err := s.PutPublication(ctx, a, ""); err != nil {
				t.Fatal(err)
			}
			a2 := a
			a2.ETag, a2.Body = "a2", []byte("<a2/>")
			c := pub("dialog", "carol@example.test", "c1", "id-c", now, hour, "<c1/>")
			ws := []PublicationWrite{
				{P: a2, Replaces: "a1"},
				{P: b},
				{P: a, Replaces: "stale"}, // ErrNotFound
				{P: b},                    // ErrExists: the second b of the batch
				{P: c},                    // removed again below
				{P: c, Delete: true},      // sees the insert before it
				{P: pub("presence", "x@y", "gone", "id-x", now, hour, ""), Delete: true}, // ErrNotFound
			}
			if err := s.WritePublications(ctx, ws); err != nil {
				t.Fatal(err)
			}
			want := []error{nil, nil, ErrNotFound, ErrExists, nil, nil, ErrNotFound}
			for i := range ws {
				if (want[i] == nil) != (ws[i].Err == nil) || want[i] != nil && !errors.Is(ws[i].Err, want[i]) {
					t.Errorf("write %d: Err = %v, want %v", i, ws[i].Err, want[i])
				}
			}
			got, err := s.Publications(ctx, now)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 2 || !samePublication(got[0], a2) || !samePublication(got[1], b) {
				t.Fatalf("after the batch: %+v, want a2 and b", got)
			}

			// A failed batch writes nothing: here its transaction cannot
			// start.
			cancelled, cancel := context.WithCancel(ctx)
			cancel()
			a3 := a2
			a3.ETag = "a3"
			if err := s.WritePublications(cancelled, []PublicationWrite{{P: a3, Replaces: "a2"}, {P: c}}); err == nil {
				t.Fatal("batch with a cancelled context succeeded")
			}
			if name == "postgres" {
				// And here its second statement fails (a resource that
				// is not UTF-8, which PostgreSQL's TEXT refuses) after
				// the first succeeded.
				bad := pub("presence", "\xff@example.test", "x1", "id-x", now, hour, "<x/>")
				if err := s.WritePublications(ctx, []PublicationWrite{{P: a3, Replaces: "a2"}, {P: bad}}); err == nil {
					t.Fatal("batch with an invalid row succeeded")
				}
			}
			got, err = s.Publications(ctx, now)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 2 || !samePublication(got[0], a2) || !samePublication(got[1], b) {
				t.Fatalf("after failed batches: %+v, want a2 and b unchanged", got)
			}
			if err := s.WritePublications(ctx, []PublicationWrite{{P: Publication{Event: "presence"}}}); err == nil {
				t.Fatal("batch with a publication without resource, ETag or ID succeeded")
			}
		})
	}
}

// TestPublicationWritesDurable: a write that returned is committed — a
// connection of its own (another database handle, as another process
// would have) reads it at once — while eight writers share the store.
func TestPublicationWritesDurable(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			s := open(t)
			readETag := otherReader(t, s)
			ctx := context.Background()
			now := time.Now()
			const writers, each = 8, 20
			var wg sync.WaitGroup
			errs := make(chan error, writers*each)
			for w := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					res := fmt.Sprintf("u%d@example.test", w)
					prev := ""
					for i := range each {
						p := pub("presence", res, fmt.Sprintf("e%d-%d", w, i), "d", now, now.Add(time.Hour), "<p/>")
						ws := []PublicationWrite{{P: p, Replaces: prev}}
						if err := s.WritePublications(ctx, ws); err != nil || ws[0].Err != nil {
							errs <- fmt.Errorf("write %s: %v %v", p.ETag, err, ws[0].Err)
							return
						}
						if etag, err := readETag(res, now); err != nil || etag != p.ETag {
							errs <- fmt.Errorf("after the write of %s another connection reads %q (%v)", p.ETag, etag, err)
							return
						}
						prev = p.ETag
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
	}
}

// otherHandle opens a second database handle on s's database, with
// connections of its own.
// otherReader returns how another process reads the ETag of resource's
// presence publication "d": the embedded store's journal owner is read
// through a second store on its files (table and journal), another
// database through a connection of its own.
func otherReader(t *testing.T, s Store) func(resource string, now time.Time) (string, error) {
	t.Helper()
	if j, ok := s.(*journaled); ok {
		other, err := OpenSQLite(context.Background(), strings.TrimSuffix(j.path, journalSuffix))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { other.Close() })
		if other.(*journaled).owner {
			t.Fatal("a second store owns the journal")
		}
		return func(resource string, now time.Time) (string, error) {
			ps, err := other.Publications(context.Background(), now)
			for _, p := range ps {
				if p.Event == "presence" && p.Resource == resource && p.ID == "d" {
					return p.ETag, err
				}
			}
			return "", err
		}
	}
	db := otherHandle(t, s)
	return func(resource string, _ time.Time) (string, error) {
		var etag string
		err := db.QueryRow(sqlOf(s).rebind(`SELECT etag FROM hlas_publications WHERE event = ? AND resource = ? AND id = ?`),
			"presence", resource, "d").Scan(&etag)
		return etag, err
	}
}

func otherHandle(t *testing.T, s Store) *sql.DB {
	t.Helper()
	sq := sqlOf(s)
	var db *sql.DB
	var err error
	switch sq.name {
	case "sqlite":
		var file string
		if err := sq.db.QueryRow(`SELECT file FROM pragma_database_list WHERE name = 'main'`).Scan(&file); err != nil {
			t.Fatal(err)
		}
		db, err = sql.Open("sqlite", "file:"+file+"?_pragma=busy_timeout(5000)")
	case "postgres":
		var schema string
		if err := sq.db.QueryRow(`SELECT current_schema()`).Scan(&schema); err != nil {
			t.Fatal(err)
		}
		url := os.Getenv("HLAS_TEST_POSTGRES")
		sep := "?"
		if strings.Contains(url, "?") {
			sep = "&"
		}
		db, err = sql.Open("pgx", url+sep+"search_path="+schema)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// oldPublicationsSchema is the first layout of the table, keyed by ETag,
// as a database made by an earlier release has it.
var oldPublicationsSchema = []string{
	`CREATE TABLE hlas_publications (
		event        TEXT NOT NULL,
		resource     TEXT NOT NULL,
		etag         TEXT NOT NULL,
		id           TEXT NOT NULL,
		content_type TEXT NOT NULL,
		body         BYTEA NOT NULL,
		created_ms   BIGINT NOT NULL,
		updated_ms   BIGINT NOT NULL,
		expires_ms   BIGINT NOT NULL,
		PRIMARY KEY (event, resource, etag)
	)`,
	`CREATE INDEX hlas_publications_expires ON hlas_publications (expires_ms)`,
}

// oldPublications fills a table of the first layout through db.
func oldPublications(t *testing.T, db *sql.DB, rebind func(string) string, pubs []Publication) {
	t.Helper()
	for _, stmt := range oldPublicationsSchema {
		if _, err := db.Exec(stmt); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range pubs {
		if _, err := db.Exec(rebind(`INSERT INTO hlas_publications (event, resource, etag, id, content_type, body, created_ms, updated_ms, expires_ms)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`), p.Event, p.Resource, p.ETag, p.ID, p.ContentType, p.Body,
			p.Created.UnixMilli(), p.Updated.UnixMilli(), p.Expires.UnixMilli()); err != nil {
			t.Fatal(err)
		}
	}
}

func oldRows(now time.Time) []Publication {
	return []Publication{
		pub("presence", "alice@example.test", "etag-a", "id-a", now, now.Add(time.Hour), "<presence>\x00\xff</presence>"),
		pub("presence", "alice@example.test", "etag-b", "id-b", now.Add(time.Millisecond), now.Add(time.Hour), "<b/>"),
		pub("dialog", "bob@example.test", "etag-c", "id-c", now, now.Add(time.Minute), "<dialog-info/>"),
	}
}

// TestPublicationsMigration: a publications table of the first layout
// (keyed by ETag) is converted when the store opens, keeping its rows;
// the converted table rewrites a refreshed row under its ID.
func TestPublicationsMigration(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			s := open(t)
			sq := sqlOf(s)
			ctx := context.Background()
			now := time.UnixMilli(1_800_000_000_000)
			if _, err := sq.db.Exec(`DROP TABLE hlas_publications`); err != nil {
				t.Fatal(err)
			}
			rows := oldRows(now)
			oldPublications(t, sq.db, sq.rebind, rows)
			if old, err := sq.oldPublicationsKey(ctx, sq.db); err != nil || !old {
				t.Fatalf("old layout not recognised: %v %v", old, err)
			}
			// What newSQLStore runs; twice, as a second process opening
			// the database would. The journal's owner then reads the
			// publications it indexes, as its open does.
			for range 2 {
				if err := sq.createPublications(ctx); err != nil {
					t.Fatal(err)
				}
			}
			if j, ok := s.(*journaled); ok {
				if err := j.loadPubIndex(ctx); err != nil {
					t.Fatal(err)
				}
			}
			checkMigrated(t, s, rows, now)
		})
	}
}

// TestPublicationsMigrationReopen: the same with a whole SQLite database
// of the earlier release, opened as the server opens it.
func TestPublicationsMigrationReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), SQLiteFile)
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	now := time.UnixMilli(1_800_000_000_000)
	rows := oldRows(now)
	oldPublications(t, db, sameQuery, rows)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := OpenSQLite(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	checkMigrated(t, s, rows, now)
}

// checkMigrated checks that s holds rows in the current layout and that
// they can be refreshed and removed.
func checkMigrated(t *testing.T, s Store, rows []Publication, now time.Time) {
	t.Helper()
	ctx := context.Background()
	sq := sqlOf(s)
	if old, err := sq.oldPublicationsKey(ctx, sq.db); err != nil || old {
		t.Fatalf("still the old layout after opening: %v %v", old, err)
	}
	got, err := s.Publications(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	want := []Publication{rows[2], rows[0], rows[1]} // dialog first
	if len(got) != len(want) {
		t.Fatalf("after migration: %d rows, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if !samePublication(got[i], want[i]) {
			t.Errorf("row %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	a := rows[0]
	a.ETag = "etag-a2"
	if err := s.PutPublication(ctx, a, "etag-a"); err != nil {
		t.Fatalf("refresh of a migrated row: %v", err)
	}
	if err := s.DeletePublication(ctx, "presence", "alice@example.test", "etag-b"); err != nil {
		t.Fatalf("removal of a migrated row: %v", err)
	}
	if got, err := s.Publications(ctx, now); err != nil || len(got) != 2 || got[1].ETag != "etag-a2" {
		t.Fatalf("after refresh and removal: %+v, %v", got, err)
	}
	if j, ok := s.(*journaled); ok { // the table holds them after a checkpoint
		if err := j.checkpoint(ctx, 0); err != nil {
			t.Fatal(err)
		}
	}
	var n int
	if err := sq.db.QueryRow(`SELECT count(*) FROM hlas_publications`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("%d rows in the table (%v), want 2", n, err)
	}
}

// BenchmarkPublicationWrites: refreshes of stored publications (a new
// ETag and expiry, the body of the other of two documents), on the
// embedded database, committed in batches of the given size, as the
// compositor's group commit writes them. ns/op and cpu-ns/op are per
// publication.
func BenchmarkPublicationWrites(b *testing.B) {
	for _, batch := range []int{1, 2, 4, 8, 32} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			ctx := context.Background()
			st, err := OpenSQLite(ctx, filepath.Join(b.TempDir(), SQLiteFile))
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			const n = 1000
			now := time.Now()
			bodies := [2][]byte{
				[]byte(`<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:user@example.test"><tuple id="t1"><status><basic>open</basic></status><contact>sip:user@192.0.2.10:5060</contact></tuple></presence>`),
				[]byte(`<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:user@example.test"><tuple id="t1"><status><basic>closed</basic></status><contact>sip:user@192.0.2.10:5060</contact></tuple></presence>`),
			}
			pubs := make([]Publication, n)
			for i := range pubs {
				pubs[i] = Publication{Event: "presence", Resource: fmt.Sprintf("user%04d@example.test", i),
					ETag: fmt.Sprintf("etag-%04d-000000000", i), ID: fmt.Sprintf("id-%04d-xxxx", i), ContentType: "application/pidf+xml",
					Body: bodies[0], Created: now, Updated: now, Expires: now.Add(time.Hour)}
				if err := st.PutPublication(ctx, pubs[i], ""); err != nil {
					b.Fatal(err)
				}
			}
			ws := make([]PublicationWrite, 0, batch)
			b.ReportAllocs()
			cpu0 := cpuTime()
			b.ResetTimer()
			for i := 0; i < b.N; i += batch {
				ws = ws[:0]
				for k := i; k < min(i+batch, b.N); k++ {
					j := k * 7919 % n
					p := &pubs[j]
					prev := p.ETag
					p.ETag = fmt.Sprintf("etag-%04d-%09d", j, k)
					p.Body = bodies[k%2]
					p.Updated, p.Expires = p.Updated.Add(time.Millisecond), p.Expires.Add(time.Millisecond)
					ws = append(ws, PublicationWrite{P: *p, Replaces: prev})
				}
				if err := st.WritePublications(ctx, ws); err != nil {
					b.Fatal(err)
				}
				for _, w := range ws {
					if w.Err != nil {
						b.Fatal(w.Err)
					}
				}
			}
			b.StopTimer()
			b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}

// TestWritePublicationsDoneContext: a context already done fails the
// write at once on every backend (on SQLite the statements themselves run
// without cancellation, see sqlStore.local), and nothing is written.
func TestWritePublicationsDoneContext(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			s := open(t)
			now := time.UnixMilli(1_800_000_000_000)
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			p := pub("presence", "dora@example.test", "d1", "id-d", now, now.Add(time.Hour), "<d1/>")
			err := s.(Publications).WritePublications(ctx, []PublicationWrite{{P: p}})
			if err == nil || name == "sqlite" && !errors.Is(err, context.Canceled) {
				t.Fatalf("WritePublications with a cancelled context: %v, want it to fail (context.Canceled on SQLite)", err)
			}
			got, err := s.(Publications).Publications(context.Background(), now)
			if err != nil {
				t.Fatal(err)
			}
			for _, q := range got {
				if q.ETag == "d1" {
					t.Fatal("written despite the cancelled context")
				}
			}
		})
	}
}

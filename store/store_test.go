package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// backends opens a fresh, empty store of each kind. PostgreSQL comes from
// HLAS_TEST_POSTGRES; without it, or when it cannot be reached, the
// PostgreSQL run is skipped on a developer machine and fails under CI
// (CI=true), so CI cannot pass without having tested it.
func backends(t *testing.T) map[string]func(t *testing.T) Store {
	return map[string]func(t *testing.T) Store{
		"sqlite": func(t *testing.T) Store {
			s, err := Open(context.Background(), Config{Dir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
		"postgres": func(t *testing.T) Store { return openTestPostgres(t) },
	}
}

// openTestPostgres opens the test database in a schema of its own, dropped
// when the test ends, so parallel runs and packages do not collide.
func openTestPostgres(t testing.TB) Store {
	t.Helper()
	url := os.Getenv("HLAS_TEST_POSTGRES")
	unavailable := func(format string, args ...any) {
		t.Helper()
		if os.Getenv("CI") == "true" {
			t.Fatalf("PostgreSQL is required under CI: "+format, args...)
		}
		t.Skipf("PostgreSQL not available: "+format, args...)
	}
	if url == "" {
		unavailable("HLAS_TEST_POSTGRES is not set")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	admin, err := sql.Open("pgx", url)
	if err != nil {
		unavailable("%v", err)
	}
	defer admin.Close()
	if err := admin.PingContext(ctx); err != nil {
		unavailable("%v", err)
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	schemaName := "hlas_test_" + hex.EncodeToString(rnd[:])
	if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+schemaName); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		db, err := sql.Open("pgx", url)
		if err != nil {
			return
		}
		defer db.Close()
		_, _ = db.Exec("DROP SCHEMA " + schemaName + " CASCADE")
	})
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	s, err := Open(ctx, Config{URL: url + sep + "search_path=" + schemaName})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestStore runs the same suite against every back end.
func TestStore(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			t.Run("users", func(t *testing.T) { testUsers(t, open(t)) })
			t.Run("bulk import", func(t *testing.T) { testPutUsers(t, open(t)) })
			t.Run("bindings", func(t *testing.T) { testBindings(t, open(t)) })
			t.Run("concurrent use", func(t *testing.T) { testConcurrent(t, open(t)) })
			t.Run("columns added to an old table", func(t *testing.T) { testAddedColumns(t, open(t)) })
		})
	}
}

func user(name, domain string) User {
	return User{Username: name, Domain: domain, HA1MD5: "md5-" + name, HA1SHA256: "sha-" + name}
}

func testUsers(t *testing.T, s Store) {
	ctx := context.Background()
	if _, err := s.User(ctx, "alice", "example.test"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("User of an empty store: %v, want ErrNotFound", err)
	}
	if err := s.AddUser(ctx, user("alice", "example.test")); err != nil {
		t.Fatal(err)
	}
	if err := s.AddUser(ctx, user("alice", "example.test")); !errors.Is(err, ErrExists) {
		t.Fatalf("second AddUser: %v, want ErrExists", err)
	}
	if err := s.AddUser(ctx, user("alice", "other.test")); err != nil {
		t.Fatalf("same user name in another domain: %v", err)
	}
	if err := s.AddUser(ctx, User{Username: "x", Domain: "example.test"}); err == nil {
		t.Fatal("AddUser without hashes succeeded")
	}
	u, err := s.User(ctx, "alice", "example.test")
	if err != nil {
		t.Fatal(err)
	}
	if u.HA1MD5 != "md5-alice" || u.HA1SHA256 != "sha-alice" || u.AOR() != "alice@example.test" || u.Created.IsZero() {
		t.Fatalf("User = %+v", u)
	}
	if _, err := s.User(ctx, "Alice", "example.test"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("user names are case-sensitive (RFC 3261 §19.1.4): %v", err)
	}
	if err := s.SetUserHashes(ctx, "alice", "example.test", "m2", "s2"); err != nil {
		t.Fatal(err)
	}
	if u, _ := s.User(ctx, "alice", "example.test"); u.HA1MD5 != "m2" || u.HA1SHA256 != "s2" {
		t.Fatalf("after SetUserHashes: %+v", u)
	}
	if err := s.SetUserHashes(ctx, "bob", "example.test", "m", "s"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("SetUserHashes of a missing user: %v", err)
	}
	if err := s.AddUser(ctx, user("bob", "example.test")); err != nil {
		t.Fatal(err)
	}
	all, err := s.ListUsers(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, u := range all {
		names = append(names, u.AOR())
	}
	if got := strings.Join(names, " "); got != "alice@example.test bob@example.test alice@other.test" {
		t.Fatalf("ListUsers = %s", got)
	}
	if dom, _ := s.ListUsers(ctx, "OTHER.test"); len(dom) != 1 {
		t.Fatalf("ListUsers(other.test) = %v", dom)
	}
	if err := s.DeleteUser(ctx, "alice", "example.test"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteUser(ctx, "alice", "example.test"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second DeleteUser: %v", err)
	}
	if _, err := s.User(ctx, "alice", "example.test"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted user still there: %v", err)
	}
}

func testPutUsers(t *testing.T, s Store) {
	ctx := context.Background()
	if err := s.AddUser(ctx, user("u00001", "bulk.test")); err != nil {
		t.Fatal(err)
	}
	us := make([]User, 10000)
	for i := range us {
		us[i] = user(fmt.Sprintf("u%05d", i), "bulk.test")
		us[i].HA1MD5 = "new"
	}
	start := time.Now()
	if err := s.PutUsers(ctx, us); err != nil {
		t.Fatal(err)
	}
	t.Logf("10000 users imported in %v", time.Since(start))
	all, err := s.ListUsers(ctx, "bulk.test")
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 10000 {
		t.Fatalf("%d users after import, want 10000", len(all))
	}
	if u, _ := s.User(ctx, "u00001", "bulk.test"); u.HA1MD5 != "new" {
		t.Fatalf("import did not replace an existing user: %+v", u)
	}
	// A bad row fails the whole import: one transaction.
	bad := []User{user("v1", "bulk.test"), {Username: "v2", Domain: "bulk.test"}}
	if err := s.PutUsers(ctx, bad); err == nil {
		t.Fatal("PutUsers with a bad row succeeded")
	}
	if _, err := s.User(ctx, "v1", "bulk.test"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a failed import left rows behind: %v", err)
	}
}

func binding(aor, id string, expires time.Time) Binding {
	return Binding{
		AOR: aor, ID: id, Contact: "<sip:" + id + "@192.0.2.1:5060>", Q: 500, Expires: expires,
		CallID: "call-" + id, CSeq: 4294967295, Path: "<sip:edge.test;lr>", Instance: `"<urn:uuid:1>"`, RegID: 1,
		Source: "192.0.2.1:5060", Local: "127.0.0.1:5060", Transport: "UDP", UserAgent: "test",
		Updated: expires.Add(-time.Hour),
	}
}

func testBindings(t *testing.T, s Store) {
	ctx := context.Background()
	now := time.Unix(1_800_000_000, 0)
	a1 := binding("alice@example.test", "a1", now.Add(time.Hour))
	a1.NAT = true
	a2 := binding("alice@example.test", "a2", now.Add(-time.Second))
	b1 := binding("bob@example.test", "b1", now.Add(time.Minute))
	if err := s.WriteBindings(ctx, []Binding{a1, a2, b1}, nil); err != nil {
		t.Fatal(err)
	}
	got, err := s.Bindings(ctx, "", now)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != a1 || got[1] != b1 {
		t.Fatalf("Bindings = %+v\nwant %+v and %+v", got, a1, b1)
	}
	// Replace one, remove another, in one call.
	a1.Contact, a1.CSeq, a1.Expires, a1.NAT = "<sip:new@192.0.2.9>", 7, now.Add(2*time.Hour), false
	if err := s.WriteBindings(ctx, []Binding{a1}, []BindingKey{{AOR: "bob@example.test", ID: "b1"}}); err != nil {
		t.Fatal(err)
	}
	got, _ = s.Bindings(ctx, "", now)
	if len(got) != 1 || got[0] != a1 {
		t.Fatalf("after update: %+v", got)
	}
	if got, _ := s.Bindings(ctx, "bob@example.test", now); len(got) != 0 {
		t.Fatalf("bob's bindings: %+v", got)
	}
	n, err := s.PurgeBindings(ctx, now)
	if err != nil || n != 1 {
		t.Fatalf("PurgeBindings = %d, %v; want the one lapsed binding", n, err)
	}
	if n, _ := s.PurgeBindings(ctx, now.Add(3*time.Hour)); n != 1 {
		t.Fatalf("PurgeBindings later = %d, want 1", n)
	}
}

// testConcurrent reads and writes from many goroutines at once, as the
// server's workers and the location writer do.
func testConcurrent(t *testing.T, s Store) {
	ctx := context.Background()
	now := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				name := fmt.Sprintf("g%d-%d", g, i)
				if err := s.AddUser(ctx, user(name, "c.test")); err != nil {
					errs <- err
					return
				}
				if _, err := s.User(ctx, name, "c.test"); err != nil {
					errs <- err
					return
				}
				b := binding(name+"@c.test", "x", now.Add(time.Hour))
				if err := s.WriteBindings(ctx, []Binding{b}, nil); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if bs, _ := s.Bindings(ctx, "", now); len(bs) != 160 {
		t.Errorf("%d bindings, want 160", len(bs))
	}
}

// TestSQLiteSharedFile proves that two processes' worth of handles on one
// database file see each other's writes: `hlas user add` while the server
// runs.
func TestSQLiteSharedFile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	server, err := Open(ctx, Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	if _, err := server.User(ctx, "carol", "example.test"); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	cli, err := Open(ctx, Config{URL: "sqlite:" + filepath.Join(dir, SQLiteFile)})
	if err != nil {
		t.Fatal(err)
	}
	if err := cli.AddUser(ctx, user("carol", "example.test")); err != nil {
		t.Fatal(err)
	}
	cli.Close()
	if _, err := server.User(ctx, "carol", "example.test"); err != nil {
		t.Fatalf("the server does not see a user added by another handle: %v", err)
	}
	var mode string
	if err := sqlOf(server).db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode = %q, %v; want wal", mode, err)
	}
}

func TestSplitAOR(t *testing.T) {
	tests := []struct{ in, user, domain string }{
		{"alice@example.test", "alice", "example.test"},
		{"sip:alice@Example.TEST", "alice", "example.test"},
		{"a@b@example.test", "a@b", "example.test"},
		{"alice", "", ""},
		{"@example.test", "", ""},
		{"alice@", "", ""},
		{"al ice@example.test", "", ""},
		{"alice@exa:mple", "", ""},
	}
	for _, tt := range tests {
		u, d, err := SplitAOR(tt.in)
		if tt.user == "" {
			if err == nil {
				t.Errorf("SplitAOR(%q) = %q, %q; want an error", tt.in, u, d)
			}
			continue
		}
		if err != nil || u != tt.user || d != tt.domain {
			t.Errorf("SplitAOR(%q) = %q, %q, %v", tt.in, u, d, err)
		}
	}
}

func TestOpenRejectsUnknownURL(t *testing.T) {
	_, err := Open(context.Background(), Config{URL: "mysql://root:hunter2@db/x"})
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("Open(mysql) = %v; want an error without the password", err)
	}
}

// testAddedColumns: a bindings table made before the nat column existed
// gets it, with its default, and keeps its rows; adding it again (another
// process opening the same database) is no error.
func testAddedColumns(t *testing.T, s Store) {
	ctx := context.Background()
	st := sqlOf(s) // the table itself, without the embedded store's journal
	now := time.Unix(1_800_000_000, 0)
	old := binding("alice@example.test", "old", now.Add(time.Hour))
	old.NAT = true
	if err := st.WriteBindings(ctx, []Binding{old}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := st.db.ExecContext(ctx, `ALTER TABLE hlas_bindings DROP COLUMN nat`); err != nil {
		t.Fatal(err)
	}
	if st.hasColumn(ctx, "hlas_bindings", "nat") {
		t.Fatal("the nat column is still there")
	}
	if err := st.addColumns(ctx); err != nil {
		t.Fatal(err)
	}
	if err := st.addColumns(ctx); err != nil {
		t.Fatalf("adding the column again: %v", err)
	}
	got, err := st.Bindings(ctx, "", now)
	old.NAT = false // the column's default: the flag went with the column
	if err != nil || len(got) != 1 || got[0] != old {
		t.Fatalf("after adding the column: %+v, %v; want %+v", got, err, old)
	}
	nat := binding("bob@example.test", "new", now.Add(time.Hour))
	nat.NAT = true
	if err := st.WriteBindings(ctx, []Binding{nat}, nil); err != nil {
		t.Fatal(err)
	}
	if got, err := st.Bindings(ctx, "bob@example.test", now); err != nil || len(got) != 1 || !got[0].NAT {
		t.Fatalf("a NAT binding written after: %+v, %v", got, err)
	}
}

// TestBindingsNATColumnAddedOnOpen: an embedded database made by a
// release without the nat column, rows and all, opens and reads.
func TestBindingsNATColumnAddedOnOpen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(ctx, Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Truncate(time.Second)
	b := binding("alice@example.test", "a1", now.Add(time.Hour))
	st := sqlOf(s)
	if err := st.WriteBindings(ctx, []Binding{b}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := st.db.ExecContext(ctx, `ALTER TABLE hlas_bindings DROP COLUMN nat`); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err = Open(ctx, Config{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.Bindings(ctx, "", now)
	if err != nil || len(got) != 1 || got[0] != b {
		t.Fatalf("Bindings after reopening: %+v, %v; want %+v", got, err, b)
	}
}

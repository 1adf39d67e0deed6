package store

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"
)

// TestUsersVersion checks that every change of a subscriber, through the
// store or in plain SQL, changes the users version, and that nothing else
// does: a cache of subscribers relies on both.
func TestUsersVersion(t *testing.T) {
	for name, open := range backends(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			s := open(t)
			db := sqlOf(s).db
			version := func() int64 {
				t.Helper()
				v, err := s.UsersVersion(ctx)
				if err != nil {
					t.Fatal(err)
				}
				return v
			}
			must := func(err error) {
				t.Helper()
				if err != nil {
					t.Fatal(err)
				}
			}
			steps := []struct {
				name    string
				do      func() error
				changes bool
			}{
				{"AddUser", func() error { return s.AddUser(ctx, user("alice", "example.test")) }, true},
				{"AddUser of a user already there", func() error { _ = s.AddUser(ctx, user("alice", "example.test")); return nil }, false},
				{"SetUserHashes", func() error { return s.SetUserHashes(ctx, "alice", "example.test", "m2", "s2") }, true},
				{"SetUserHashes of nobody", func() error { _ = s.SetUserHashes(ctx, "nobody", "example.test", "m", "s"); return nil }, false},
				{"PutUsers of new users", func() error {
					return s.PutUsers(ctx, []User{user("bob", "example.test"), user("carol", "example.test")})
				}, true},
				{"PutUsers replacing a user", func() error {
					u := user("bob", "example.test")
					u.HA1MD5 = "m3"
					return s.PutUsers(ctx, []User{u})
				}, true},
				{"DeleteUser", func() error { return s.DeleteUser(ctx, "carol", "example.test") }, true},
				{"DeleteUser of nobody", func() error { _ = s.DeleteUser(ctx, "carol", "example.test"); return nil }, false},
				{"reads", func() error {
					if _, err := s.User(ctx, "alice", "example.test"); err != nil {
						return err
					}
					_, err := s.ListUsers(ctx, "")
					return err
				}, false},
				{"bindings and CDRs", func() error {
					now := time.Now()
					b := Binding{AOR: "alice@example.test", ID: "1", Contact: "<sip:alice@192.0.2.1>", Q: 1000,
						Expires: now.Add(time.Hour), CallID: "c", CSeq: 1, Updated: now}
					if err := s.WriteBindings(ctx, []Binding{b}, nil); err != nil {
						return err
					}
					if _, err := s.Bindings(ctx, "", now); err != nil {
						return err
					}
					if err := s.WriteBindings(ctx, nil, []BindingKey{{AOR: b.AOR, ID: b.ID}}); err != nil {
						return err
					}
					return s.WriteCDRs(ctx, []CDR{{ID: "cdr1", Kind: "call", Status: "answered", CallID: "c", Start: now, End: now}})
				}, false},
				{"UPDATE in SQL", func() error {
					_, err := db.ExecContext(ctx, `UPDATE hlas_users SET ha1_md5 = 'm4' WHERE username = 'alice'`)
					return err
				}, true},
				{"a transaction rolled back", func() error {
					tx, err := db.BeginTx(ctx, nil)
					if err != nil {
						return err
					}
					if _, err := tx.ExecContext(ctx, `DELETE FROM hlas_users WHERE username = 'alice'`); err != nil {
						return err
					}
					return tx.Rollback()
				}, false},
				{"a change after a savepoint rolled back", func() error {
					// The change rolled back to the savepoint takes its
					// raise of the version with it; the change after it
					// must raise the version again.
					tx, err := db.BeginTx(ctx, nil)
					if err != nil {
						return err
					}
					defer tx.Rollback()
					for _, q := range []string{
						`SAVEPOINT a`,
						`UPDATE hlas_users SET ha1_md5 = 'm5' WHERE username = 'alice'`,
						`ROLLBACK TO SAVEPOINT a`,
						`UPDATE hlas_users SET ha1_md5 = 'm6' WHERE username = 'bob'`,
					} {
						if _, err := tx.ExecContext(ctx, q); err != nil {
							return err
						}
					}
					return tx.Commit()
				}, true},
				{"DELETE of every row in SQL", func() error {
					_, err := db.ExecContext(ctx, `DELETE FROM hlas_users`)
					return err
				}, true},
			}
			if name == "postgres" {
				steps = append(steps, []struct {
					name    string
					do      func() error
					changes bool
				}{
					{"AddUser again", func() error { return s.AddUser(ctx, user("alice", "example.test")) }, true},
					{"TRUNCATE", func() error {
						_, err := db.ExecContext(ctx, `TRUNCATE hlas_users`)
						return err
					}, true},
				}...)
			}
			last := version()
			for _, step := range steps {
				must(step.do())
				v := version()
				switch {
				case step.changes && v <= last:
					t.Errorf("%s: version %d → %d, want it raised", step.name, last, v)
				case !step.changes && v != last:
					t.Errorf("%s: version %d → %d, want it unchanged", step.name, last, v)
				}
				last = v
			}
		})
	}
}

// TestUsersVersionSharedFile checks that a subscriber changed by another
// handle on the same SQLite file (`hlas user passwd` while the server
// runs) changes the version the server sees, that opening the database
// again does not reset it, and that a database made before the version
// existed gets it.
func TestUsersVersionSharedFile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, SQLiteFile)

	// A database as an older hlas left it: subscribers, no version.
	old, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{schema[0], `INSERT INTO hlas_users VALUES ('alice', 'example.test', 'm', 's', 0, 0)`} {
		if _, err := old.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	old.Close()

	server, err := Open(ctx, Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	v0, err := server.UsersVersion(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := Open(ctx, Config{URL: "sqlite:" + path})
	if err != nil {
		t.Fatal(err)
	}
	if v, err := cli.UsersVersion(ctx); err != nil || v != v0 {
		t.Fatalf("a second handle reads version %d, %v; want %d (opening must not reset it)", v, err, v0)
	}
	if err := cli.SetUserHashes(ctx, "alice", "example.test", "m2", "s2"); err != nil {
		t.Fatal(err)
	}
	cli.Close()
	if v, err := server.UsersVersion(ctx); err != nil || v <= v0 {
		t.Fatalf("after another handle's SetUserHashes the server reads version %d, %v; want above %d", v, err, v0)
	}
}

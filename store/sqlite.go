package store

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"path/filepath"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// sqliteBusyTimeout is how long a statement waits for another process's
// write lock (for example `hlas user add` while the server runs) before it
// fails with SQLITE_BUSY, in milliseconds.
const sqliteBusyTimeout = 5000

// local returns the context for the statements of a hot write. SQLite
// runs in the process and its waits for a lock end after
// sqliteBusyTimeout, so there a statement needs no cancellation; and the
// driver watches a cancellable context with a goroutine per statement,
// which a presence server committing a thousand PUBLISHes a second pays
// for three times per batch. A context already done still fails at once.
// Other databases are across a network: their statements keep ctx.
func (s *sqlStore) local(ctx context.Context) (context.Context, error) {
	if s.name != "sqlite" {
		return ctx, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return context.WithoutCancel(ctx), nil
}

// OpenSQLite opens or creates the SQLite database at path: WAL journal so
// readers never block the writer and other processes can use the file at
// the same time, synchronous=NORMAL (a commit survives a crash of the
// process; only a power loss can take the last ones), a busy timeout for
// concurrent writers, and BEGIN IMMEDIATE for write transactions so two
// writers queue instead of deadlocking.
//
// Binding changes are committed to a journal beside the file and moved into
// the database in batches (see journal.go).
func OpenSQLite(ctx context.Context, path string) (Store, error) {
	s, err := openSQLiteDB(ctx, path)
	if err != nil {
		return nil, err
	}
	j, err := openJournal(ctx, s, path, 0, 0)
	if err != nil {
		s.Close()
		return nil, err
	}
	return j, nil
}

// openSQLiteDB is OpenSQLite without the bindings journal.
func openSQLiteDB(ctx context.Context, path string) (*sqlStore, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("store sqlite: %w", err)
	}
	// The file holds password hashes: readable by its owner only. SQLite
	// gives the -wal and -shm files the database file's mode.
	if f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o600); err == nil {
		f.Close()
	}
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", sqliteBusyTimeout))
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("store sqlite %s: %w", path, err)
	}
	db.SetMaxOpenConns(8)
	db.SetMaxIdleConns(8)
	db.SetConnMaxIdleTime(0)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("store sqlite %s: %w", path, err)
	}
	s, err := newSQLStore(ctx, db, "sqlite", sameQuery)
	if err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

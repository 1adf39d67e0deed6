package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// ErrConflict is the answer of a compare-and-set write whose condition
// no longer holds: the document changed (or appeared) since it was read.
var ErrConflict = errors.New("store: changed meanwhile")

// XCAPDocument is one document of the XCAP server (RFC 4825): a user's
// buddy lists, list services. ETag changes with every write.
type XCAPDocument struct {
	// AUID is the application usage ("resource-lists", "rls-services"),
	// Owner the user ("alice@example.com"), Name the document's path
	// below the user's directory ("index").
	AUID, Owner, Name string
	ETag              string
	Body              []byte
	Updated           time.Time
}

// XCAPDocuments is the table of XCAP documents. Writes are
// compare-and-set on the entity tag, so that two clients editing one
// buddy list never lose each other's change.
type XCAPDocuments interface {
	// XCAPDocument returns one document; ErrNotFound.
	XCAPDocument(ctx context.Context, auid, owner, name string) (XCAPDocument, error)
	// PutXCAPDocument stores d.Body when the document's ETag is ifETag
	// ("": it must not exist yet) and returns the new ETag; ErrConflict
	// otherwise.
	PutXCAPDocument(ctx context.Context, d XCAPDocument, ifETag string) (string, error)
	// DeleteXCAPDocument removes a document whose ETag is ifETag;
	// ErrNotFound, ErrConflict.
	DeleteXCAPDocument(ctx context.Context, auid, owner, name, ifETag string) error
	// XCAPDocuments returns the documents of auid, only owner's unless
	// owner is "".
	XCAPDocuments(ctx context.Context, auid, owner string) ([]XCAPDocument, error)
	// XCAPVersion changes with every write, in its transaction: a server
	// polls it to see what `hlas list` or another server changed.
	XCAPVersion(ctx context.Context) (int64, error)
}

// The body is BYTEA, as in hlas_publications.
var xcapSchema = []string{
	`CREATE TABLE IF NOT EXISTS hlas_xcap (
		auid       TEXT NOT NULL,
		owner      TEXT NOT NULL,
		name       TEXT NOT NULL,
		etag       TEXT NOT NULL,
		body       BYTEA NOT NULL,
		updated_ms BIGINT NOT NULL,
		PRIMARY KEY (auid, owner, name)
	)`,
	`CREATE TABLE IF NOT EXISTS hlas_xcap_version (
		id      INTEGER PRIMARY KEY CHECK (id = 1),
		version BIGINT NOT NULL
	)`,
}

const qRaiseXCAP = `UPDATE hlas_xcap_version SET version = version + 1 WHERE id = 1`

func (s *sqlStore) createXCAP(ctx context.Context) error {
	for _, stmt := range xcapSchema {
		if _, err := s.db.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("store %s: create schema: %w", s.name, err)
		}
	}
	if _, err := s.db.ExecContext(ctx, s.rebind(`INSERT INTO hlas_xcap_version (id, version) VALUES (1, ?) ON CONFLICT (id) DO NOTHING`), time.Now().UnixNano()); err != nil {
		return fmt.Errorf("store %s: create schema: %w", s.name, err)
	}
	return nil
}

func newETag() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// XCAPDocument implements XCAPDocuments.
func (s *sqlStore) XCAPDocument(ctx context.Context, auid, owner, name string) (XCAPDocument, error) {
	d := XCAPDocument{AUID: auid, Owner: owner, Name: name}
	var ms int64
	err := s.db.QueryRowContext(ctx, s.rebind(`SELECT etag, body, updated_ms FROM hlas_xcap WHERE auid = ? AND owner = ? AND name = ?`),
		auid, owner, name).Scan(&d.ETag, &d.Body, &ms)
	if errors.Is(err, sql.ErrNoRows) {
		return d, ErrNotFound
	}
	d.Updated = time.UnixMilli(ms)
	return d, s.wrap("xcap document", err)
}

// PutXCAPDocument implements XCAPDocuments. The condition is checked by
// the write itself (an UPDATE naming the old tag, an INSERT that a
// primary key refuses), so two servers on one PostgreSQL cannot both win.
func (s *sqlStore) PutXCAPDocument(ctx context.Context, d XCAPDocument, ifETag string) (string, error) {
	if d.AUID == "" || d.Owner == "" || d.Name == "" {
		return "", errors.New("store: put xcap document: want an auid, an owner and a name")
	}
	if d.Updated.IsZero() {
		d.Updated = time.Now()
	}
	etag := newETag()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return "", s.wrap("put xcap document", err)
	}
	defer tx.Rollback()
	if ifETag == "" {
		r, err := tx.ExecContext(ctx, s.rebind(`INSERT INTO hlas_xcap (auid, owner, name, etag, body, updated_ms) VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (auid, owner, name) DO NOTHING`), d.AUID, d.Owner, d.Name, etag, d.Body, d.Updated.UnixMilli())
		if err != nil {
			return "", s.wrap("put xcap document", err)
		}
		if n, err := r.RowsAffected(); err != nil {
			return "", s.wrap("put xcap document", err)
		} else if n == 0 {
			return "", ErrConflict
		}
	} else {
		r, err := tx.ExecContext(ctx, s.rebind(`UPDATE hlas_xcap SET etag = ?, body = ?, updated_ms = ? WHERE auid = ? AND owner = ? AND name = ? AND etag = ?`),
			etag, d.Body, d.Updated.UnixMilli(), d.AUID, d.Owner, d.Name, ifETag)
		if err != nil {
			return "", s.wrap("put xcap document", err)
		}
		if n, err := r.RowsAffected(); err != nil {
			return "", s.wrap("put xcap document", err)
		} else if n == 0 {
			return "", ErrConflict
		}
	}
	if _, err := tx.ExecContext(ctx, qRaiseXCAP); err != nil {
		return "", s.wrap("put xcap document", err)
	}
	if err := tx.Commit(); err != nil {
		return "", s.wrap("put xcap document", err)
	}
	return etag, nil
}

// DeleteXCAPDocument implements XCAPDocuments.
func (s *sqlStore) DeleteXCAPDocument(ctx context.Context, auid, owner, name, ifETag string) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return s.wrap("delete xcap document", err)
	}
	defer tx.Rollback()
	r, err := tx.ExecContext(ctx, s.rebind(`DELETE FROM hlas_xcap WHERE auid = ? AND owner = ? AND name = ? AND etag = ?`), auid, owner, name, ifETag)
	if err != nil {
		return s.wrap("delete xcap document", err)
	}
	if n, err := r.RowsAffected(); err != nil {
		return s.wrap("delete xcap document", err)
	} else if n == 0 {
		var one int
		err := tx.QueryRowContext(ctx, s.rebind(`SELECT 1 FROM hlas_xcap WHERE auid = ? AND owner = ? AND name = ?`), auid, owner, name).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return s.wrap("delete xcap document", err)
		}
		return ErrConflict
	}
	if _, err := tx.ExecContext(ctx, qRaiseXCAP); err != nil {
		return s.wrap("delete xcap document", err)
	}
	return s.wrap("delete xcap document", tx.Commit())
}

// XCAPDocuments implements XCAPDocuments.
func (s *sqlStore) XCAPDocuments(ctx context.Context, auid, owner string) ([]XCAPDocument, error) {
	q, args := `SELECT owner, name, etag, body, updated_ms FROM hlas_xcap WHERE auid = ? ORDER BY owner, name`, []any{auid}
	if owner != "" {
		q, args = `SELECT owner, name, etag, body, updated_ms FROM hlas_xcap WHERE auid = ? AND owner = ? ORDER BY name`, []any{auid, owner}
	}
	rows, err := s.db.QueryContext(ctx, s.rebind(q), args...)
	if err != nil {
		return nil, s.wrap("xcap documents", err)
	}
	defer rows.Close()
	var out []XCAPDocument
	for rows.Next() {
		d := XCAPDocument{AUID: auid}
		var ms int64
		if err := rows.Scan(&d.Owner, &d.Name, &d.ETag, &d.Body, &ms); err != nil {
			return nil, s.wrap("xcap documents", err)
		}
		d.Updated = time.UnixMilli(ms)
		out = append(out, d)
	}
	return out, s.wrap("xcap documents", rows.Err())
}

// XCAPVersion implements XCAPDocuments.
func (s *sqlStore) XCAPVersion(ctx context.Context) (int64, error) {
	var v int64
	err := s.db.QueryRowContext(ctx, `SELECT version FROM hlas_xcap_version WHERE id = 1`).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, s.wrap("xcap version", errors.New("the row of hlas_xcap_version is missing"))
	}
	return v, s.wrap("xcap version", err)
}

package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Publication is one piece of published event state (RFC 3903): what one
// event publication agent (a device) published for a resource, under the
// entity-tag the server last gave it. The event state compositor
// (package event/publish) keeps the live copy in memory and writes every
// change here before it answers, so a restart loses no published state.
type Publication struct {
	// Event is the event package, "presence" or "dialog".
	Event string
	// Resource is the address-of-record published for, "user@domain".
	Resource string
	// ETag is the entity-tag of the current version (RFC 3903 §3): it
	// changes with every successful PUBLISH.
	ETag string
	// ID names the publication for its whole life, across the ETags of
	// its refreshes and modifications: composers use it to tell the
	// devices of one resource apart.
	ID string
	// ContentType is the media type of Body, without parameters.
	ContentType string
	// Body is the published document; callers must not change it.
	Body []byte
	// Created is when the initial publication was made, Updated when the
	// last successful PUBLISH was, and Expires when the state lapses.
	// All three are kept to the millisecond.
	Created, Updated, Expires time.Time
}

// Publications is the table of published event state. Every method that
// changes a publication does so in one statement, so each is atomic on
// its own (RFC 3903 §6: "the processing of the PUBLISH request MUST be
// atomic").
type Publications interface {
	// PutPublication stores p. With replaces "" it is a new publication
	// (ErrExists if its ETag is taken); otherwise it replaces the row of
	// p.Event and p.Resource whose ETag is replaces, and fails with
	// ErrNotFound if there is none — another writer replaced or removed
	// it first, or it lapsed and was purged.
	PutPublication(ctx context.Context, p Publication, replaces string) error
	// DeletePublication removes one publication; ErrNotFound if there is
	// none with that ETag.
	DeletePublication(ctx context.Context, event, resource, etag string) error
	// Publications returns the publications that have not lapsed at now,
	// ordered by event, resource, then Created and ID (oldest first).
	Publications(ctx context.Context, now time.Time) ([]Publication, error)
	// PurgePublications removes the publications that lapsed at or before
	// now and reports how many.
	PurgePublications(ctx context.Context, now time.Time) (int64, error)
}

// The body is BYTEA: PostgreSQL stores it as bytes and SQLite, for which
// the name carries no meaning, keeps a bound []byte as a BLOB unchanged.
// TEXT would refuse a NUL byte or invalid UTF-8 on PostgreSQL.
var publicationsSchema = []string{
	`CREATE TABLE IF NOT EXISTS hlas_publications (
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
	`CREATE INDEX IF NOT EXISTS hlas_publications_expires ON hlas_publications (expires_ms)`,
}

const (
	publicationCols = `event, resource, etag, id, content_type, body, created_ms, updated_ms, expires_ms`
	qAddPublication = `INSERT INTO hlas_publications (` + publicationCols + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (event, resource, etag) DO NOTHING`
	// One UPDATE both checks the precondition (the old ETag is still
	// there) and writes the new version, so two writers racing with the
	// same SIP-If-Match cannot both succeed.
	qReplacePublication = `UPDATE hlas_publications SET etag = ?, id = ?, content_type = ?, body = ?,
		created_ms = ?, updated_ms = ?, expires_ms = ? WHERE event = ? AND resource = ? AND etag = ?`
	qDeletePublication = `DELETE FROM hlas_publications WHERE event = ? AND resource = ? AND etag = ?`
	qPublications      = `SELECT ` + publicationCols + ` FROM hlas_publications WHERE expires_ms > ?
		ORDER BY event, resource, created_ms, id`
	qPurgePublications = `DELETE FROM hlas_publications WHERE expires_ms <= ?`
)

// createPublications creates the publications table; newSQLStore calls it.
func (s *sqlStore) createPublications(ctx context.Context) error {
	for _, stmt := range publicationsSchema {
		if _, err := s.db.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("store %s: create schema: %w", s.name, err)
		}
	}
	return nil
}

func checkPublication(p Publication) error {
	if p.Event == "" || p.Resource == "" || p.ETag == "" || p.ID == "" {
		return errors.New("store: put publication: want an event, a resource, an ETag and an ID")
	}
	return nil
}

// PutPublication implements Publications.
func (s *sqlStore) PutPublication(ctx context.Context, p Publication, replaces string) error {
	if err := checkPublication(p); err != nil {
		return err
	}
	body := p.Body
	if body == nil {
		body = []byte{} // NOT NULL
	}
	op := &pubOp{what: "put publication " + p.Event + " " + p.Resource}
	if replaces == "" {
		op.q = qAddPublication
		op.args = []any{p.Event, p.Resource, p.ETag, p.ID, p.ContentType, body,
			p.Created.UnixMilli(), p.Updated.UnixMilli(), p.Expires.UnixMilli()}
		op.none = fmt.Errorf("%w: publication %s %s %s", ErrExists, p.Event, p.Resource, p.ETag)
	} else {
		op.q = qReplacePublication
		op.args = []any{p.ETag, p.ID, p.ContentType, body, p.Created.UnixMilli(), p.Updated.UnixMilli(),
			p.Expires.UnixMilli(), p.Event, p.Resource, replaces}
		op.none = fmt.Errorf("%w: publication %s %s %s", ErrNotFound, p.Event, p.Resource, replaces)
	}
	return s.writePublication(ctx, op)
}

// DeletePublication implements Publications.
func (s *sqlStore) DeletePublication(ctx context.Context, event, resource, etag string) error {
	return s.writePublication(ctx, &pubOp{what: "delete publication " + event + " " + resource,
		q: qDeletePublication, args: []any{event, resource, etag},
		none: fmt.Errorf("%w: publication %s %s %s", ErrNotFound, event, resource, etag)})
}

// pubOp is one publication write: a statement that must touch one row,
// and the error when it touches none.
type pubOp struct {
	what string
	q    string
	args []any
	none error
	done chan pubResult // capacity 1
}

type pubResult struct {
	err  error
	lead bool // not a result: the caller now writes the queue
}

// pubWriter commits the publication writes of concurrent requests
// together (group commit): a PUBLISH's 200 still waits for its own row
// to be committed, but a storm of them costs one transaction per batch,
// not one each. There is no goroutine of its own: the first writer to
// find no one writing writes everything queued (its own row among it),
// then hands the queue to the next waiter, so nobody writes for others
// for long.
type pubWriter struct {
	mu      sync.Mutex
	pending []*pubOp
	leading bool
}

// maxPubBatch bounds the rows of one transaction.
const maxPubBatch = 128

func (s *sqlStore) writePublication(ctx context.Context, op *pubOp) error {
	op.done = make(chan pubResult, 1)
	w := &s.pubw
	w.mu.Lock()
	w.pending = append(w.pending, op)
	if w.leading {
		w.mu.Unlock()
		if r := <-op.done; !r.lead {
			return r.err
		}
		w.mu.Lock()
	}
	w.leading = true
	for {
		n := min(len(w.pending), maxPubBatch)
		batch := w.pending[:n:n]
		w.pending = w.pending[n:]
		w.mu.Unlock()
		s.writePubBatch(ctx, batch)
		w.mu.Lock()
		if !slices.Contains(batch, op) && len(w.pending) > 0 {
			continue // ours is still queued
		}
		if len(w.pending) == 0 {
			w.pending = nil
			w.leading = false
		} else {
			w.pending[0].done <- pubResult{lead: true}
		}
		w.mu.Unlock()
		return (<-op.done).err
	}
}

// writePubBatch writes ops, in one transaction when there are several,
// and gives each its result.
func (s *sqlStore) writePubBatch(ctx context.Context, ops []*pubOp) {
	if len(ops) == 1 {
		ops[0].done <- pubResult{err: s.execPub(ctx, nil, ops[0])}
		return
	}
	fail := func(err error) {
		for _, op := range ops {
			op.done <- pubResult{err: s.wrap(op.what, err)}
		}
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		fail(err)
		return
	}
	errs := make([]error, len(ops))
	for i, op := range ops {
		errs[i] = s.execPub(ctx, tx, op)
		if errs[i] != nil && !errors.Is(errs[i], ErrExists) && !errors.Is(errs[i], ErrNotFound) {
			// The transaction may be aborted (PostgreSQL): all fail.
			tx.Rollback()
			fail(errs[i])
			return
		}
	}
	if err := tx.Commit(); err != nil {
		fail(err)
		return
	}
	for i, op := range ops {
		op.done <- pubResult{err: errs[i]}
	}
}

// execPub runs op's prepared statement, in tx when there is one.
func (s *sqlStore) execPub(ctx context.Context, tx *sql.Tx, op *pubOp) error {
	st := s.pubStmts[op.q]
	if tx != nil {
		st = tx.StmtContext(ctx, st)
	}
	res, err := st.ExecContext(ctx, op.args...)
	if err != nil {
		return s.wrap(op.what, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return s.wrap(op.what, err)
	}
	if n == 0 {
		return op.none
	}
	return nil
}

// Publications implements Publications.
func (s *sqlStore) Publications(ctx context.Context, now time.Time) ([]Publication, error) {
	rows, err := s.db.QueryContext(ctx, s.rebind(qPublications), now.UnixMilli())
	if err != nil {
		return nil, s.wrap("publications", err)
	}
	defer rows.Close()
	var out []Publication
	for rows.Next() {
		var p Publication
		var created, updated, expires int64
		if err := rows.Scan(&p.Event, &p.Resource, &p.ETag, &p.ID, &p.ContentType, &p.Body,
			&created, &updated, &expires); err != nil {
			return nil, s.wrap("publications", err)
		}
		p.Created, p.Updated, p.Expires = time.UnixMilli(created), time.UnixMilli(updated), time.UnixMilli(expires)
		out = append(out, p)
	}
	return out, s.wrap("publications", rows.Err())
}

// PurgePublications implements Publications.
func (s *sqlStore) PurgePublications(ctx context.Context, now time.Time) (int64, error) {
	res, err := s.db.ExecContext(ctx, s.rebind(qPurgePublications), now.UnixMilli())
	if err != nil {
		return 0, s.wrap("purge publications", err)
	}
	n, err := res.RowsAffected()
	return n, s.wrap("purge publications", err)
}

package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
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
	// devices of one resource apart, and the table is keyed by it.
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

// PublicationWrite is one change in a WritePublications batch.
type PublicationWrite struct {
	// P is the publication to store or, with Delete, the one to remove
	// (named by its Event, Resource and ETag).
	P Publication
	// Replaces is as for PutPublication: "" for a new publication, else
	// the ETag of the version P replaces.
	Replaces string
	// Delete removes P instead of storing it.
	Delete bool
	// Err is the outcome of this write once the batch committed: nil,
	// ErrExists or ErrNotFound, as PutPublication or DeletePublication
	// would return it.
	Err error
}

// Publications is the table of published event state. Every change of a
// publication is one statement, so each is atomic on its own (RFC 3903
// §6: "the processing of the PUBLISH request MUST be atomic").
type Publications interface {
	// PutPublication stores p. With replaces "" it is a new publication
	// (ErrExists if its ID is taken for its event and resource);
	// otherwise it replaces the row of p.Event, p.Resource and p.ID whose
	// ETag is replaces — the ID stays — and fails with ErrNotFound if
	// there is none: another writer replaced or removed it first, or it
	// lapsed and was purged.
	PutPublication(ctx context.Context, p Publication, replaces string) error
	// DeletePublication removes one publication; ErrNotFound if there is
	// none with that ETag.
	DeletePublication(ctx context.Context, event, resource, etag string) error
	// WritePublications makes the writes of ws in one transaction (group
	// commit: one commit for the PUBLISHes of many clients) and sets each
	// one's Err. A write that finds its precondition unmet (ErrExists,
	// ErrNotFound) fails alone; any other failure fails the transaction,
	// changes nothing and is returned.
	WritePublications(ctx context.Context, ws []PublicationWrite) error
	// Publications returns the publications that have not lapsed at now,
	// ordered by event, resource, then Created and ID (oldest first).
	Publications(ctx context.Context, now time.Time) ([]Publication, error)
	// PurgePublications removes the publications that lapsed at or before
	// now and reports how many.
	PurgePublications(ctx context.Context, now time.Time) (int64, error)
}

// The table is keyed by the publication's ID, which does not change
// while the publication lives: a refresh or modification rewrites its row
// in place. (The first layout had the ETag in its key, so every PUBLISH
// moved the row in the key's index, and an index on expires_ms moved it
// again; migratePublications converts such a table.) Nothing is indexed
// on expiry: only the loading and purging at start read by it, once.
//
// The body is BYTEA: PostgreSQL stores it as bytes and SQLite, for which
// the name carries no meaning, keeps a bound []byte as a BLOB unchanged.
// TEXT would refuse a NUL byte or invalid UTF-8 on PostgreSQL. It is the
// last column, so that reading the others never steps over it. The key
// constraint is named, so that it cannot collide with the key of a table
// being migrated (PostgreSQL names both hlas_publications_pkey).
const publicationsTable = `CREATE TABLE IF NOT EXISTS hlas_publications (
		event        TEXT NOT NULL,
		resource     TEXT NOT NULL,
		id           TEXT NOT NULL,
		etag         TEXT NOT NULL,
		content_type TEXT NOT NULL,
		created_ms   BIGINT NOT NULL,
		updated_ms   BIGINT NOT NULL,
		expires_ms   BIGINT NOT NULL,
		body         BYTEA NOT NULL,
		CONSTRAINT hlas_publications_id PRIMARY KEY (event, resource, id)
	)`

const (
	publicationCols = `event, resource, id, etag, content_type, created_ms, updated_ms, expires_ms, body`
	qAddPublication = `INSERT INTO hlas_publications (` + publicationCols + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (event, resource, id) DO NOTHING`
	// One UPDATE both checks the precondition (the old ETag is still
	// there) and writes the new version, so two writers racing with the
	// same SIP-If-Match cannot both succeed. It leaves the key alone.
	qReplacePublication = `UPDATE hlas_publications SET etag = ?, content_type = ?, body = ?,
		created_ms = ?, updated_ms = ?, expires_ms = ? WHERE event = ? AND resource = ? AND id = ? AND etag = ?`
	// By ETag: the key's first two columns find the resource's few rows.
	qDeletePublication = `DELETE FROM hlas_publications WHERE event = ? AND resource = ? AND etag = ?`
	qPublications      = `SELECT ` + publicationCols + ` FROM hlas_publications WHERE expires_ms > ?
		ORDER BY event, resource, created_ms, id`
	qPurgePublications = `DELETE FROM hlas_publications WHERE expires_ms <= ?`
)

// pubConn is the connection publication writes go through, held for the
// store's life with every statement of a write prepared on it, BEGIN and
// COMMIT included. Why: a PUBLISH's 200 waits for its commit, and on the
// embedded database a database/sql transaction (BeginTx, Tx.Stmt, Commit,
// BEGIN parsed each time) costs about 48 µs of CPU beside 19 µs a row
// written in it, against 28 µs for a row committed alone, so group commit
// would pay only from five rows a batch on; with prepared BEGIN and
// COMMIT a row costs 25 µs in batches of two, 22 in fours, 19 in eights
// (BenchmarkPublicationWrites). Writes take turns on it, which costs no
// concurrency: the database takes one writer at a time.
type pubConn struct {
	mu    sync.Mutex
	conn  *sql.Conn // nil after a failure, until the next write connects
	stmts [numPubStmts]*sql.Stmt
}

// The statements of pubConn.
const (
	stAdd = iota
	stReplace
	stDelete
	stBegin
	stCommit
	numPubStmts
)

// connect takes a connection from s's pool and prepares the statements
// on it. The caller holds mu, or is newSQLStore.
func (c *pubConn) connect(ctx context.Context, s *sqlStore) error {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return s.wrap("publications: connect", err)
	}
	begin := "BEGIN IMMEDIATE" // SQLite: take the write lock now
	if s.name == "postgres" {
		begin = "BEGIN"
	}
	for i, q := range [numPubStmts]string{stAdd: qAddPublication, stReplace: qReplacePublication,
		stDelete: qDeletePublication, stBegin: begin, stCommit: "COMMIT"} {
		if c.stmts[i], err = conn.PrepareContext(ctx, s.rebind(q)); err != nil {
			c.conn = conn
			c.drop()
			return fmt.Errorf("store %s: prepare: %w", s.name, err)
		}
	}
	c.conn = conn
	return nil
}

// drop gives up the connection after a failure: it is closed rather
// than returned to the pool, which also ends any transaction left open on
// it. The caller holds mu.
func (c *pubConn) drop() {
	for i, st := range c.stmts {
		if st != nil {
			st.Close()
			c.stmts[i] = nil
		}
	}
	if c.conn != nil {
		_ = c.conn.Raw(func(any) error { return driver.ErrBadConn })
		c.conn.Close()
		c.conn = nil
	}
}

// close releases the connection, for Close.
func (c *pubConn) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, st := range c.stmts {
		if st != nil {
			st.Close()
			c.stmts[i] = nil
		}
	}
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

// createPublications creates the publications table, converting one of
// the old layout first; newSQLStore calls it.
func (s *sqlStore) createPublications(ctx context.Context) error {
	if err := s.migratePublications(ctx); err != nil {
		return err
	}
	if _, err := s.db.ExecContext(ctx, publicationsTable); err != nil {
		return fmt.Errorf("store %s: create schema: %w", s.name, err)
	}
	return nil
}

// oldPublicationsKey reports whether hlas_publications is of the old
// layout, with the ETag in its primary key; false when there is no such
// table. q is the database or the migrating transaction.
func (s *sqlStore) oldPublicationsKey(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}) (bool, error) {
	// Each back end's catalogue, within the search_path on PostgreSQL as
	// every other query.
	query := `SELECT count(*) FROM pragma_table_info('hlas_publications') WHERE name = 'etag' AND pk > 0`
	if s.name == "postgres" {
		query = `SELECT count(*) FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
			WHERE i.indrelid = to_regclass('hlas_publications') AND i.indisprimary AND a.attname = 'etag'`
	}
	var n int
	if err := q.QueryRowContext(ctx, query).Scan(&n); err != nil {
		return false, fmt.Errorf("store %s: publications layout: %w", s.name, err)
	}
	return n > 0, nil
}

// migratePublications converts a publications table keyed by ETag into
// the current layout, keeping its rows, in one transaction. Another
// process may be converting it at the same time: a failure is an error
// only when the old layout is still there afterwards.
func (s *sqlStore) migratePublications(ctx context.Context) error {
	old, err := s.oldPublicationsKey(ctx, s.db)
	if err != nil || !old {
		return err
	}
	err = s.migratePublicationsTx(ctx)
	if err == nil {
		return nil
	}
	if still, cerr := s.oldPublicationsKey(ctx, s.db); cerr == nil && !still {
		return nil
	}
	return fmt.Errorf("store %s: convert hlas_publications: %w", s.name, err)
}

func (s *sqlStore) migratePublicationsTx(ctx context.Context) (err error) {
	tx, err := s.db.BeginTx(ctx, nil) // BEGIN IMMEDIATE on SQLite: the write lock
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	if s.name == "postgres" {
		if _, err := tx.ExecContext(ctx, `LOCK TABLE hlas_publications IN ACCESS EXCLUSIVE MODE`); err != nil {
			return err
		}
	}
	// Looked at again under the lock: another process may have done it.
	if old, err := s.oldPublicationsKey(ctx, tx); err != nil || !old {
		if err == nil {
			err = tx.Rollback()
		}
		return err
	}
	// The old table had one row per ETag and a publication has one ETag,
	// so IDs do not repeat within a resource; should they, the row
	// updated last is kept. (WHERE true: SQLite needs a WHERE before the
	// ON CONFLICT of an INSERT ... SELECT.)
	for _, stmt := range []string{
		`ALTER TABLE hlas_publications RENAME TO hlas_publications_old`,
		publicationsTable,
		`INSERT INTO hlas_publications (` + publicationCols + `) SELECT ` + publicationCols +
			` FROM hlas_publications_old WHERE true ORDER BY updated_ms DESC ON CONFLICT (event, resource, id) DO NOTHING`,
		`DROP TABLE hlas_publications_old`, // and its index on expires_ms
	} {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return err
		}
	}
	return tx.Commit()
}

func checkPublication(p Publication) error {
	if p.Event == "" || p.Resource == "" || p.ETag == "" || p.ID == "" {
		return errors.New("store: put publication: want an event, a resource, an ETag and an ID")
	}
	return nil
}

// PutPublication implements Publications.
func (s *sqlStore) PutPublication(ctx context.Context, p Publication, replaces string) error {
	return putPublication(ctx, s.WritePublications, p, replaces)
}

// DeletePublication implements Publications.
func (s *sqlStore) DeletePublication(ctx context.Context, event, resource, etag string) error {
	return deletePublication(ctx, s.WritePublications, event, resource, etag)
}

// putPublication is PutPublication as a batch of one through write (a
// back end's WritePublications).
func putPublication(ctx context.Context, write func(context.Context, []PublicationWrite) error, p Publication, replaces string) error {
	ws := [1]PublicationWrite{{P: p, Replaces: replaces}}
	if err := write(ctx, ws[:]); err != nil {
		return err
	}
	return ws[0].Err
}

// deletePublication is DeletePublication as a batch of one through write.
func deletePublication(ctx context.Context, write func(context.Context, []PublicationWrite) error, event, resource, etag string) error {
	ws := [1]PublicationWrite{{P: Publication{Event: event, Resource: resource, ETag: etag}, Delete: true}}
	if err := write(ctx, ws[:]); err != nil {
		return err
	}
	return ws[0].Err
}

// WritePublications implements Publications. A batch of one is one
// statement in its own implicit transaction.
func (s *sqlStore) WritePublications(ctx context.Context, ws []PublicationWrite) error {
	for i := range ws {
		if !ws[i].Delete {
			if err := checkPublication(ws[i].P); err != nil {
				return err
			}
		}
	}
	if len(ws) == 0 {
		return nil
	}
	c := &s.pubw
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		if err := c.connect(ctx, s); err != nil {
			return err
		}
	}
	ctx, err := s.local(ctx)
	if err != nil {
		return err
	}
	err = s.writePubs(ctx, ws)
	if err != nil {
		// Whatever failed, a fresh connection is in a known state.
		c.drop()
	}
	return err
}

// writePubs writes ws on the publication connection. The caller holds
// its lock.
func (s *sqlStore) writePubs(ctx context.Context, ws []PublicationWrite) error {
	c := &s.pubw
	if len(ws) == 1 {
		return s.execPub(ctx, &ws[0])
	}
	if _, err := c.stmts[stBegin].ExecContext(ctx); err != nil {
		return s.wrap("write publications: begin", err)
	}
	for i := range ws {
		if err := s.execPub(ctx, &ws[i]); err != nil {
			return err // the transaction ends with the connection
		}
	}
	if _, err := c.stmts[stCommit].ExecContext(ctx); err != nil {
		return s.wrap("write publications: commit", err)
	}
	return nil
}

// execPub runs w's prepared statement and sets w.Err when the statement
// touched no row. The caller holds the publication connection's lock.
func (s *sqlStore) execPub(ctx context.Context, w *PublicationWrite) error {
	p := &w.P
	body := p.Body
	if body == nil {
		body = []byte{} // NOT NULL
	}
	var st *sql.Stmt
	var res sql.Result
	var err error
	switch {
	case w.Delete:
		st = s.pubw.stmts[stDelete]
		res, err = st.ExecContext(ctx, p.Event, p.Resource, p.ETag)
	case w.Replaces == "":
		st = s.pubw.stmts[stAdd]
		res, err = st.ExecContext(ctx, p.Event, p.Resource, p.ID, p.ETag, p.ContentType,
			p.Created.UnixMilli(), p.Updated.UnixMilli(), p.Expires.UnixMilli(), body)
	default:
		st = s.pubw.stmts[stReplace]
		res, err = st.ExecContext(ctx, p.ETag, p.ContentType, body, p.Created.UnixMilli(),
			p.Updated.UnixMilli(), p.Expires.UnixMilli(), p.Event, p.Resource, p.ID, w.Replaces)
	}
	if err != nil {
		return s.wrap("write publication "+p.Event+" "+p.Resource, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return s.wrap("write publication "+p.Event+" "+p.Resource, err)
	}
	w.Err = nil
	if n == 0 {
		switch {
		case w.Delete:
			w.Err = fmt.Errorf("%w: publication %s %s %s", ErrNotFound, p.Event, p.Resource, p.ETag)
		case w.Replaces == "":
			w.Err = fmt.Errorf("%w: publication %s %s %s", ErrExists, p.Event, p.Resource, p.ID)
		default:
			w.Err = fmt.Errorf("%w: publication %s %s %s", ErrNotFound, p.Event, p.Resource, w.Replaces)
		}
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
		if err := rows.Scan(&p.Event, &p.Resource, &p.ID, &p.ETag, &p.ContentType,
			&created, &updated, &expires, &p.Body); err != nil {
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

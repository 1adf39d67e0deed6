package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Ban is a source refused at the edge (package security): an address or a
// prefix, why, and until when. The server writes the bans its detectors
// make; `hlas ban add|del` writes the operator's; the server polls
// BansVersion and loads the table when it changed, so both sides see the
// same list.
type Ban struct {
	Prefix  netip.Prefix
	Reason  string
	Created time.Time
	// Expires is when the ban lapses; zero for never.
	Expires time.Time
	// Manual marks a ban an operator added.
	Manual bool
}

// Bans is the ban table.
type Bans interface {
	// PutBans creates or replaces bans (by prefix) in one transaction.
	PutBans(ctx context.Context, bans []Ban) error
	// DeleteBan removes the ban of prefix p; ErrNotFound if there is none.
	DeleteBan(ctx context.Context, p netip.Prefix) error
	// Bans returns the bans that have not lapsed at now, oldest first.
	Bans(ctx context.Context, now time.Time) ([]Ban, error)
	// PurgeBans removes the bans that lapsed at or before now.
	PurgeBans(ctx context.Context, now time.Time) (int64, error)
	// BansVersion returns a number that changes with every PutBans and
	// DeleteBan, whichever process makes them, in the transaction of the
	// change.
	BansVersion(ctx context.Context) (int64, error)
}

var bansSchema = []string{
	`CREATE TABLE IF NOT EXISTS hlas_bans (
		prefix  TEXT NOT NULL PRIMARY KEY,
		reason  TEXT NOT NULL,
		created BIGINT NOT NULL,
		expires BIGINT NOT NULL,
		manual  INTEGER NOT NULL
	)`,
	`CREATE TABLE IF NOT EXISTS hlas_bans_version (
		id      INTEGER PRIMARY KEY CHECK (id = 1),
		version BIGINT NOT NULL
	)`,
}

const (
	// Started at the creation time in nanoseconds, as the users version,
	// so a new database does not repeat numbers a server has seen.
	qBansVersionInit = `INSERT INTO hlas_bans_version (id, version) VALUES (1, ?) ON CONFLICT (id) DO NOTHING`
	qBansVersion     = `SELECT version FROM hlas_bans_version WHERE id = 1`
	qBansRaise       = `UPDATE hlas_bans_version SET version = version + 1 WHERE id = 1`
	qPutBan          = `INSERT INTO hlas_bans (prefix, reason, created, expires, manual) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (prefix) DO UPDATE SET reason = excluded.reason, created = excluded.created,
		expires = excluded.expires, manual = excluded.manual`
	qDeleteBan = `DELETE FROM hlas_bans WHERE prefix = ?`
	qBans      = `SELECT prefix, reason, created, expires, manual FROM hlas_bans WHERE expires = 0 OR expires > ? ORDER BY created, prefix`
	qPurgeBans = `DELETE FROM hlas_bans WHERE expires <> 0 AND expires <= ?`
)

func (s *sqlStore) createBans(ctx context.Context) error {
	for _, stmt := range bansSchema {
		if _, err := s.db.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("store %s: create schema: %w", s.name, err)
		}
	}
	if _, err := s.db.ExecContext(ctx, s.rebind(qBansVersionInit), time.Now().UnixNano()); err != nil {
		return fmt.Errorf("store %s: create schema: %w", s.name, err)
	}
	return nil
}

// unixOrZero stores a zero time as 0 (never).
func unixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

// PutBans implements Bans.
func (s *sqlStore) PutBans(ctx context.Context, bans []Ban) error {
	if len(bans) == 0 {
		return nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return s.wrap("put bans", err)
	}
	defer tx.Rollback()
	stmt, err := tx.PrepareContext(ctx, s.rebind(qPutBan))
	if err != nil {
		return s.wrap("put bans", err)
	}
	defer stmt.Close()
	for _, b := range bans {
		if !b.Prefix.IsValid() {
			return fmt.Errorf("store: put bans: invalid prefix")
		}
		manual := 0
		if b.Manual {
			manual = 1
		}
		if _, err := stmt.ExecContext(ctx, b.Prefix.Masked().String(), b.Reason, unixOrZero(b.Created), unixOrZero(b.Expires), manual); err != nil {
			return s.wrap("put bans", err)
		}
	}
	if _, err := tx.ExecContext(ctx, qBansRaise); err != nil {
		return s.wrap("put bans", err)
	}
	return s.wrap("put bans", tx.Commit())
}

// DeleteBan implements Bans.
func (s *sqlStore) DeleteBan(ctx context.Context, p netip.Prefix) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return s.wrap("delete ban", err)
	}
	defer tx.Rollback()
	r, err := tx.ExecContext(ctx, s.rebind(qDeleteBan), p.Masked().String())
	if err != nil {
		return s.wrap("delete ban", err)
	}
	if n, err := r.RowsAffected(); err != nil {
		return s.wrap("delete ban", err)
	} else if n == 0 {
		return ErrNotFound
	}
	if _, err := tx.ExecContext(ctx, qBansRaise); err != nil {
		return s.wrap("delete ban", err)
	}
	return s.wrap("delete ban", tx.Commit())
}

// Bans implements Bans.
func (s *sqlStore) Bans(ctx context.Context, now time.Time) ([]Ban, error) {
	rows, err := s.db.QueryContext(ctx, s.rebind(qBans), now.Unix())
	if err != nil {
		return nil, s.wrap("bans", err)
	}
	defer rows.Close()
	var out []Ban
	for rows.Next() {
		var (
			prefix, reason   string
			created, expires int64
			manual           int
		)
		if err := rows.Scan(&prefix, &reason, &created, &expires, &manual); err != nil {
			return nil, s.wrap("bans", err)
		}
		p, err := netip.ParsePrefix(prefix)
		if err != nil {
			// A row written by hand that is not a prefix bans nothing;
			// skipping it keeps the others working.
			continue
		}
		b := Ban{Prefix: p, Reason: reason, Created: time.Unix(created, 0), Manual: manual != 0}
		if expires != 0 {
			b.Expires = time.Unix(expires, 0)
		}
		out = append(out, b)
	}
	return out, s.wrap("bans", rows.Err())
}

// PurgeBans implements Bans. Lapsed bans are not in the list a server
// holds, so their removal does not raise the version.
func (s *sqlStore) PurgeBans(ctx context.Context, now time.Time) (int64, error) {
	r, err := s.db.ExecContext(ctx, s.rebind(qPurgeBans), now.Unix())
	if err != nil {
		return 0, s.wrap("purge bans", err)
	}
	n, err := r.RowsAffected()
	return n, s.wrap("purge bans", err)
}

// BansVersion implements Bans.
func (s *sqlStore) BansVersion(ctx context.Context) (int64, error) {
	var v int64
	err := s.db.QueryRowContext(ctx, qBansVersion).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, s.wrap("bans version", errors.New("the row of hlas_bans_version is missing"))
	}
	return v, s.wrap("bans version", err)
}

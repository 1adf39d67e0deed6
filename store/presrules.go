package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// PresenceRule is a presentity's decision about one watcher (RFC 5025's
// sub-handling): allow, block, confirm (pending until decided) or
// polite-block. Watcher is an AOR "user@domain", "*@domain" for a whole
// domain, or "*" for everyone.
type PresenceRule struct {
	Presentity, Watcher string
	Action              string // "allow", "block", "confirm" or "polite-block"
	Updated             time.Time
}

// validAction reports whether a is a sub-handling the server honours.
func validAction(a string) bool {
	return a == "allow" || a == "block" || a == "confirm" || a == "polite-block"
}

// PresenceRules is the table of presence authorization rules, which
// `hlas presence allow|block|del` change while the server runs.
type PresenceRules interface {
	// PutPresenceRule creates or replaces the rule of presentity about
	// watcher.
	PutPresenceRule(ctx context.Context, r PresenceRule) error
	// DeletePresenceRule removes one; ErrNotFound if there is none.
	DeletePresenceRule(ctx context.Context, presentity, watcher string) error
	// PresenceRules returns the rules of presentity, or all of them when
	// presentity is "".
	PresenceRules(ctx context.Context, presentity string) ([]PresenceRule, error)
	// ReplacePresenceRules makes rules the whole rule set of presentity
	// in one transaction (an XCAP PUT of its pres-rules document).
	ReplacePresenceRules(ctx context.Context, presentity string, rules []PresenceRule) error
	// PresenceRulesVersion changes with every put and delete, in their
	// transaction: a server polls it.
	PresenceRulesVersion(ctx context.Context) (int64, error)
}

var presRulesSchema = []string{
	`CREATE TABLE IF NOT EXISTS hlas_presence_rules (
		presentity TEXT NOT NULL,
		watcher    TEXT NOT NULL,
		action     TEXT NOT NULL,
		updated_ms BIGINT NOT NULL,
		PRIMARY KEY (presentity, watcher)
	)`,
	`CREATE TABLE IF NOT EXISTS hlas_presence_rules_version (
		id      INTEGER PRIMARY KEY CHECK (id = 1),
		version BIGINT NOT NULL
	)`,
}

func (s *sqlStore) createPresenceRules(ctx context.Context) error {
	for _, stmt := range presRulesSchema {
		if _, err := s.db.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("store %s: create schema: %w", s.name, err)
		}
	}
	if _, err := s.db.ExecContext(ctx, s.rebind(`INSERT INTO hlas_presence_rules_version (id, version) VALUES (1, ?) ON CONFLICT (id) DO NOTHING`), time.Now().UnixNano()); err != nil {
		return fmt.Errorf("store %s: create schema: %w", s.name, err)
	}
	return nil
}

const qRaisePresRules = `UPDATE hlas_presence_rules_version SET version = version + 1 WHERE id = 1`

// PutPresenceRule implements PresenceRules.
func (s *sqlStore) PutPresenceRule(ctx context.Context, r PresenceRule) error {
	if r.Presentity == "" || r.Watcher == "" || !validAction(r.Action) {
		return errors.New("store: put presence rule: want a presentity, a watcher and allow, block, confirm or polite-block")
	}
	if r.Updated.IsZero() {
		r.Updated = time.Now()
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return s.wrap("put presence rule", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, s.rebind(`INSERT INTO hlas_presence_rules (presentity, watcher, action, updated_ms) VALUES (?, ?, ?, ?)
		ON CONFLICT (presentity, watcher) DO UPDATE SET action = excluded.action, updated_ms = excluded.updated_ms`),
		r.Presentity, r.Watcher, r.Action, r.Updated.UnixMilli()); err != nil {
		return s.wrap("put presence rule", err)
	}
	if _, err := tx.ExecContext(ctx, qRaisePresRules); err != nil {
		return s.wrap("put presence rule", err)
	}
	return s.wrap("put presence rule", tx.Commit())
}

// DeletePresenceRule implements PresenceRules.
func (s *sqlStore) DeletePresenceRule(ctx context.Context, presentity, watcher string) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return s.wrap("delete presence rule", err)
	}
	defer tx.Rollback()
	r, err := tx.ExecContext(ctx, s.rebind(`DELETE FROM hlas_presence_rules WHERE presentity = ? AND watcher = ?`), presentity, watcher)
	if err != nil {
		return s.wrap("delete presence rule", err)
	}
	if n, err := r.RowsAffected(); err != nil {
		return s.wrap("delete presence rule", err)
	} else if n == 0 {
		return ErrNotFound
	}
	if _, err := tx.ExecContext(ctx, qRaisePresRules); err != nil {
		return s.wrap("delete presence rule", err)
	}
	return s.wrap("delete presence rule", tx.Commit())
}

// ReplacePresenceRules implements PresenceRules.
func (s *sqlStore) ReplacePresenceRules(ctx context.Context, presentity string, rules []PresenceRule) error {
	if presentity == "" {
		return errors.New("store: replace presence rules: want a presentity")
	}
	now := time.Now()
	for _, r := range rules {
		if r.Watcher == "" || !validAction(r.Action) {
			return errors.New("store: replace presence rules: want a watcher and allow, block, confirm or polite-block")
		}
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return s.wrap("replace presence rules", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, s.rebind(`DELETE FROM hlas_presence_rules WHERE presentity = ?`), presentity); err != nil {
		return s.wrap("replace presence rules", err)
	}
	for _, r := range rules {
		if _, err := tx.ExecContext(ctx, s.rebind(`INSERT INTO hlas_presence_rules (presentity, watcher, action, updated_ms) VALUES (?, ?, ?, ?)
			ON CONFLICT (presentity, watcher) DO UPDATE SET action = excluded.action, updated_ms = excluded.updated_ms`),
			presentity, r.Watcher, r.Action, now.UnixMilli()); err != nil {
			return s.wrap("replace presence rules", err)
		}
	}
	if _, err := tx.ExecContext(ctx, qRaisePresRules); err != nil {
		return s.wrap("replace presence rules", err)
	}
	return s.wrap("replace presence rules", tx.Commit())
}

// PresenceRules implements PresenceRules.
func (s *sqlStore) PresenceRules(ctx context.Context, presentity string) ([]PresenceRule, error) {
	q, args := `SELECT presentity, watcher, action, updated_ms FROM hlas_presence_rules ORDER BY presentity, watcher`, []any{}
	if presentity != "" {
		q, args = `SELECT presentity, watcher, action, updated_ms FROM hlas_presence_rules WHERE presentity = ? ORDER BY watcher`, []any{presentity}
	}
	rows, err := s.db.QueryContext(ctx, s.rebind(q), args...)
	if err != nil {
		return nil, s.wrap("presence rules", err)
	}
	defer rows.Close()
	var out []PresenceRule
	for rows.Next() {
		var r PresenceRule
		var ms int64
		if err := rows.Scan(&r.Presentity, &r.Watcher, &r.Action, &ms); err != nil {
			return nil, s.wrap("presence rules", err)
		}
		r.Updated = time.UnixMilli(ms)
		out = append(out, r)
	}
	return out, s.wrap("presence rules", rows.Err())
}

// PresenceRulesVersion implements PresenceRules.
func (s *sqlStore) PresenceRulesVersion(ctx context.Context) (int64, error) {
	var v int64
	err := s.db.QueryRowContext(ctx, `SELECT version FROM hlas_presence_rules_version WHERE id = 1`).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, s.wrap("presence rules version", errors.New("the row of hlas_presence_rules_version is missing"))
	}
	return v, s.wrap("presence rules version", err)
}

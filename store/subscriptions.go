package store

import (
	"context"
	"fmt"
	"time"
)

// Subscriptions keeps the notifier's subscriptions (RFC 6665) so that a
// restart does not make watchers subscribe again. A record is opaque here
// (the notifier's own encoding of its dialog and state), keyed by the
// subscription's ID, with its expiry for the purge: the store stays below
// the event layer.
type Subscriptions interface {
	// PutSubscriptionRecord creates or replaces a subscription's record.
	PutSubscriptionRecord(ctx context.Context, id string, expires time.Time, data []byte) error
	// DeleteSubscriptionRecord removes one; a missing one is no error.
	DeleteSubscriptionRecord(ctx context.Context, id string) error
	// SubscriptionRecords returns the records that have not lapsed at now
	// (and deletes those that have).
	SubscriptionRecords(ctx context.Context, now time.Time) ([][]byte, error)
}

var subscriptionsSchema = []string{
	`CREATE TABLE IF NOT EXISTS hlas_subscriptions (
		id         TEXT NOT NULL PRIMARY KEY,
		expires_ms BIGINT NOT NULL,
		data       TEXT NOT NULL
	)`,
}

const qPutSubscription = `INSERT INTO hlas_subscriptions (id, expires_ms, data) VALUES (?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET expires_ms = excluded.expires_ms, data = excluded.data`

func (s *sqlStore) createSubscriptions(ctx context.Context) error {
	for _, stmt := range subscriptionsSchema {
		if _, err := s.db.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("store %s: create schema: %w", s.name, err)
		}
	}
	// Prepared once: SQLite would parse the upsert again for every
	// SUBSCRIBE, a tenth of its cost.
	var err error
	if s.subPut, err = s.db.PrepareContext(ctx, s.rebind(qPutSubscription)); err != nil {
		return fmt.Errorf("store %s: prepare: %w", s.name, err)
	}
	return nil
}

// PutSubscriptionRecord implements Subscriptions.
func (s *sqlStore) PutSubscriptionRecord(ctx context.Context, id string, expires time.Time, data []byte) error {
	ctx, err := s.local(ctx)
	if err != nil {
		return s.wrap("put subscription", err)
	}
	_, err = s.subPut.ExecContext(ctx, id, expires.UnixMilli(), string(data))
	return s.wrap("put subscription", err)
}

// DeleteSubscriptionRecord implements Subscriptions.
func (s *sqlStore) DeleteSubscriptionRecord(ctx context.Context, id string) error {
	ctx, err := s.local(ctx)
	if err != nil {
		return s.wrap("delete subscription", err)
	}
	_, err = s.db.ExecContext(ctx, s.rebind(`DELETE FROM hlas_subscriptions WHERE id = ?`), id)
	return s.wrap("delete subscription", err)
}

// SubscriptionRecords implements Subscriptions.
func (s *sqlStore) SubscriptionRecords(ctx context.Context, now time.Time) ([][]byte, error) {
	if _, err := s.db.ExecContext(ctx, s.rebind(`DELETE FROM hlas_subscriptions WHERE expires_ms <= ?`), now.UnixMilli()); err != nil {
		return nil, s.wrap("subscriptions", err)
	}
	rows, err := s.db.QueryContext(ctx, `SELECT data FROM hlas_subscriptions ORDER BY id`)
	if err != nil {
		return nil, s.wrap("subscriptions", err)
	}
	defer rows.Close()
	var out [][]byte
	for rows.Next() {
		var d string
		if err := rows.Scan(&d); err != nil {
			return nil, s.wrap("subscriptions", err)
		}
		out = append(out, []byte(d))
	}
	return out, s.wrap("subscriptions", rows.Err())
}

package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Mailbox is the message-waiting state of one account (RFC 3842): the
// counts a voicemail system (or `hlas mwi set`) reports, which the
// message-summary event package notifies to the account's phones.
type Mailbox struct {
	AOR                            string // user@domain
	New, Old, UrgentNew, UrgentOld int
	Updated                        time.Time
}

// Mailboxes is the message-waiting table.
type Mailboxes interface {
	// PutMailbox creates or replaces an account's counts.
	PutMailbox(ctx context.Context, m Mailbox) error
	// Mailbox returns an account's counts; ErrNotFound when none were set.
	Mailbox(ctx context.Context, aor string) (Mailbox, error)
	// MailboxesSince returns the mailboxes updated at or after t, so a
	// server polling the table sees what `hlas mwi set` changed.
	MailboxesSince(ctx context.Context, t time.Time) ([]Mailbox, error)
}

var mwiSchema = []string{
	`CREATE TABLE IF NOT EXISTS hlas_mailboxes (
		aor        TEXT NOT NULL PRIMARY KEY,
		new_msgs   INTEGER NOT NULL,
		old_msgs   INTEGER NOT NULL,
		urgent_new INTEGER NOT NULL,
		urgent_old INTEGER NOT NULL,
		updated_ms BIGINT NOT NULL
	)`,
	`CREATE INDEX IF NOT EXISTS hlas_mailboxes_updated ON hlas_mailboxes (updated_ms)`,
}

const (
	qPutMailbox = `INSERT INTO hlas_mailboxes (aor, new_msgs, old_msgs, urgent_new, urgent_old, updated_ms) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (aor) DO UPDATE SET new_msgs = excluded.new_msgs, old_msgs = excluded.old_msgs,
		urgent_new = excluded.urgent_new, urgent_old = excluded.urgent_old, updated_ms = excluded.updated_ms`
	mailboxCols     = `aor, new_msgs, old_msgs, urgent_new, urgent_old, updated_ms`
	qMailbox        = `SELECT ` + mailboxCols + ` FROM hlas_mailboxes WHERE aor = ?`
	qMailboxesSince = `SELECT ` + mailboxCols + ` FROM hlas_mailboxes WHERE updated_ms >= ? ORDER BY updated_ms, aor`
)

func (s *sqlStore) createMailboxes(ctx context.Context) error {
	for _, stmt := range mwiSchema {
		if _, err := s.db.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("store %s: create schema: %w", s.name, err)
		}
	}
	return nil
}

// PutMailbox implements Mailboxes.
func (s *sqlStore) PutMailbox(ctx context.Context, m Mailbox) error {
	if m.AOR == "" || m.New < 0 || m.Old < 0 || m.UrgentNew < 0 || m.UrgentOld < 0 {
		return errors.New("store: put mailbox: want an AOR and counts of zero or more")
	}
	if m.Updated.IsZero() {
		m.Updated = time.Now()
	}
	_, err := s.db.ExecContext(ctx, s.rebind(qPutMailbox), m.AOR, m.New, m.Old, m.UrgentNew, m.UrgentOld, m.Updated.UnixMilli())
	return s.wrap("put mailbox", err)
}

// Mailbox implements Mailboxes.
func (s *sqlStore) Mailbox(ctx context.Context, aor string) (Mailbox, error) {
	m, err := scanMailbox(s.db.QueryRowContext(ctx, s.rebind(qMailbox), aor))
	if errors.Is(err, sql.ErrNoRows) {
		return Mailbox{}, ErrNotFound
	}
	return m, s.wrap("mailbox", err)
}

// MailboxesSince implements Mailboxes.
func (s *sqlStore) MailboxesSince(ctx context.Context, t time.Time) ([]Mailbox, error) {
	rows, err := s.db.QueryContext(ctx, s.rebind(qMailboxesSince), t.UnixMilli())
	if err != nil {
		return nil, s.wrap("mailboxes", err)
	}
	defer rows.Close()
	var out []Mailbox
	for rows.Next() {
		m, err := scanMailbox(rows)
		if err != nil {
			return nil, s.wrap("mailboxes", err)
		}
		out = append(out, m)
	}
	return out, s.wrap("mailboxes", rows.Err())
}

func scanMailbox(r interface{ Scan(...any) error }) (Mailbox, error) {
	var m Mailbox
	var ms int64
	if err := r.Scan(&m.AOR, &m.New, &m.Old, &m.UrgentNew, &m.UrgentOld, &ms); err != nil {
		return Mailbox{}, err
	}
	m.Updated = time.UnixMilli(ms)
	return m, nil
}

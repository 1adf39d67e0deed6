package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// The users version is a number kept in the one row of hlas_users_version
// and raised by triggers on hlas_users, so it changes with every change of
// a subscriber whoever makes it: this process, `hlas user` run beside the
// server, or an administrator's SQL. The trigger's update is part of the
// transaction that changes the subscriber, so a reader that sees the new
// version also sees the change. Caches of subscribers (package auth) poll
// it to know when to forget what they hold.
//
// The row starts at the creation time in nanoseconds rather than at 0, so
// a database created again (dropped and restored, a new file) does not
// count through the numbers a running server has already seen.
var usersVersionSchema = []string{
	`CREATE TABLE IF NOT EXISTS hlas_users_version (
		id      INTEGER PRIMARY KEY CHECK (id = 1),
		version BIGINT NOT NULL
	)`,
	// Run with the initial version as its argument.
	`INSERT INTO hlas_users_version (id, version) VALUES (1, ?) ON CONFLICT (id) DO NOTHING`,
}

// usersVersionTriggersSQLite are SQLite's: row triggers (the only kind SQLite
// has). A bulk import raises the version once per row, which costs an
// in-place update of one row already in the page cache.
var usersVersionTriggersSQLite = []string{
	`CREATE TRIGGER IF NOT EXISTS hlas_users_version_insert AFTER INSERT ON hlas_users
	BEGIN UPDATE hlas_users_version SET version = version + 1 WHERE id = 1; END`,
	`CREATE TRIGGER IF NOT EXISTS hlas_users_version_update AFTER UPDATE ON hlas_users
	BEGIN UPDATE hlas_users_version SET version = version + 1 WHERE id = 1; END`,
	`CREATE TRIGGER IF NOT EXISTS hlas_users_version_delete AFTER DELETE ON hlas_users
	BEGIN UPDATE hlas_users_version SET version = version + 1 WHERE id = 1; END`,
}

// usersVersionTriggersPostgres are PostgreSQL's, created once (under an
// advisory lock, so two processes starting together do not both create
// them). The row trigger raises the version once per transaction: every
// UPDATE of the row makes a new row version that the rest of the
// transaction must step over, so a bulk import of n subscribers raising it
// n times would cost O(n²). A transaction-local setting remembers the raise
// (it is undone with the transaction, or with a rolled-back savepoint,
// together with the raise itself). The version table is found in the
// schema of the table that fired, not through the session's search_path.
// TRUNCATE fires no row trigger, hence the statement trigger.
var usersVersionTriggersPostgres = []string{`DO $do$
BEGIN
	PERFORM pg_advisory_xact_lock(hashtext('hlas_users_version'));
	IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = 'hlas_users'::regclass AND tgname = 'hlas_users_version') THEN
		CREATE OR REPLACE FUNCTION hlas_users_version_raise() RETURNS trigger LANGUAGE plpgsql AS $fn$
		BEGIN
			IF current_setting('hlas.users_version_raised', true) IS DISTINCT FROM TG_TABLE_SCHEMA THEN
				EXECUTE format('UPDATE %I.hlas_users_version SET version = version + 1 WHERE id = 1', TG_TABLE_SCHEMA);
				PERFORM set_config('hlas.users_version_raised', TG_TABLE_SCHEMA, true);
			END IF;
			RETURN NULL;
		END
		$fn$;
		CREATE TRIGGER hlas_users_version AFTER INSERT OR UPDATE OR DELETE ON hlas_users
			FOR EACH ROW EXECUTE FUNCTION hlas_users_version_raise();
		CREATE TRIGGER hlas_users_version_truncate AFTER TRUNCATE ON hlas_users
			FOR EACH STATEMENT EXECUTE FUNCTION hlas_users_version_raise();
	END IF;
END
$do$`}

const qUsersVersion = `SELECT version FROM hlas_users_version WHERE id = 1`

// createUsersVersion creates the version row and its triggers when they
// are missing (a new database, or one made before they existed) and
// prepares the query that reads it.
func (s *sqlStore) createUsersVersion(ctx context.Context) error {
	if _, err := s.db.ExecContext(ctx, usersVersionSchema[0]); err != nil {
		return fmt.Errorf("store %s: create schema: %w", s.name, err)
	}
	if _, err := s.db.ExecContext(ctx, s.rebind(usersVersionSchema[1]), time.Now().UnixNano()); err != nil {
		return fmt.Errorf("store %s: create schema: %w", s.name, err)
	}
	triggers := usersVersionTriggersSQLite
	if s.name == "postgres" {
		triggers = usersVersionTriggersPostgres
	}
	for _, stmt := range triggers {
		if _, err := s.db.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("store %s: create schema: %w", s.name, err)
		}
	}
	var err error
	if s.usersVersion, err = s.db.PrepareContext(ctx, s.rebind(qUsersVersion)); err != nil {
		return fmt.Errorf("store %s: prepare: %w", s.name, err)
	}
	return nil
}

// UsersVersion implements Users.
func (s *sqlStore) UsersVersion(ctx context.Context) (int64, error) {
	var v int64
	err := s.usersVersion.QueryRowContext(ctx).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, s.wrap("users version", errors.New("the row of hlas_users_version is missing"))
	}
	return v, s.wrap("users version", err)
}

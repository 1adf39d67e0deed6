package store

import (
	"context"
	"database/sql"
	"fmt"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
)

// OpenPostgres connects to PostgreSQL at url (postgres://user@host/db?...,
// any option pgx accepts, for example search_path) and creates the tables
// when they are missing.
func OpenPostgres(ctx context.Context, url string) (Store, error) {
	db, err := sql.Open("pgx", url)
	if err != nil {
		return nil, fmt.Errorf("store postgres %s: %w", redact(url), err)
	}
	db.SetMaxOpenConns(16)
	db.SetMaxIdleConns(16)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("store postgres %s: %w", redact(url), err)
	}
	s, err := newSQLStore(ctx, db, "postgres", dollarPlaceholders)
	if err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

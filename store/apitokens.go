package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// APIToken is a bearer token of the REST API (package api): a name an
// operator chose, the SHA-256 of the secret (the secret itself is shown
// once, when made, and never stored), and whether it may only read.
type APIToken struct {
	// Name is unique; `hlas api token del NAME` names it.
	Name string
	// Hash is the hex SHA-256 of the token as the client sends it.
	Hash string
	// ReadOnly tokens may not change anything (the API answers 403).
	ReadOnly bool
	// Created is set by the store.
	Created time.Time
}

// APITokens is the table of the REST API's tokens. A server reads it on
// every request, so a token added or deleted by `hlas api token` while
// it runs counts at once.
type APITokens interface {
	// AddAPIToken stores t; ErrExists when its name (or hash) is taken.
	AddAPIToken(ctx context.Context, t APIToken) error
	// DeleteAPIToken removes the token called name; ErrNotFound if none.
	DeleteAPIToken(ctx context.Context, name string) error
	// APITokens returns every token, ordered by name.
	APITokens(ctx context.Context) ([]APIToken, error)
	// APITokenByHash returns the token whose Hash is hash, or ErrNotFound.
	APITokenByHash(ctx context.Context, hash string) (APIToken, error)
}

var apiTokensSchema = []string{
	`CREATE TABLE IF NOT EXISTS hlas_api_tokens (
		name      TEXT NOT NULL PRIMARY KEY,
		hash      TEXT NOT NULL UNIQUE,
		read_only INTEGER NOT NULL,
		created   BIGINT NOT NULL
	)`,
}

const (
	qAddAPIToken = `INSERT INTO hlas_api_tokens (name, hash, read_only, created) VALUES (?, ?, ?, ?)
		ON CONFLICT DO NOTHING`
	qDeleteAPIToken = `DELETE FROM hlas_api_tokens WHERE name = ?`
	qAPITokens      = `SELECT name, hash, read_only, created FROM hlas_api_tokens ORDER BY name`
	qAPITokenByHash = `SELECT name, hash, read_only, created FROM hlas_api_tokens WHERE hash = ?`
)

func (s *sqlStore) createAPITokens(ctx context.Context) error {
	for _, stmt := range apiTokensSchema {
		if _, err := s.db.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("store %s: create schema: %w", s.name, err)
		}
	}
	return nil
}

// AddAPIToken implements APITokens.
func (s *sqlStore) AddAPIToken(ctx context.Context, t APIToken) error {
	if t.Name == "" || t.Hash == "" {
		return errors.New("store: an API token needs a name and a hash")
	}
	res, err := s.db.ExecContext(ctx, s.rebind(qAddAPIToken), t.Name, t.Hash, boolInt(t.ReadOnly), time.Now().Unix())
	if err != nil {
		return s.wrap("add api token "+t.Name, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return fmt.Errorf("%w: api token %s", ErrExists, t.Name)
	}
	return nil
}

// DeleteAPIToken implements APITokens.
func (s *sqlStore) DeleteAPIToken(ctx context.Context, name string) error {
	res, err := s.db.ExecContext(ctx, s.rebind(qDeleteAPIToken), name)
	if err != nil {
		return s.wrap("delete api token "+name, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return fmt.Errorf("%w: api token %s", ErrNotFound, name)
	}
	return nil
}

// APITokens implements APITokens.
func (s *sqlStore) APITokens(ctx context.Context) ([]APIToken, error) {
	rows, err := s.db.QueryContext(ctx, qAPITokens)
	if err != nil {
		return nil, s.wrap("api tokens", err)
	}
	defer rows.Close()
	var out []APIToken
	for rows.Next() {
		t, err := scanAPIToken(rows)
		if err != nil {
			return nil, s.wrap("api tokens", err)
		}
		out = append(out, t)
	}
	return out, s.wrap("api tokens", rows.Err())
}

// APITokenByHash implements APITokens.
func (s *sqlStore) APITokenByHash(ctx context.Context, hash string) (APIToken, error) {
	t, err := scanAPIToken(s.db.QueryRowContext(ctx, s.rebind(qAPITokenByHash), hash))
	if errors.Is(err, sql.ErrNoRows) {
		return APIToken{}, ErrNotFound
	}
	return t, s.wrap("api token", err)
}

func scanAPIToken(r interface{ Scan(...any) error }) (APIToken, error) {
	var t APIToken
	var ro int
	var created int64
	if err := r.Scan(&t.Name, &t.Hash, &ro, &created); err != nil {
		return APIToken{}, err
	}
	t.ReadOnly, t.Created = ro != 0, time.Unix(created, 0)
	return t, nil
}

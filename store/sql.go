package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// schema creates the tables; it is plain SQL that SQLite and PostgreSQL
// both accept. Times are Unix seconds, so neither back end's date types
// matter.
var schema = []string{
	`CREATE TABLE IF NOT EXISTS hlas_users (
		username   TEXT NOT NULL,
		domain     TEXT NOT NULL,
		ha1_md5    TEXT NOT NULL,
		ha1_sha256 TEXT NOT NULL,
		created    BIGINT NOT NULL,
		updated    BIGINT NOT NULL,
		PRIMARY KEY (domain, username)
	)`,
	`CREATE TABLE IF NOT EXISTS hlas_bindings (
		aor        TEXT NOT NULL,
		id         TEXT NOT NULL,
		contact    TEXT NOT NULL,
		q          INTEGER NOT NULL,
		expires    BIGINT NOT NULL,
		call_id    TEXT NOT NULL,
		cseq       BIGINT NOT NULL,
		path       TEXT NOT NULL,
		instance   TEXT NOT NULL,
		reg_id     INTEGER NOT NULL,
		source     TEXT NOT NULL,
		local_addr TEXT NOT NULL,
		transport  TEXT NOT NULL,
		user_agent TEXT NOT NULL,
		updated    BIGINT NOT NULL,
		nat        INTEGER NOT NULL DEFAULT 0,
		PRIMARY KEY (aor, id)
	)`,
	`CREATE INDEX IF NOT EXISTS hlas_bindings_expires ON hlas_bindings (expires)`,
}

// addedColumns are the columns added to tables after their first release:
// a database made before gets them, with their defaults, when it is
// opened (CREATE TABLE IF NOT EXISTS leaves an existing table alone).
var addedColumns = []struct{ table, column, decl string }{
	{"hlas_bindings", "nat", "INTEGER NOT NULL DEFAULT 0"},
}

// Queries, written with "?" placeholders; PostgreSQL gets them rebound to
// $1, $2, ... once at open.
const (
	qUser       = `SELECT username, domain, ha1_md5, ha1_sha256, created, updated FROM hlas_users WHERE domain = ? AND username = ?`
	qListUsers  = `SELECT username, domain, ha1_md5, ha1_sha256, created, updated FROM hlas_users ORDER BY domain, username`
	qListDomain = `SELECT username, domain, ha1_md5, ha1_sha256, created, updated FROM hlas_users WHERE domain = ? ORDER BY username`
	qAddUser    = `INSERT INTO hlas_users (username, domain, ha1_md5, ha1_sha256, created, updated) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (domain, username) DO NOTHING`
	qPutUser = `INSERT INTO hlas_users (username, domain, ha1_md5, ha1_sha256, created, updated) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (domain, username) DO UPDATE SET ha1_md5 = excluded.ha1_md5, ha1_sha256 = excluded.ha1_sha256, updated = excluded.updated`
	qSetHashes  = `UPDATE hlas_users SET ha1_md5 = ?, ha1_sha256 = ?, updated = ? WHERE domain = ? AND username = ?`
	qDeleteUser = `DELETE FROM hlas_users WHERE domain = ? AND username = ?`

	bindingCols = `aor, id, contact, q, expires, call_id, cseq, path, instance, reg_id, source, local_addr, transport, user_agent, updated, nat`
	qPutBinding = `INSERT INTO hlas_bindings (` + bindingCols + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (aor, id) DO UPDATE SET contact = excluded.contact, q = excluded.q, expires = excluded.expires,
		call_id = excluded.call_id, cseq = excluded.cseq, path = excluded.path, instance = excluded.instance,
		reg_id = excluded.reg_id, source = excluded.source, local_addr = excluded.local_addr,
		transport = excluded.transport, user_agent = excluded.user_agent, updated = excluded.updated, nat = excluded.nat`
	qDeleteBinding = `DELETE FROM hlas_bindings WHERE aor = ? AND id = ?`
	qBindings      = `SELECT ` + bindingCols + ` FROM hlas_bindings WHERE expires > ? ORDER BY aor, id`
	qBindingsAOR   = `SELECT ` + bindingCols + ` FROM hlas_bindings WHERE expires > ? AND aor = ? ORDER BY id`
	qPurge         = `DELETE FROM hlas_bindings WHERE expires <= ?`
)

// sqlStore implements Store over database/sql for both back ends.
type sqlStore struct {
	db     *sql.DB
	name   string // "sqlite" or "postgres": for errors, the users version triggers, and PurgeCDRs pauses on SQLite
	rebind func(string) string
	user   *sql.Stmt // the hot query: one per authenticated request

	usersVersion *sql.Stmt // see users_version.go

	pubw   pubConn   // the connection of publication writes (publications.go)
	subPut *sql.Stmt // PutSubscriptionRecord's upsert: one per SUBSCRIBE
}

func newSQLStore(ctx context.Context, db *sql.DB, name string, rebind func(string) string) (*sqlStore, error) {
	s := &sqlStore{db: db, name: name, rebind: rebind}
	for _, stmt := range append(schema[:len(schema):len(schema)], cdrSchema...) {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			return nil, fmt.Errorf("store %s: create schema: %w", name, err)
		}
	}
	if err := s.addColumns(ctx); err != nil {
		return nil, err
	}
	var err error
	if s.user, err = db.PrepareContext(ctx, rebind(qUser)); err != nil {
		return nil, fmt.Errorf("store %s: prepare: %w", name, err)
	}
	for _, create := range []func(context.Context) error{
		s.createUsersVersion, s.createBans, s.createMailboxes, s.createPublications,
		s.createSubscriptions, s.createPresenceRules, s.createXCAP, s.createAPITokens,
		func(ctx context.Context) error { return s.pubw.connect(ctx, s) },
	} {
		if err := create(ctx); err != nil {
			s.closeStmts()
			return nil, err
		}
	}
	return s, nil
}

// addColumns adds the addedColumns a table lacks. Another process may add
// one at the same time: a failed ALTER is an error only when the column is
// still missing afterwards.
func (s *sqlStore) addColumns(ctx context.Context) error {
	for _, c := range append(addedColumns[:len(addedColumns):len(addedColumns)], cdrAddedColumns...) {
		if s.hasColumn(ctx, c.table, c.column) {
			continue
		}
		_, err := s.db.ExecContext(ctx, `ALTER TABLE `+c.table+` ADD COLUMN `+c.column+` `+c.decl)
		if err != nil && !s.hasColumn(ctx, c.table, c.column) {
			return fmt.Errorf("store %s: add column %s.%s: %w", s.name, c.table, c.column, err)
		}
	}
	return nil
}

// hasColumn asks the table itself, in the same words on both back ends
// (and within PostgreSQL's search_path, as every other query).
func (s *sqlStore) hasColumn(ctx context.Context, table, column string) bool {
	rows, err := s.db.QueryContext(ctx, `SELECT `+column+` FROM `+table+` WHERE 1 = 0`)
	if err != nil {
		return false
	}
	rows.Close()
	return true
}

// Close implements Store.
func (s *sqlStore) Close() error {
	s.closeStmts()
	return s.db.Close()
}

// closeStmts closes the prepared statements made so far.
func (s *sqlStore) closeStmts() {
	for _, st := range []*sql.Stmt{s.user, s.usersVersion, s.subPut} {
		if st != nil {
			st.Close()
		}
	}
	s.pubw.close()
}

func (s *sqlStore) wrap(op string, err error) error {
	if err == nil || errors.Is(err, ErrNotFound) || errors.Is(err, ErrExists) {
		return err
	}
	return fmt.Errorf("store %s: %s: %w", s.name, op, err)
}

// User implements Users.
func (s *sqlStore) User(ctx context.Context, username, domain string) (User, error) {
	var u User
	var created, updated int64
	err := s.user.QueryRowContext(ctx, domain, username).Scan(&u.Username, &u.Domain, &u.HA1MD5, &u.HA1SHA256, &created, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, ErrNotFound
	}
	if err != nil {
		return User{}, s.wrap("user "+username+"@"+domain, err)
	}
	u.Created, u.Updated = time.Unix(created, 0), time.Unix(updated, 0)
	return u, nil
}

// ListUsers implements Users.
func (s *sqlStore) ListUsers(ctx context.Context, domain string) ([]User, error) {
	var rows *sql.Rows
	var err error
	if domain == "" {
		rows, err = s.db.QueryContext(ctx, s.rebind(qListUsers))
	} else {
		rows, err = s.db.QueryContext(ctx, s.rebind(qListDomain), strings.ToLower(domain))
	}
	if err != nil {
		return nil, s.wrap("list users", err)
	}
	defer rows.Close()
	var out []User
	for rows.Next() {
		var u User
		var created, updated int64
		if err := rows.Scan(&u.Username, &u.Domain, &u.HA1MD5, &u.HA1SHA256, &created, &updated); err != nil {
			return nil, s.wrap("list users", err)
		}
		u.Created, u.Updated = time.Unix(created, 0), time.Unix(updated, 0)
		out = append(out, u)
	}
	return out, s.wrap("list users", rows.Err())
}

func checkUser(u User) error {
	if u.Username == "" || u.Domain == "" {
		return errors.New("store: a user needs a username and a domain")
	}
	if u.HA1MD5 == "" || u.HA1SHA256 == "" {
		return fmt.Errorf("store: user %s: both digest hashes are required", u.AOR())
	}
	return nil
}

// AddUser implements Users.
func (s *sqlStore) AddUser(ctx context.Context, u User) error {
	if err := checkUser(u); err != nil {
		return err
	}
	now := time.Now().Unix()
	res, err := s.db.ExecContext(ctx, s.rebind(qAddUser), u.Username, u.Domain, u.HA1MD5, u.HA1SHA256, now, now)
	if err != nil {
		return s.wrap("add user "+u.AOR(), err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return fmt.Errorf("%w: user %s", ErrExists, u.AOR())
	}
	return nil
}

// PutUsers implements Users: one transaction, one prepared statement.
func (s *sqlStore) PutUsers(ctx context.Context, us []User) (err error) {
	for _, u := range us {
		if err := checkUser(u); err != nil {
			return err
		}
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return s.wrap("put users", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	stmt, err := tx.PrepareContext(ctx, s.rebind(qPutUser))
	if err != nil {
		return s.wrap("put users", err)
	}
	defer stmt.Close()
	now := time.Now().Unix()
	for _, u := range us {
		if _, err = stmt.ExecContext(ctx, u.Username, u.Domain, u.HA1MD5, u.HA1SHA256, now, now); err != nil {
			return s.wrap("put user "+u.AOR(), err)
		}
	}
	return s.wrap("put users: commit", tx.Commit())
}

// SetUserHashes implements Users.
func (s *sqlStore) SetUserHashes(ctx context.Context, username, domain, ha1MD5, ha1SHA256 string) error {
	if ha1MD5 == "" || ha1SHA256 == "" {
		return errors.New("store: both digest hashes are required")
	}
	res, err := s.db.ExecContext(ctx, s.rebind(qSetHashes), ha1MD5, ha1SHA256, time.Now().Unix(), domain, username)
	if err != nil {
		return s.wrap("set password of "+username+"@"+domain, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return fmt.Errorf("%w: user %s@%s", ErrNotFound, username, domain)
	}
	return nil
}

// DeleteUser implements Users.
func (s *sqlStore) DeleteUser(ctx context.Context, username, domain string) error {
	res, err := s.db.ExecContext(ctx, s.rebind(qDeleteUser), domain, username)
	if err != nil {
		return s.wrap("delete user "+username+"@"+domain, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return fmt.Errorf("%w: user %s@%s", ErrNotFound, username, domain)
	}
	return nil
}

// WriteBindings implements Bindings.
func (s *sqlStore) WriteBindings(ctx context.Context, put []Binding, del []BindingKey) (err error) {
	if len(put) == 0 && len(del) == 0 {
		return nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return s.wrap("write bindings", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	if len(del) > 0 {
		stmt, err := tx.PrepareContext(ctx, s.rebind(qDeleteBinding))
		if err != nil {
			return s.wrap("write bindings", err)
		}
		defer stmt.Close()
		for _, k := range del {
			if _, err := stmt.ExecContext(ctx, k.AOR, k.ID); err != nil {
				return s.wrap("delete binding "+k.AOR, err)
			}
		}
	}
	if len(put) > 0 {
		stmt, err := tx.PrepareContext(ctx, s.rebind(qPutBinding))
		if err != nil {
			return s.wrap("write bindings", err)
		}
		defer stmt.Close()
		for _, b := range put {
			if _, err := stmt.ExecContext(ctx, b.AOR, b.ID, b.Contact, b.Q, b.Expires.Unix(), b.CallID, int64(b.CSeq),
				b.Path, b.Instance, b.RegID, b.Source, b.Local, b.Transport, b.UserAgent, b.Updated.Unix(), boolInt(b.NAT)); err != nil {
				return s.wrap("save binding "+b.AOR, err)
			}
		}
	}
	return s.wrap("write bindings: commit", tx.Commit())
}

// Bindings implements Bindings.
func (s *sqlStore) Bindings(ctx context.Context, aor string, now time.Time) ([]Binding, error) {
	var rows *sql.Rows
	var err error
	if aor == "" {
		rows, err = s.db.QueryContext(ctx, s.rebind(qBindings), now.Unix())
	} else {
		rows, err = s.db.QueryContext(ctx, s.rebind(qBindingsAOR), now.Unix(), aor)
	}
	if err != nil {
		return nil, s.wrap("load bindings", err)
	}
	defer rows.Close()
	var out []Binding
	for rows.Next() {
		var b Binding
		var expires, cseq, updated, nat int64
		if err := rows.Scan(&b.AOR, &b.ID, &b.Contact, &b.Q, &expires, &b.CallID, &cseq, &b.Path, &b.Instance,
			&b.RegID, &b.Source, &b.Local, &b.Transport, &b.UserAgent, &updated, &nat); err != nil {
			return nil, s.wrap("load bindings", err)
		}
		b.Expires, b.CSeq, b.Updated, b.NAT = time.Unix(expires, 0), uint32(cseq), time.Unix(updated, 0), nat != 0
		out = append(out, b)
	}
	return out, s.wrap("load bindings", rows.Err())
}

// PurgeBindings implements Bindings.
func (s *sqlStore) PurgeBindings(ctx context.Context, now time.Time) (int64, error) {
	res, err := s.db.ExecContext(ctx, s.rebind(qPurge), now.Unix())
	if err != nil {
		return 0, s.wrap("purge bindings", err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}

// boolInt is a flag as the tables hold it: neither back end's boolean
// type is the other's.
func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// dollarPlaceholders rewrites "?" placeholders as $1, $2, ... for
// PostgreSQL. The queries above hold no "?" inside literals.
func dollarPlaceholders(q string) string {
	var b strings.Builder
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(q[i])
	}
	return b.String()
}

func sameQuery(q string) string { return q }

package store

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// CDR is one call detail record: a call the proxy forwarded (answered or
// not), or optionally a MESSAGE or a failed REGISTER. Package acc makes
// them; the store keeps them. Times are kept to the millisecond.
type CDR struct {
	// ID identifies the record; writing the same ID twice keeps one row,
	// so a batch retried after an unclear commit cannot duplicate it.
	ID string
	// Kind is call, message or register.
	Kind string
	// Status is answered (a 2xx), cancelled (the caller's CANCEL) or
	// failed (any other final response).
	Status string
	// CallID, the From and To URIs and tags identify the dialog (RFC 3261
	// §12); ToTag is the answering side's tag.
	CallID  string
	FromURI string
	FromTag string
	ToURI   string
	ToTag   string
	// RequestURI is the request's Request-URI as received.
	RequestURI string
	// Caller and Callee are the From's and To's address of record,
	// user@host, for filtering.
	Caller string
	Callee string
	// User is the authenticated user (user@domain); empty when the
	// request passed unauthenticated (a trusted peer, an open domain).
	User string
	// Source is where the request came from, transport:ip:port.
	Source string
	// UserAgent is the request's User-Agent.
	UserAgent string
	// Start is when the INVITE (MESSAGE, REGISTER) arrived, Answer when
	// the first 2xx went upstream (zero when none did), End when the call
	// ended: the BYE's arrival, the final response, or a timeout.
	Start  time.Time
	Answer time.Time
	End    time.Time
	// Duration is End - Answer for answered calls, else zero.
	Duration time.Duration
	// Code and Reason are the final response's status code and phrase.
	Code   int
	Reason string
	// Q850 is the cause of a Reason header (RFC 3326) on the BYE or the
	// final response, 0 when none; Q850Text its text.
	Q850     int
	Q850Text string
	// EndedBy is who ended the call: caller, callee or proxy (Timer C,
	// no response, maximum duration, session timer, shutdown).
	EndedBy string
	// EndReason says how: bye, cancel, rejected, redirected, timeout, max-duration,
	// session-expired, media-timeout (the media relay saw no media),
	// shutdown, untracked (answered without Record-Route: the proxy does
	// not see the end).
	EndReason string
	// Branch is the fork branch that answered: its target URI, and
	// BranchAddr the hop it was sent to (transport:ip:port).
	Branch     string
	BranchAddr string

	// MediaRelayed says that the call's media went through the server's
	// relay (docs/media.md); the media fields below are zero when it did
	// not. They are what the relay counted when it let go of the call
	// (the BYE, the failure of the INVITE, its inactivity timeout).
	MediaRelayed bool
	// MediaStreams is the number of media streams (SDP m-lines) relayed.
	MediaStreams int
	// The Caller fields are the media the caller sent, towards the
	// callee; the Callee fields the other way. Packets and Bytes count
	// what the relay forwarded (RTP and RTCP, UDP payload); Dropped what
	// it refused (from a stranger's address, before the party was known,
	// with nowhere to send it). Lost and JitterMS are what the receiving
	// party last said of that media in RTCP reports: packets lost
	// (cumulative, summed over the streams; RTCP allows a negative
	// count) and interarrival jitter in milliseconds (the worst
	// stream's); zero when it sent none or they were encrypted (SRTP).
	CallerPackets  uint64
	CallerBytes    uint64
	CallerDropped  uint64
	CallerLost     int64
	CallerJitterMS float64
	CalleePackets  uint64
	CalleeBytes    uint64
	CalleeDropped  uint64
	CalleeLost     int64
	CalleeJitterMS float64
}

// CDRFilter selects records; zero fields match everything.
type CDRFilter struct {
	// Since and Until bound Start: Since <= Start < Until.
	Since, Until time.Time
	// User matches the authenticated user, the caller or the callee:
	// "alice@example.com" exactly, "alice" as the user part of any domain.
	User string
	// Status is answered, failed or cancelled, or a status code ("486").
	Status string
	// Kind is call, message or register.
	Kind string
	// Limit bounds the result (the oldest first); 0 means no limit.
	Limit int
}

// CDRs is the call detail record table.
type CDRs interface {
	// WriteCDRs stores records in one transaction: when it returns nil
	// they are committed.
	WriteCDRs(ctx context.Context, cdrs []CDR) error
	// CDRs returns the records f selects, ordered by Start.
	CDRs(ctx context.Context, f CDRFilter) ([]CDR, error)
	// PurgeCDRs deletes the records completed before before (End, or
	// Start for a record without an End; see CDR.Completed) and reports
	// how many it deleted. It deletes in chunks, each its own
	// transaction, so a large purge never holds the write lock long and
	// the CDR writer's commits get through between chunks; on an error
	// (ctx cancelled included) the chunks already deleted stay deleted
	// and are counted.
	PurgeCDRs(ctx context.Context, before time.Time) (int64, error)
	// PurgeableCDRs reports how many records PurgeCDRs(ctx, before) would
	// delete now: a dry run.
	PurgeableCDRs(ctx context.Context, before time.Time) (int64, error)
}

// Completed is when the record was complete: End, or Start for a record
// without an End. Retention counts from it, not from Start, so that a
// long call is kept as long after its end as a short one, and a record
// is never purged before it could have been written (acc writes a
// record when the call ends).
func (c CDR) Completed() time.Time {
	if c.End.IsZero() {
		return c.Start
	}
	return c.End
}

const (
	cdrCols = `id, kind, status, call_id, from_uri, from_tag, to_uri, to_tag, request_uri, caller, callee, auth_user,
		source, user_agent, start_ms, answer_ms, end_ms, duration_ms, code, reason, q850, q850_text, ended_by,
		end_reason, branch, branch_addr, media_relayed, media_streams, caller_packets, caller_bytes, caller_dropped,
		caller_lost, caller_jitter_ms, callee_packets, callee_bytes, callee_dropped, callee_lost, callee_jitter_ms`
	// ON CONFLICT DO NOTHING: a retried batch finds its rows there.
	qPutCDR = `INSERT INTO hlas_cdrs (` + cdrCols + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,
		?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO NOTHING`

	// cdrCompleted is CDR.Completed in SQL. The hlas_cdrs_completed
	// index is on this very expression: both back ends use an
	// expression index only for a query that repeats it.
	cdrCompleted = `(CASE WHEN end_ms = 0 THEN start_ms ELSE end_ms END)`
	// qPurgeCDRs deletes one chunk (the LIMIT, bound as a parameter). A
	// sub-select, because SQLite has DELETE ... LIMIT only when built
	// with an option and PostgreSQL not at all.
	qPurgeCDRs          = `DELETE FROM hlas_cdrs WHERE id IN (SELECT id FROM hlas_cdrs WHERE ` + cdrCompleted + ` < ? LIMIT ?)`
	qCountPurgeableCDRs = `SELECT count(*) FROM hlas_cdrs WHERE ` + cdrCompleted + ` < ?`

	// cdrPurgeChunk is how many records one PurgeCDRs statement
	// deletes: a few tens of milliseconds of work on SQLite, so the
	// write lock is never held long.
	cdrPurgeChunk = 10000
	// sqlitePurgePause is the pause between two chunks on SQLite. A
	// writer waiting for the lock (the CDR writer, the registrar, `hlas
	// user`) sleeps in SQLite's busy handler and retries at most 100 ms
	// apart; without a pause the next chunk would take the lock again
	// first, every time, until the writer's busy timeout ran out.
	// PostgreSQL locks rows: inserts do not wait for the purge.
	sqlitePurgePause = 120 * time.Millisecond
)

// cdrSchema is the CDR table, part of schema.
var cdrSchema = []string{
	`CREATE TABLE IF NOT EXISTS hlas_cdrs (
		id          TEXT NOT NULL PRIMARY KEY,
		kind        TEXT NOT NULL,
		status      TEXT NOT NULL,
		call_id     TEXT NOT NULL,
		from_uri    TEXT NOT NULL,
		from_tag    TEXT NOT NULL,
		to_uri      TEXT NOT NULL,
		to_tag      TEXT NOT NULL,
		request_uri TEXT NOT NULL,
		caller      TEXT NOT NULL,
		callee      TEXT NOT NULL,
		auth_user   TEXT NOT NULL,
		source      TEXT NOT NULL,
		user_agent  TEXT NOT NULL,
		start_ms    BIGINT NOT NULL,
		answer_ms   BIGINT NOT NULL,
		end_ms      BIGINT NOT NULL,
		duration_ms BIGINT NOT NULL,
		code        INTEGER NOT NULL,
		reason      TEXT NOT NULL,
		q850        INTEGER NOT NULL,
		q850_text   TEXT NOT NULL,
		ended_by    TEXT NOT NULL,
		end_reason  TEXT NOT NULL,
		branch      TEXT NOT NULL,
		branch_addr TEXT NOT NULL,
		media_relayed    INTEGER NOT NULL DEFAULT 0,
		media_streams    INTEGER NOT NULL DEFAULT 0,
		caller_packets   BIGINT NOT NULL DEFAULT 0,
		caller_bytes     BIGINT NOT NULL DEFAULT 0,
		caller_dropped   BIGINT NOT NULL DEFAULT 0,
		caller_lost      BIGINT NOT NULL DEFAULT 0,
		caller_jitter_ms DOUBLE PRECISION NOT NULL DEFAULT 0,
		callee_packets   BIGINT NOT NULL DEFAULT 0,
		callee_bytes     BIGINT NOT NULL DEFAULT 0,
		callee_dropped   BIGINT NOT NULL DEFAULT 0,
		callee_lost      BIGINT NOT NULL DEFAULT 0,
		callee_jitter_ms DOUBLE PRECISION NOT NULL DEFAULT 0
	)`,
	`CREATE INDEX IF NOT EXISTS hlas_cdrs_start ON hlas_cdrs (start_ms)`,
	// For PurgeCDRs. Created at every open when missing, so a database
	// made before retention existed gets it at its first open by a newer
	// hlas (building it over a large table takes a while, once).
	`CREATE INDEX IF NOT EXISTS hlas_cdrs_completed ON hlas_cdrs (` + cdrCompleted + `)`,
}

// cdrAddedColumns are the columns of hlas_cdrs that came after its first
// release (the media relay's statistics): a database made before gets
// them, zero for its old rows, when it is opened (see addColumns). Their
// declarations are the CREATE TABLE's.
var cdrAddedColumns = []struct{ table, column, decl string }{
	{"hlas_cdrs", "media_relayed", "INTEGER NOT NULL DEFAULT 0"},
	{"hlas_cdrs", "media_streams", "INTEGER NOT NULL DEFAULT 0"},
	{"hlas_cdrs", "caller_packets", "BIGINT NOT NULL DEFAULT 0"},
	{"hlas_cdrs", "caller_bytes", "BIGINT NOT NULL DEFAULT 0"},
	{"hlas_cdrs", "caller_dropped", "BIGINT NOT NULL DEFAULT 0"},
	{"hlas_cdrs", "caller_lost", "BIGINT NOT NULL DEFAULT 0"},
	{"hlas_cdrs", "caller_jitter_ms", "DOUBLE PRECISION NOT NULL DEFAULT 0"},
	{"hlas_cdrs", "callee_packets", "BIGINT NOT NULL DEFAULT 0"},
	{"hlas_cdrs", "callee_bytes", "BIGINT NOT NULL DEFAULT 0"},
	{"hlas_cdrs", "callee_dropped", "BIGINT NOT NULL DEFAULT 0"},
	{"hlas_cdrs", "callee_lost", "BIGINT NOT NULL DEFAULT 0"},
	{"hlas_cdrs", "callee_jitter_ms", "DOUBLE PRECISION NOT NULL DEFAULT 0"},
}

// counter is a count as a BIGINT column holds it: one beyond its range
// (never reached: 2^63 bytes) is kept as the largest it can hold rather
// than failing the record's whole batch.
func counter(n uint64) int64 {
	return int64(min(n, math.MaxInt64))
}

// jitter is a jitter as the tables hold it: NaN (which SQLite would
// store as NULL and then fail to read) and the infinities are 0, no
// report.
func jitter(ms float64) float64 {
	if math.IsNaN(ms) || math.IsInf(ms, 0) {
		return 0
	}
	return ms
}

// uncount is a counter read back; a negative one (written by hand) is 0.
func uncount(n int64) uint64 {
	return uint64(max(n, 0))
}

// text returns c with every string made valid UTF-8 without NUL bytes
// (a NUL or a run of invalid bytes becomes U+FFFD). Most of a record comes from the
// wire, where a peer may send any bytes; PostgreSQL refuses such text, and
// one refused record would fail its whole batch.
func (c CDR) text() CDR {
	for _, p := range []*string{&c.ID, &c.Kind, &c.Status, &c.CallID, &c.FromURI, &c.FromTag, &c.ToURI, &c.ToTag,
		&c.RequestURI, &c.Caller, &c.Callee, &c.User, &c.Source, &c.UserAgent, &c.Reason, &c.Q850Text, &c.EndedBy,
		&c.EndReason, &c.Branch, &c.BranchAddr} {
		if !utf8.ValidString(*p) || strings.IndexByte(*p, 0) >= 0 {
			*p = strings.ToValidUTF8(strings.ReplaceAll(*p, "\x00", "\uFFFD"), "\uFFFD")
		}
	}
	return c
}

func toMillis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMillis(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

// WriteCDRs implements CDRs.
func (s *sqlStore) WriteCDRs(ctx context.Context, cdrs []CDR) (err error) {
	if len(cdrs) == 0 {
		return nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return s.wrap("write cdrs", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	stmt, err := tx.PrepareContext(ctx, s.rebind(qPutCDR))
	if err != nil {
		return s.wrap("write cdrs", err)
	}
	defer stmt.Close()
	for _, c := range cdrs {
		c = c.text()
		if c.ID == "" {
			return fmt.Errorf("store: a CDR needs an ID (call %s)", c.CallID)
		}
		if _, err = stmt.ExecContext(ctx, c.ID, c.Kind, c.Status, c.CallID, c.FromURI, c.FromTag, c.ToURI, c.ToTag,
			c.RequestURI, c.Caller, c.Callee, c.User, c.Source, c.UserAgent, toMillis(c.Start), toMillis(c.Answer),
			toMillis(c.End), c.Duration.Milliseconds(), c.Code, c.Reason, c.Q850, c.Q850Text, c.EndedBy, c.EndReason,
			c.Branch, c.BranchAddr, boolInt(c.MediaRelayed), c.MediaStreams, counter(c.CallerPackets),
			counter(c.CallerBytes), counter(c.CallerDropped), c.CallerLost, jitter(c.CallerJitterMS), counter(c.CalleePackets),
			counter(c.CalleeBytes), counter(c.CalleeDropped), c.CalleeLost, jitter(c.CalleeJitterMS)); err != nil {
			return s.wrap("write cdr "+c.CallID, err)
		}
	}
	return s.wrap("write cdrs: commit", tx.Commit())
}

// CDRs implements CDRs.
func (s *sqlStore) CDRs(ctx context.Context, f CDRFilter) ([]CDR, error) {
	q := `SELECT ` + cdrCols + ` FROM hlas_cdrs WHERE 1 = 1`
	var args []any
	if !f.Since.IsZero() {
		q += ` AND start_ms >= ?`
		args = append(args, f.Since.UnixMilli())
	}
	if !f.Until.IsZero() {
		q += ` AND start_ms < ?`
		args = append(args, f.Until.UnixMilli())
	}
	if f.User != "" {
		if strings.Contains(f.User, "@") {
			q += ` AND (auth_user = ? OR caller = ? OR callee = ?)`
			args = append(args, f.User, f.User, f.User)
		} else {
			// Compared on the user part; no LIKE, whose case rules and
			// wildcards differ between the back ends.
			q += ` AND (substr(auth_user, 1, ?) = ? OR substr(caller, 1, ?) = ? OR substr(callee, 1, ?) = ?)`
			p := f.User + "@"
			n := utf8.RuneCountInString(p) // substr counts characters on both back ends
			args = append(args, n, p, n, p, n, p)
		}
	}
	if f.Status != "" {
		if code, err := strconv.Atoi(f.Status); err == nil {
			q += ` AND code = ?`
			args = append(args, code)
		} else {
			q += ` AND status = ?`
			args = append(args, f.Status)
		}
	}
	if f.Kind != "" {
		q += ` AND kind = ?`
		args = append(args, f.Kind)
	}
	q += ` ORDER BY start_ms, id`
	if f.Limit > 0 {
		q += ` LIMIT ` + strconv.Itoa(f.Limit)
	}
	rows, err := s.db.QueryContext(ctx, s.rebind(q), args...)
	if err != nil {
		return nil, s.wrap("list cdrs", err)
	}
	defer rows.Close()
	var out []CDR
	for rows.Next() {
		c, err := scanCDR(rows)
		if err != nil {
			return nil, s.wrap("list cdrs", err)
		}
		out = append(out, c)
	}
	return out, s.wrap("list cdrs", rows.Err())
}

// PurgeCDRs implements CDRs.
func (s *sqlStore) PurgeCDRs(ctx context.Context, before time.Time) (int64, error) {
	var pause time.Duration
	if s.name == "sqlite" {
		pause = sqlitePurgePause
	}
	return s.purgeCDRs(ctx, before, cdrPurgeChunk, pause)
}

// purgeCDRs deletes chunk records a statement, pausing between two.
func (s *sqlStore) purgeCDRs(ctx context.Context, before time.Time, chunk int, pause time.Duration) (int64, error) {
	q := s.rebind(qPurgeCDRs)
	var total int64
	for {
		// Autocommit: each chunk is its own transaction.
		res, err := s.db.ExecContext(ctx, q, before.UnixMilli(), chunk)
		if err != nil {
			return total, s.wrap("purge cdrs", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, s.wrap("purge cdrs", err)
		}
		total += n
		if n < int64(chunk) {
			return total, nil
		}
		if pause > 0 {
			t := time.NewTimer(pause)
			select {
			case <-ctx.Done():
				t.Stop()
				return total, s.wrap("purge cdrs", ctx.Err())
			case <-t.C:
			}
		}
	}
}

// PurgeableCDRs implements CDRs.
func (s *sqlStore) PurgeableCDRs(ctx context.Context, before time.Time) (int64, error) {
	var n int64
	err := s.db.QueryRowContext(ctx, s.rebind(qCountPurgeableCDRs), before.UnixMilli()).Scan(&n)
	return n, s.wrap("count purgeable cdrs", err)
}

func scanCDR(rows *sql.Rows) (CDR, error) {
	var c CDR
	var start, answer, end, dur, relayed int64
	var sent [2][3]int64 // packets, bytes, dropped of the caller and the callee
	err := rows.Scan(&c.ID, &c.Kind, &c.Status, &c.CallID, &c.FromURI, &c.FromTag, &c.ToURI, &c.ToTag, &c.RequestURI,
		&c.Caller, &c.Callee, &c.User, &c.Source, &c.UserAgent, &start, &answer, &end, &dur, &c.Code, &c.Reason,
		&c.Q850, &c.Q850Text, &c.EndedBy, &c.EndReason, &c.Branch, &c.BranchAddr, &relayed, &c.MediaStreams,
		&sent[0][0], &sent[0][1], &sent[0][2], &c.CallerLost, &c.CallerJitterMS,
		&sent[1][0], &sent[1][1], &sent[1][2], &c.CalleeLost, &c.CalleeJitterMS)
	c.Start, c.Answer, c.End, c.Duration = fromMillis(start), fromMillis(answer), fromMillis(end), time.Duration(dur)*time.Millisecond
	c.MediaRelayed = relayed != 0
	c.CallerPackets, c.CallerBytes, c.CallerDropped = uncount(sent[0][0]), uncount(sent[0][1]), uncount(sent[0][2])
	c.CalleePackets, c.CalleeBytes, c.CalleeDropped = uncount(sent[1][0]), uncount(sent[1][1]), uncount(sent[1][2])
	return c, err
}

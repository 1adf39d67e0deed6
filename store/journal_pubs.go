package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Publications go through the bindings' journal too (journal.go): a
// PUBLISH's 200 waits for its commit, and an SQLite UPDATE and commit
// cost tens of microseconds of CPU where an append costs about one; a
// presence server takes thousands of PUBLISHes a second. The table's
// statements checked each write's precondition (a new publication's ID
// free, a replaced or removed one still at its ETag); the owner checks
// them against what it keeps in memory of every publication in table and
// journal, its key, ETag and expiry (pubIndex), loaded at open. The
// compositor (event/publish) holds all publications in memory anyway.

// Journal op kinds of publications (after the bindings' opPut, opDel and
// opPutFlags).
const (
	opPubPut byte = 4
	opPubDel byte = 5
)

// pubKey is a publication's key in the table.
type pubKey struct{ event, resource, id string }

// tagKey finds a publication by ETag, as DeletePublication names it.
type tagKey struct{ event, resource, etag string }

// pubIndex is what the journal's owner knows of each publication in the
// table or journal: enough to check preconditions.
type pubIndex struct {
	cur   map[pubKey]pubCur
	byTag map[tagKey]string // the ID
}

type pubCur struct {
	etag      string
	expiresMs int64
}

func (x *pubIndex) set(k pubKey, c pubCur) {
	if old, ok := x.cur[k]; ok {
		delete(x.byTag, tagKey{k.event, k.resource, old.etag})
	}
	x.cur[k] = c
	x.byTag[tagKey{k.event, k.resource, c.etag}] = k.id
}

func (x *pubIndex) del(k pubKey) {
	if old, ok := x.cur[k]; ok {
		delete(x.byTag, tagKey{k.event, k.resource, old.etag})
		delete(x.cur, k)
	}
}

// pubUndo restores one entry of the index, for a batch whose append failed.
type pubUndo struct {
	k   pubKey
	had bool
	old pubCur
}

// loadPubIndex reads every publication's key, ETag and expiry from the
// table (after recovery, so the table holds all).
func (j *journaled) loadPubIndex(ctx context.Context) error {
	j.pidx = pubIndex{cur: map[pubKey]pubCur{}, byTag: map[tagKey]string{}}
	rows, err := j.db.QueryContext(ctx, `SELECT event, resource, id, etag, expires_ms FROM hlas_publications`)
	if err != nil {
		return j.wrap("publications", err)
	}
	defer rows.Close()
	for rows.Next() {
		var k pubKey
		var c pubCur
		if err := rows.Scan(&k.event, &k.resource, &k.id, &c.etag, &c.expiresMs); err != nil {
			return j.wrap("publications", err)
		}
		j.pidx.set(k, c)
	}
	return j.wrap("publications", rows.Err())
}

// WritePublications implements Publications: the owner checks each
// write's precondition against its index and appends the batch's
// changes in one write; another process writes the table.
func (j *journaled) WritePublications(ctx context.Context, ws []PublicationWrite) error {
	if !j.owner {
		return j.sqlStore.WritePublications(ctx, ws)
	}
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
	if err := ctx.Err(); err != nil {
		return j.wrap("write publications", err)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.writableLocked(); err != nil {
		return err
	}
	// Each write sees the ones before it in the batch, as the table's
	// statements in one transaction would.
	var undo []pubUndo
	change := func(k pubKey, c *pubCur) {
		old, had := j.pidx.cur[k]
		undo = append(undo, pubUndo{k, had, old})
		if c != nil {
			j.pidx.set(k, *c)
		} else {
			j.pidx.del(k)
		}
	}
	keys := make([]pubKey, len(ws)) // of the writes that pass; zero for the others
	ops := 0
	for i := range ws {
		w := &ws[i]
		p := &w.P
		w.Err = nil
		if w.Delete {
			id, ok := j.pidx.byTag[tagKey{p.Event, p.Resource, p.ETag}]
			if !ok {
				w.Err = ErrNotFound
				continue
			}
			keys[i] = pubKey{p.Event, p.Resource, id}
			change(keys[i], nil)
			ops++
			continue
		}
		k := pubKey{p.Event, p.Resource, p.ID}
		cur, ok := j.pidx.cur[k]
		switch {
		case w.Replaces == "" && ok:
			w.Err = ErrExists
			continue
		case w.Replaces != "" && (!ok || cur.etag != w.Replaces):
			w.Err = ErrNotFound
			continue
		}
		keys[i] = k
		change(k, &pubCur{etag: p.ETag, expiresMs: p.Expires.UnixMilli()})
		ops++
	}
	if ops == 0 {
		return nil
	}
	err := j.appendLocked(ops, func(b []byte) []byte {
		for i := range ws {
			switch k := keys[i]; {
			case k.event == "":
			case ws[i].Delete:
				b = append(b, opPubDel)
				b = appendString(b, k.event)
				b = appendString(b, k.resource)
				b = appendString(b, k.id)
			default:
				b = encodePubPut(b, &ws[i].P)
			}
		}
		return b
	})
	if err != nil {
		for i := len(undo) - 1; i >= 0; i-- {
			if u := undo[i]; u.had {
				j.pidx.set(u.k, u.old)
			} else {
				j.pidx.del(u.k)
			}
		}
		for i := range ws {
			ws[i].Err = nil
		}
		return err
	}
	for i := range ws {
		switch k := keys[i]; {
		case k.event == "":
		case ws[i].Delete:
			j.ppending[k] = nil
		default:
			p := msPublication(ws[i].P)
			j.ppending[k] = &p
		}
	}
	return nil
}

// msPublication is p with its times to the millisecond, as the table
// keeps them, so that the journal reads back what the table would.
func msPublication(p Publication) Publication {
	p.Created = time.UnixMilli(p.Created.UnixMilli())
	p.Updated = time.UnixMilli(p.Updated.UnixMilli())
	p.Expires = time.UnixMilli(p.Expires.UnixMilli())
	return p
}

// PutPublication implements Publications through the journal.
func (j *journaled) PutPublication(ctx context.Context, p Publication, replaces string) error {
	return putPublication(ctx, j.WritePublications, p, replaces)
}

// DeletePublication implements Publications through the journal.
func (j *journaled) DeletePublication(ctx context.Context, event, resource, etag string) error {
	return deletePublication(ctx, j.WritePublications, event, resource, etag)
}

// Publications implements Publications: the table with the journals laid
// over it.
func (j *journaled) Publications(ctx context.Context, now time.Time) ([]Publication, error) {
	if j.owner {
		over := make(map[pubKey]*Publication)
		j.mu.Lock()
		for k, p := range j.pflushing {
			over[k] = p
		}
		for k, p := range j.ppending {
			over[k] = p
		}
		j.mu.Unlock()
		return j.overlayPubs(ctx, now, over)
	}
	var out []Publication
	err := j.readThrough(func(ch *journalChanges) (err error) {
		out, err = j.overlayPubs(ctx, now, ch.pubs)
		return err
	})
	return out, err
}

// overlayPubs reads the table's live publications and lays the changes
// over them, in the table's order.
func (j *journaled) overlayPubs(ctx context.Context, now time.Time, over map[pubKey]*Publication) ([]Publication, error) {
	rows, err := j.sqlStore.Publications(ctx, now)
	if err != nil || len(over) == 0 {
		return rows, err
	}
	out := rows[:0]
	for _, p := range rows {
		if _, changed := over[pubKey{p.Event, p.Resource, p.ID}]; !changed {
			out = append(out, p)
		}
	}
	nowMs := now.UnixMilli()
	for _, p := range over {
		if p != nil && p.Expires.UnixMilli() > nowMs {
			out = append(out, *p)
		}
	}
	slices.SortFunc(out, func(a, b Publication) int {
		if c := strings.Compare(a.Event, b.Event); c != 0 {
			return c
		}
		if c := strings.Compare(a.Resource, b.Resource); c != 0 {
			return c
		}
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// PurgePublications implements Publications. The owner checkpoints first,
// so the count covers every publication that lapsed, and forgets them.
func (j *journaled) PurgePublications(ctx context.Context, now time.Time) (int64, error) {
	if !j.owner {
		return j.sqlStore.PurgePublications(ctx, now)
	}
	if err := j.checkpoint(ctx, checkpointPause); err != nil {
		return 0, err
	}
	// Under mu, so that no write checks a precondition against a row
	// the purge is taking away.
	j.mu.Lock()
	defer j.mu.Unlock()
	n, err := j.sqlStore.PurgePublications(ctx, now)
	if err != nil {
		return 0, err
	}
	nowMs := now.UnixMilli()
	for k, c := range j.pidx.cur {
		if _, journaled := j.ppending[k]; !journaled && c.expiresMs <= nowMs {
			j.pidx.del(k)
		}
	}
	return n, nil
}

// applyPubs writes journaled publication changes (nil: a delete) to the
// table, unconditionally: their preconditions were checked when they
// were journaled. Applying them twice gives the same table.
func (j *journaled) applyPubs(ctx context.Context, m map[pubKey]*Publication, pause time.Duration) error {
	keys := make([]pubKey, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	for len(keys) > 0 {
		chunk := keys[:min(len(keys), checkpointChunk)]
		keys = keys[len(chunk):]
		if err := j.applyPubChunk(ctx, m, chunk); err != nil {
			return err
		}
		if pause > 0 && len(keys) > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(pause):
			}
		}
	}
	return nil
}

const (
	qUpsertPublication = `INSERT INTO hlas_publications (` + publicationCols + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (event, resource, id) DO UPDATE SET etag = excluded.etag, content_type = excluded.content_type,
		created_ms = excluded.created_ms, updated_ms = excluded.updated_ms, expires_ms = excluded.expires_ms,
		body = excluded.body`
	qDeletePublicationByID = `DELETE FROM hlas_publications WHERE event = ? AND resource = ? AND id = ?`
)

func (j *journaled) applyPubChunk(ctx context.Context, m map[pubKey]*Publication, keys []pubKey) error {
	tx, err := j.db.BeginTx(ctx, nil)
	if err != nil {
		return j.wrap("checkpoint publications", err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit, a no-op
	for _, k := range keys {
		if p := m[k]; p != nil {
			body := p.Body
			if body == nil {
				body = []byte{}
			}
			_, err = tx.ExecContext(ctx, qUpsertPublication, p.Event, p.Resource, p.ID, p.ETag, p.ContentType,
				p.Created.UnixMilli(), p.Updated.UnixMilli(), p.Expires.UnixMilli(), body)
		} else {
			_, err = tx.ExecContext(ctx, qDeletePublicationByID, k.event, k.resource, k.id)
		}
		if err != nil {
			return j.wrap("checkpoint publications", err)
		}
	}
	return j.wrap("checkpoint publications", tx.Commit())
}

func encodePubPut(b []byte, p *Publication) []byte {
	b = append(b, opPubPut)
	for _, s := range [...]string{p.Event, p.Resource, p.ID, p.ETag, p.ContentType} {
		b = appendString(b, s)
	}
	b = binary.AppendUvarint(b, uint64(len(p.Body)))
	b = append(b, p.Body...)
	b = binary.AppendVarint(b, p.Created.UnixMilli())
	b = binary.AppendVarint(b, p.Updated.UnixMilli())
	return binary.AppendVarint(b, p.Expires.UnixMilli())
}

// decodePubOp decodes the rest of an opPubPut or opPubDel.
func decodePubOp(d *decoder, op byte) (pubKey, *Publication) {
	if op == opPubDel {
		return pubKey{d.string(), d.string(), d.string()}, nil
	}
	var p Publication
	for _, s := range [...]*string{&p.Event, &p.Resource, &p.ID, &p.ETag, &p.ContentType} {
		*s = d.string()
	}
	p.Body = []byte(d.string())
	p.Created = time.UnixMilli(d.varint())
	p.Updated = time.UnixMilli(d.varint())
	p.Expires = time.UnixMilli(d.varint())
	return pubKey{p.Event, p.Resource, p.ID}, &p
}

// errJournalUnusable is a journal that a failed write left unusable.
var errJournalUnusable = errors.New("store sqlite: journal: unusable since a failed write, until the next checkpoint")

// writableLocked reports why nothing can be appended now, if so.
func (j *journaled) writableLocked() error {
	if j.closed {
		return errors.New("store sqlite: closed")
	}
	if j.f == nil {
		return errJournalUnusable
	}
	return nil
}

// appendLocked appends one batch of n changes, written by enc, with one
// write (all or none). j.mu is held.
func (j *journaled) appendLocked(n int, enc func([]byte) []byte) error {
	b := append(j.buf[:0], 0, 0, 0, 0, 0, 0, 0, 0)
	b = binary.AppendUvarint(b, uint64(n))
	b = enc(b)
	payload := b[8:]
	binary.LittleEndian.PutUint32(b[:4], uint32(len(payload)))
	binary.LittleEndian.PutUint32(b[4:8], crcOf(payload))
	j.buf = b
	if _, err := appendFile(j.f, b); err != nil {
		// A short write (a full disk) leaves part of a batch at the end,
		// and replay stops at the first damaged batch: cut it off, or
		// append nothing more to this file (the next checkpoint starts
		// another), so that no later batch is lost behind it.
		if j.f.Truncate(j.size) != nil {
			j.f.Close()
			j.f = nil
		}
		return fmt.Errorf("store sqlite: journal: %w", err)
	}
	j.size += int64(len(b))
	if j.size >= j.limit {
		select {
		case j.kick <- struct{}{}:
		default:
		}
	}
	return nil
}

package store

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The embedded database commits binding changes to an append-only journal
// beside it, and moves them into its hlas_bindings table in large batches
// (a checkpoint). Why: a REGISTER's 200 waits for its commit, and an
// SQLite transaction costs tens of microseconds of CPU per changed row
// (B-tree pages rewritten into the WAL) while an append costs about one;
// refreshes of the same binding between two checkpoints reach the table
// once. The guarantee is SQLite's own with synchronous=NORMAL: a write
// that returned survives a crash of the process (it is in the kernel's
// page cache), not a power loss.
//
// Files, next to the database file PATH:
//
//	PATH.bindings-log     the journal being appended to
//	PATH.bindings-log.1   the previous journal, being checkpointed
//	PATH.bindings-lock    flock(2)ed by the process that owns the journal
//
// The first process to open the store owns the journal (the server, or a
// command run while the server is stopped): it replays what a crash left
// into the table, then appends. Other processes (`hlas reg list` while the
// server runs) read the table with both journals laid over it.
const (
	journalSuffix = ".bindings-log"
	lockSuffix    = ".bindings-lock"

	// DefaultCheckpointInterval is how often the journal is moved into the
	// table.
	DefaultCheckpointInterval = 10 * time.Second
	// DefaultCheckpointBytes starts a checkpoint early when the journal
	// grows past it, which bounds replay time after a crash.
	DefaultCheckpointBytes = 64 << 20

	// checkpointChunk changes go into one transaction of a checkpoint,
	// with checkpointPause between two (see apply).
	checkpointChunk = 2000
	checkpointPause = 5 * time.Millisecond
)

// journalOp kinds. opPutFlags is opPut followed by a uvarint of flags
// (putNAT): a put without flags is written as opPut, as before the flags
// existed, so a journal without them reads the same in an older release.
const (
	opPut      byte = 1
	opDel      byte = 2
	opPutFlags byte = 3
)

// Flags of opPutFlags.
const putNAT = 1 << 0

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// journaled is the SQLite store with its binding journal. Users and CDRs
// pass through to the database.
type journaled struct {
	*sqlStore
	path     string // the journal; path+".1" the one being checkpointed
	lockPath string
	lock     *os.File
	gen      uint64 // checkpoints started, kept in the lock file
	owner    bool
	every    time.Duration
	limit    int64

	ck sync.Mutex // one checkpoint at a time

	mu   sync.Mutex
	f    *os.File // nil after a failed write that could not be undone
	size int64
	buf  []byte
	// The latest change of each binding not yet in the table: the binding
	// put, or nil for a delete.
	pending  map[BindingKey]*Binding // in the journal at path
	flushing map[BindingKey]*Binding // in path.1, not yet committed to the table
	// The same for publications (journal_pubs.go), by key (nil: a
	// delete); pflushing is set when flushing is.
	ppending, pflushing map[pubKey]*Publication
	pidx                pubIndex // the owner's: every publication's ETag
	closed              bool

	stop chan struct{}
	kick chan struct{}
	wg   sync.WaitGroup
}

// openJournal lays the journal over the SQLite store at dbPath. The first
// opener takes the lock and replays any journal a crash left; later
// openers read through.
func openJournal(ctx context.Context, s *sqlStore, dbPath string, every time.Duration, limit int64) (*journaled, error) {
	j := &journaled{
		sqlStore: s, path: dbPath + journalSuffix, lockPath: dbPath + lockSuffix, every: every, limit: limit,
		pending: make(map[BindingKey]*Binding), ppending: make(map[pubKey]*Publication),
		stop: make(chan struct{}), kick: make(chan struct{}, 1),
	}
	if j.every <= 0 {
		j.every = DefaultCheckpointInterval
	}
	if j.limit <= 0 {
		j.limit = DefaultCheckpointBytes
	}
	lock, err := os.OpenFile(j.lockPath, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store sqlite: journal lock: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return j, nil // another process owns the journal: read through it
		}
		return nil, fmt.Errorf("store sqlite: journal lock: %w", err)
	}
	j.lock, j.owner = lock, true
	j.gen = j.generation()
	if err := j.recover(ctx); err != nil {
		lock.Close()
		return nil, err
	}
	if err := j.loadPubIndex(ctx); err != nil {
		lock.Close()
		return nil, err
	}
	if j.f, err = os.OpenFile(j.path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o600); err != nil {
		lock.Close()
		return nil, fmt.Errorf("store sqlite: journal: %w", err)
	}
	j.wg.Add(1)
	go j.run()
	return j, nil
}

// recover moves what a previous owner left in the journals into the table
// and removes them: the older journal first, so later changes win.
func (j *journaled) recover(ctx context.Context) error {
	merged := newJournalChanges()
	found := false
	for _, p := range []string{j.path + ".1", j.path} {
		ok, err := readJournal(p, merged)
		if err != nil {
			return err
		}
		found = found || ok
	}
	if !found {
		return nil
	}
	if err := j.apply(ctx, merged.bindings, 0); err != nil {
		return fmt.Errorf("store sqlite: replay journal: %w", err)
	}
	if err := j.applyPubs(ctx, merged.pubs, 0); err != nil {
		return fmt.Errorf("store sqlite: replay journal: %w", err)
	}
	for _, p := range []string{j.path + ".1", j.path} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("store sqlite: journal: %w", err)
		}
	}
	return nil
}

// journalChanges are the changes read from journals: the latest of each
// binding and publication (nil: a delete).
type journalChanges struct {
	bindings map[BindingKey]*Binding
	pubs     map[pubKey]*Publication
}

func newJournalChanges() *journalChanges {
	return &journalChanges{bindings: map[BindingKey]*Binding{}, pubs: map[pubKey]*Publication{}}
}

// readJournal folds the whole batches of the journal at p into m (later
// changes replace earlier ones). A batch cut short or damaged — the tail
// of a write a crash interrupted, which was never acknowledged — ends
// the reading. ok is false when there is no such file.
func readJournal(p string, m *journalChanges) (ok bool, err error) {
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("store sqlite: journal: %w", err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 64<<10)
	var hdr [8]byte
	var payload []byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return true, nil
		}
		n := binary.LittleEndian.Uint32(hdr[:4])
		if n > 1<<30 {
			return true, nil
		}
		payload = slices.Grow(payload[:0], int(n))[:n]
		if _, err := io.ReadFull(r, payload); err != nil {
			return true, nil
		}
		if crcOf(payload) != binary.LittleEndian.Uint32(hdr[4:]) {
			return true, nil
		}
		if err := decodeBatch(payload, m); err != nil {
			return true, nil
		}
	}
}

// WriteBindings commits the changes by appending one batch to the journal
// (one write: all or none, RFC 3261 §10.3).
func (j *journaled) WriteBindings(ctx context.Context, put []Binding, del []BindingKey) error {
	if len(put) == 0 && len(del) == 0 {
		return nil
	}
	if !j.owner {
		return j.sqlStore.WriteBindings(ctx, put, del)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.writableLocked(); err != nil {
		return err
	}
	err := j.appendLocked(len(put)+len(del), func(b []byte) []byte {
		for i := range del {
			b = append(b, opDel)
			b = appendString(b, del[i].AOR)
			b = appendString(b, del[i].ID)
		}
		for i := range put {
			b = encodePut(b, &put[i])
		}
		return b
	})
	if err != nil {
		return err
	}
	for i := range del {
		j.pending[del[i]] = nil
	}
	for i := range put {
		p := put[i]
		p.Expires, p.Updated = time.Unix(p.Expires.Unix(), 0), time.Unix(p.Updated.Unix(), 0)
		j.pending[BindingKey{AOR: p.AOR, ID: p.ID}] = &p
	}
	return nil
}

// QuickWrites implements QuickWriter: the owner's writes are appends.
func (j *journaled) QuickWrites() bool { return j.owner }

// run checkpoints every interval and when the journal grows past its
// limit. A failure is retried next time; PurgeBindings, which the
// registrar calls every minute, checkpoints too and reports it.
func (j *journaled) run() {
	defer j.wg.Done()
	t := time.NewTicker(j.every)
	defer t.Stop()
	for {
		select {
		case <-j.stop:
			return
		case <-t.C:
		case <-j.kick:
		}
		_ = j.checkpoint(context.Background(), checkpointPause)
	}
}

// checkpoint moves the journal's changes into the table: the journal is
// renamed aside and a fresh one started (appends go on meanwhile; this
// also ends a journal left unusable by a failed write), the changes are
// written (apply), then the old file is removed.
// A failure leaves the old file and its changes to be retried first next
// time.
func (j *journaled) checkpoint(ctx context.Context, pause time.Duration) error {
	j.ck.Lock()
	defer j.ck.Unlock()
	j.mu.Lock()
	if j.flushing == nil {
		if len(j.pending) == 0 && len(j.ppending) == 0 && j.f != nil {
			j.mu.Unlock()
			return nil
		}
		j.gen++
		var g [8]byte
		binary.LittleEndian.PutUint64(g[:], j.gen)
		if _, err := j.lock.WriteAt(g[:], 0); err != nil {
			j.mu.Unlock()
			return fmt.Errorf("store sqlite: journal lock: %w", err)
		}
		if err := os.Rename(j.path, j.path+".1"); err != nil {
			j.mu.Unlock()
			return fmt.Errorf("store sqlite: journal: %w", err)
		}
		nf, err := os.OpenFile(j.path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o600)
		if err != nil {
			// Keep appending to the file we have, under its name.
			_ = os.Rename(j.path+".1", j.path)
			j.mu.Unlock()
			return fmt.Errorf("store sqlite: journal: %w", err)
		}
		j.f.Close()
		j.f, j.size = nf, 0
		j.flushing, j.pending = j.pending, make(map[BindingKey]*Binding, len(j.pending))
		j.pflushing, j.ppending = j.ppending, make(map[pubKey]*Publication, len(j.ppending))
	}
	snap, psnap := j.flushing, j.pflushing
	j.mu.Unlock()

	if err := j.apply(ctx, snap, pause); err != nil {
		return err
	}
	if err := j.applyPubs(ctx, psnap, pause); err != nil {
		return err
	}
	if err := os.Remove(j.path + ".1"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("store sqlite: journal: %w", err)
	}
	j.mu.Lock()
	j.flushing, j.pflushing = nil, nil
	j.mu.Unlock()
	return nil
}

// apply writes changes (nil: a delete) to the table. A large set goes in
// transactions of checkpointChunk changes with a pause between them, so that a checkpoint after a burst of new
// registrations does not hold a CPU for seconds while REGISTERs wait
// (pause 0: at start and at Close, when nothing waits). Applying a set
// twice, or part of it and then all of it, gives the same table: a
// failure part way is retried whole.
func (j *journaled) apply(ctx context.Context, m map[BindingKey]*Binding, pause time.Duration) error {
	if len(m) == 0 {
		return nil
	}
	put := make([]Binding, 0, min(len(m), checkpointChunk))
	var del []BindingKey
	flush := func() error {
		if err := j.sqlStore.WriteBindings(ctx, put, del); err != nil {
			return err
		}
		put, del = put[:0], del[:0]
		if pause > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(pause):
			}
		}
		return nil
	}
	for k, c := range m {
		if c != nil {
			put = append(put, *c)
		} else {
			del = append(del, k)
		}
		if len(put)+len(del) >= checkpointChunk {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if len(put)+len(del) == 0 {
		return nil
	}
	return j.sqlStore.WriteBindings(ctx, put, del)
}

// Bindings implements Bindings: the table with the journals laid over it.
func (j *journaled) Bindings(ctx context.Context, aor string, now time.Time) ([]Binding, error) {
	if j.owner {
		over := make(map[BindingKey]*Binding)
		j.mu.Lock()
		for k, c := range j.flushing {
			over[k] = c
		}
		for k, c := range j.pending {
			over[k] = c
		}
		j.mu.Unlock()
		return j.overlay(ctx, aor, now, over)
	}
	var out []Binding
	err := j.readThrough(func(ch *journalChanges) (err error) {
		out, err = j.overlay(ctx, aor, now, ch.bindings)
		return err
	})
	return out, err
}

// readThrough reads both journals of the process that owns them and
// hands their changes to read, which lays them over the table. The
// owner's checkpoints rename the journal aside between our reads of the
// files at times; the generation it writes into the lock file first
// tells us to read again.
func (j *journaled) readThrough(read func(*journalChanges) error) error {
	for try := 0; ; try++ {
		gen := j.generation()
		ch := newJournalChanges()
		for _, p := range []string{j.path + ".1", j.path} {
			if _, err := readJournal(p, ch); err != nil {
				return err
			}
		}
		if err := read(ch); err != nil || j.generation() == gen || try == 9 {
			return err
		}
	}
}

// generation reads the checkpoint count the owner keeps in the lock file.
func (j *journaled) generation() uint64 {
	b, err := os.ReadFile(j.lockPath)
	if err != nil || len(b) < 8 {
		return 0
	}
	return binary.LittleEndian.Uint64(b)
}

// overlay reads the table's bindings and lays the changes over them.
func (j *journaled) overlay(ctx context.Context, aor string, now time.Time, over map[BindingKey]*Binding) ([]Binding, error) {
	rows, err := j.sqlStore.Bindings(ctx, aor, now)
	if err != nil {
		return nil, err
	}
	if len(over) == 0 {
		return rows, nil
	}
	out := rows[:0]
	for _, b := range rows {
		if _, changed := over[BindingKey{AOR: b.AOR, ID: b.ID}]; !changed {
			out = append(out, b)
		}
	}
	for _, c := range over {
		if c != nil && (aor == "" || c.AOR == aor) && c.Expires.Unix() > now.Unix() {
			out = append(out, *c)
		}
	}
	slices.SortFunc(out, func(a, b Binding) int {
		if c := strings.Compare(a.AOR, b.AOR); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// PurgeBindings implements Bindings. The owner checkpoints first, so the
// count covers every binding that lapsed.
func (j *journaled) PurgeBindings(ctx context.Context, now time.Time) (int64, error) {
	if j.owner {
		if err := j.checkpoint(ctx, checkpointPause); err != nil {
			return 0, err
		}
	}
	return j.sqlStore.PurgeBindings(ctx, now)
}

// Close checkpoints what is left, so a clean stop leaves no journal, and
// closes the database.
func (j *journaled) Close() error {
	var err error
	if j.owner {
		j.mu.Lock()
		already := j.closed
		j.closed = true
		j.mu.Unlock()
		if !already {
			close(j.stop)
			j.wg.Wait()
			err = j.checkpoint(context.Background(), 0)
			j.mu.Lock()
			j.f.Close()
			j.mu.Unlock()
			if err == nil {
				_ = os.Remove(j.path)
			}
			j.lock.Close()
		}
	}
	return errors.Join(err, j.sqlStore.Close())
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func encodePut(b []byte, p *Binding) []byte {
	var flags uint64
	if p.NAT {
		flags |= putNAT
	}
	op := opPut
	if flags != 0 {
		op = opPutFlags
	}
	b = append(b, op)
	for _, s := range [...]string{p.AOR, p.ID, p.Contact, p.CallID, p.Path, p.Instance, p.Source, p.Local, p.Transport, p.UserAgent} {
		b = appendString(b, s)
	}
	b = binary.AppendVarint(b, int64(p.Q))
	b = binary.AppendVarint(b, p.Expires.Unix())
	b = binary.AppendUvarint(b, uint64(p.CSeq))
	b = binary.AppendVarint(b, int64(p.RegID))
	b = binary.AppendVarint(b, p.Updated.Unix())
	if op == opPutFlags {
		b = binary.AppendUvarint(b, flags)
	}
	return b
}

var errBadJournal = errors.New("store sqlite: damaged journal batch")

// decodeBatch folds one batch into m. The whole batch is decoded before
// any of it is applied, so a damaged one changes nothing.
func decodeBatch(p []byte, m *journalChanges) error {
	d := decoder{b: p}
	n := d.uvarint()
	if d.err != nil || n > uint64(len(p)) {
		return errBadJournal
	}
	keys := make([]BindingKey, 0, n)
	chs := make([]*Binding, 0, n)
	var pkeys []pubKey
	var pchs []*Publication
	for range n {
		switch op := d.byte(); op {
		case opPubPut, opPubDel:
			k, p := decodePubOp(&d, op)
			pkeys, pchs = append(pkeys, k), append(pchs, p)
		case opDel:
			k := BindingKey{AOR: d.string(), ID: d.string()}
			keys, chs = append(keys, k), append(chs, nil)
		case opPut, opPutFlags:
			var b Binding
			for _, s := range [...]*string{&b.AOR, &b.ID, &b.Contact, &b.CallID, &b.Path, &b.Instance, &b.Source, &b.Local, &b.Transport, &b.UserAgent} {
				*s = d.string()
			}
			b.Q = int(d.varint())
			b.Expires = time.Unix(d.varint(), 0)
			b.CSeq = uint32(d.uvarint())
			b.RegID = int(d.varint())
			b.Updated = time.Unix(d.varint(), 0)
			if op == opPutFlags {
				b.NAT = d.uvarint()&putNAT != 0
			}
			keys, chs = append(keys, BindingKey{AOR: b.AOR, ID: b.ID}), append(chs, &b)
		default:
			return errBadJournal
		}
		if d.err != nil {
			return errBadJournal
		}
	}
	if len(d.b) != 0 {
		return errBadJournal
	}
	for i, k := range keys {
		m.bindings[k] = chs[i]
	}
	for i, k := range pkeys {
		m.pubs[k] = pchs[i]
	}
	return nil
}

func crcOf(p []byte) uint32 { return crc32.Checksum(p, crcTable) }

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) byte() byte {
	if len(d.b) == 0 {
		d.err = errBadJournal
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errBadJournal
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errBadJournal
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.b)) {
		d.err = errBadJournal
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

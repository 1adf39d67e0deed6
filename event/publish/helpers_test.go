package publish

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hlas-voip/hlas/store"
)

const pidf = "application/pidf+xml"

// pidfCodec accepts a body that begins "<presence" — enough to tell a
// valid document from an invalid one without a PIDF parser.
type pidfCodec struct{}

func (pidfCodec) ContentTypes() []string { return []string{pidf} }
func (pidfCodec) Validate(ct string, body []byte) error {
	if !bytes.HasPrefix(body, []byte("<presence")) {
		return errors.New("not a PIDF document")
	}
	return nil
}

type dialogCodec struct{}

func (dialogCodec) ContentTypes() []string        { return []string{"application/dialog-info+xml"} }
func (dialogCodec) Validate(string, []byte) error { return nil }

func codecs() map[string]Codec {
	return map[string]Codec{"presence": pidfCodec{}, "dialog": dialogCodec{}}
}

// clock is a settable Env.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Unix(1_800_000_000, 0)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// memStore is store.Publications in memory, with the SQL back ends'
// semantics (store/publications_test.go checks those): rows keyed by
// event, resource and ID, a batch applied whole or not at all. It has
// hooks to fail or watch writes.
type memStore struct {
	mu   sync.Mutex
	rows map[[3]string]store.Publication
	// fail, when set, is returned by the next writes; failOnce by the
	// next batch to start after it is set only.
	fail, failOnce error
	// onWrite runs before each batch is applied, outside the lock;
	// onBatch after each batch is applied, with its size, under it.
	onWrite func()
	onBatch func(n int)
	// writes counts the writes applied and batches the batches.
	writes, batches int
}

func newMemStore() *memStore { return &memStore{rows: make(map[[3]string]store.Publication)} }

func (m *memStore) PutPublication(ctx context.Context, p store.Publication, replaces string) error {
	ws := []store.PublicationWrite{{P: p, Replaces: replaces}}
	if err := m.WritePublications(ctx, ws); err != nil {
		return err
	}
	return ws[0].Err
}

func (m *memStore) DeletePublication(ctx context.Context, event, resource, etag string) error {
	ws := []store.PublicationWrite{{P: store.Publication{Event: event, Resource: resource, ETag: etag}, Delete: true}}
	if err := m.WritePublications(ctx, ws); err != nil {
		return err
	}
	return ws[0].Err
}

func (m *memStore) WritePublications(_ context.Context, ws []store.PublicationWrite) error {
	m.mu.Lock()
	failOnce := m.failOnce
	m.failOnce = nil
	m.mu.Unlock()
	if f := m.hook(); f != nil {
		f()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if failOnce != nil {
		return failOnce
	}
	if m.fail != nil {
		return m.fail
	}
	m.batches++
	if m.onBatch != nil {
		defer m.onBatch(len(ws))
	}
	for i := range ws {
		w := &ws[i]
		p := w.P
		p.Body = slices.Clone(p.Body)
		k := [3]string{p.Event, p.Resource, p.ID}
		w.Err = nil
		m.writes++
		switch {
		case w.Delete:
			w.Err = store.ErrNotFound
			for k, row := range m.rows {
				if k[0] == p.Event && k[1] == p.Resource && row.ETag == p.ETag {
					delete(m.rows, k)
					w.Err = nil
				}
			}
		case w.Replaces == "":
			if _, ok := m.rows[k]; ok {
				w.Err = store.ErrExists
			} else {
				m.rows[k] = p
			}
		default:
			if old, ok := m.rows[k]; !ok || old.ETag != w.Replaces {
				w.Err = fmt.Errorf("%w: %s", store.ErrNotFound, w.Replaces)
			} else {
				m.rows[k] = p
			}
		}
	}
	return nil
}

func (m *memStore) Publications(_ context.Context, now time.Time) ([]store.Publication, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []store.Publication
	for _, p := range m.rows {
		if p.Expires.UnixMilli() > now.UnixMilli() {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b store.Publication) int {
		return cmpJoin(strings.Compare(a.Event, b.Event), strings.Compare(a.Resource, b.Resource),
			a.Created.Compare(b.Created), strings.Compare(a.ID, b.ID))
	})
	return out, nil
}

func (m *memStore) PurgePublications(_ context.Context, now time.Time) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var n int64
	for k, p := range m.rows {
		if p.Expires.UnixMilli() <= now.UnixMilli() {
			delete(m.rows, k)
			n++
		}
	}
	return n, nil
}

func (m *memStore) hook() func() {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.onWrite
}

func (m *memStore) etags() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, p := range m.rows {
		out = append(out, p.ETag)
	}
	slices.Sort(out)
	return out
}

func cmpJoin(cs ...int) int {
	for _, c := range cs {
		if c != 0 {
			return c
		}
	}
	return 0
}

// newState returns a State on a test clock; st may be nil.
func newState(t testing.TB, cfg Config, st store.Publications, c *clock) *State {
	t.Helper()
	env := Env{Now: c.Now, Logger: slog.New(slog.DiscardHandler)}
	if st != nil {
		env.Store = st
	}
	s, err := New(cfg, env, codecs())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func initial(resource, body string, expires int) Request {
	return Request{Event: "presence", Resource: resource, Expires: expires, ContentType: pidf, Body: []byte(body)}
}

func refresh(resource, etag string, expires int) Request {
	return Request{Event: "presence", Resource: resource, IfMatch: etag, Expires: expires}
}

func modify(resource, etag, body string, expires int) Request {
	return Request{Event: "presence", Resource: resource, IfMatch: etag, Expires: expires, ContentType: pidf, Body: []byte(body)}
}

// mustOK publishes r and fails the test unless it got a 200.
func mustOK(t testing.TB, s *State, r Request) Result {
	t.Helper()
	res := s.Publish(context.Background(), r)
	if res.Code != 200 {
		t.Fatalf("Publish(%+v) = %+v, want 200", r, res)
	}
	return res
}

// etagsOf returns the ETags of the current publications of resource.
func etagsOf(s *State, resource string) []string {
	var out []string
	for _, p := range s.Current("presence", resource) {
		out = append(out, p.ETag)
	}
	return out
}

// memEtags returns every ETag State holds, sorted.
func memEtags(s *State) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, r := range s.res {
		for _, e := range r.pubs {
			out = append(out, e.p.ETag)
		}
	}
	slices.Sort(out)
	return out
}

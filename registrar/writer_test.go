package registrar

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/store"
)

// quickStore is a binding store that says its writes are quick, records
// them in order, and can hold a write to let others queue behind it or
// fail writes as a full disk would.
type quickStore struct {
	mu      sync.Mutex
	writes  [][]store.Binding
	hold    chan struct{} // when set, the next write waits on it
	holding chan struct{} // when set, closed once the held write has begun
	fail    error         // when set, writes fail with it and record nothing
}

func (q *quickStore) QuickWrites() bool { return true }
func (q *quickStore) WriteBindings(_ context.Context, put []store.Binding, _ []store.BindingKey) error {
	q.mu.Lock()
	hold, holding := q.hold, q.holding
	q.hold, q.holding = nil, nil
	q.mu.Unlock()
	if hold != nil {
		if holding != nil {
			close(holding)
		}
		<-hold
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.fail != nil {
		return q.fail
	}
	q.writes = append(q.writes, append([]store.Binding(nil), put...))
	return nil
}

func (q *quickStore) setFail(err error) {
	q.mu.Lock()
	q.fail = err
	q.mu.Unlock()
}
func (q *quickStore) Bindings(context.Context, string, time.Time) ([]store.Binding, error) {
	return nil, nil
}
func (q *quickStore) PurgeBindings(context.Context, time.Time) (int64, error) { return 0, nil }

// With a quick store the REGISTER's own goroutine commits and answers:
// the 200 is there when ServeRegister returns.
func TestQuickStoreAnswersInPlace(t *testing.T) {
	st := &quickStore{}
	f := newFixture(t, st, nil)
	tx := newTx()
	f.r.ServeRegister(context.Background(), tx, f.request(t, reg{contacts: []string{"<sip:a@198.51.100.7>"}}, 1))
	select {
	case <-tx.sent:
	default:
		t.Fatal("no 200 when ServeRegister returned")
	}
	if len(st.writes) != 1 {
		t.Fatalf("%d writes", len(st.writes))
	}
}

// REGISTERs that queue while another goroutine writes are all written,
// in the order they were made, and all answered: none waits for a later
// REGISTER to carry it.
func TestQuickStoreQueuedBehindAWrite(t *testing.T) {
	st := &quickStore{hold: make(chan struct{}), holding: make(chan struct{})}
	release, holding := st.hold, st.holding
	f := newFixture(t, st, nil)
	first := newTx()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.r.ServeRegister(context.Background(), first, f.request(t, reg{contacts: []string{"<sip:a@198.51.100.7>"}}, 1))
	}()
	select {
	case <-holding: // the first REGISTER's goroutine holds busy
	case <-time.After(5 * time.Second):
		t.Fatal("the first REGISTER did not start writing")
	}
	var txs []*fakeTx
	for i := 2; i <= 6; i++ {
		tx := newTx()
		txs = append(txs, tx)
		f.r.ServeRegister(context.Background(), tx, f.request(t, reg{contacts: []string{"<sip:a@198.51.100.7>"}}, uint32(i)))
	}
	close(release)
	<-done
	first.wait(t)
	for i, tx := range txs {
		if res := tx.wait(t); res.StatusCode != 200 {
			t.Fatalf("REGISTER %d: %d", i+2, res.StatusCode)
		}
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	var seqs []uint32
	for _, w := range st.writes {
		for _, b := range w {
			seqs = append(seqs, b.CSeq)
		}
	}
	if fmt.Sprint(seqs[len(seqs)-1]) != "6" || seqs[0] != 1 {
		t.Errorf("written CSeqs %v: want 1 first and 6 last", seqs)
	}
	for i := 1; i < len(seqs); i++ {
		if seqs[i] <= seqs[i-1] {
			t.Errorf("written out of order: %v", seqs)
		}
	}
}

// A write to a quick store that fails (a full disk) fails the REGISTERs of
// its batch with 500 and Retry-After (RFC 3261 §10.3), answered as in
// place as a commit would be; those queued behind a failing write by other
// goroutines get theirs too, and once the store recovers the next REGISTER
// is written and answered 200: a failure does not leave busy held.
func TestQuickStoreFailureAnswers500(t *testing.T) {
	st := &quickStore{fail: errors.New("disk full")}
	f := newFixture(t, st, nil)
	want500 := func(res *sip.Response) {
		t.Helper()
		if res.StatusCode != 500 || res.Get("Retry-After") == "" {
			t.Fatalf("got %d, want 500 with Retry-After:\n%s", res.StatusCode, res)
		}
	}

	tx := newTx()
	f.r.ServeRegister(context.Background(), tx, f.request(t, reg{contacts: []string{"<sip:a@198.51.100.7>"}}, 1))
	select {
	case <-tx.sent:
	default:
		t.Fatal("no answer when ServeRegister returned")
	}
	want500(tx.res[0])

	// Behind a held write that fails.
	st.mu.Lock()
	st.hold, st.holding = make(chan struct{}), make(chan struct{})
	release, holding := st.hold, st.holding
	st.mu.Unlock()
	first := newTx()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.r.ServeRegister(context.Background(), first, f.request(t, reg{contacts: []string{"<sip:a@198.51.100.7>"}}, 2))
	}()
	select {
	case <-holding:
	case <-time.After(5 * time.Second):
		t.Fatal("the held REGISTER did not start writing")
	}
	var txs []*fakeTx
	for i := 3; i <= 5; i++ {
		tx := newTx()
		txs = append(txs, tx)
		f.r.ServeRegister(context.Background(), tx, f.request(t, reg{to: fmt.Sprintf("sip:u%d@example.test", i), contacts: []string{"<sip:a@198.51.100.7>"}}, 1))
	}
	close(release)
	<-done
	want500(first.wait(t))
	for _, tx := range txs {
		want500(tx.wait(t))
	}
	if got := testutil.ToFloat64(f.r.met.storeErrors); got < 3 {
		t.Errorf("store_errors_total = %v, want a failed write counted for each batch (at least 3)", got)
	}

	st.setFail(nil)
	tx = newTx()
	f.r.ServeRegister(context.Background(), tx, f.request(t, reg{contacts: []string{"<sip:a@198.51.100.7>"}}, 6))
	if res := tx.wait(t); res.StatusCode != 200 {
		t.Fatalf("after the store recovered: %d, want 200", res.StatusCode)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.writes) != 1 || len(st.writes[0]) != 1 || st.writes[0][0].CSeq != 6 {
		t.Errorf("writes %+v, want the one of CSeq 6", st.writes)
	}
}

package registrar

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hlas-voip/hlas/store"
)

// quickStore is a binding store that says its writes are quick, records
// them in order, and can hold a write to let others queue behind it.
type quickStore struct {
	mu     sync.Mutex
	writes [][]store.Binding
	hold   chan struct{} // when set, the next write waits on it
}

func (q *quickStore) QuickWrites() bool { return true }
func (q *quickStore) WriteBindings(_ context.Context, put []store.Binding, _ []store.BindingKey) error {
	q.mu.Lock()
	hold := q.hold
	q.hold = nil
	q.mu.Unlock()
	if hold != nil {
		<-hold
	}
	q.mu.Lock()
	q.writes = append(q.writes, append([]store.Binding(nil), put...))
	q.mu.Unlock()
	return nil
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
	st := &quickStore{hold: make(chan struct{})}
	release := st.hold
	f := newFixture(t, st, nil)
	first := newTx()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.r.ServeRegister(context.Background(), first, f.request(t, reg{contacts: []string{"<sip:a@198.51.100.7>"}}, 1))
	}()
	// Wait until the first write holds busy.
	for deadline := time.Now().Add(5 * time.Second); !f.r.w.busy.Load(); {
		if time.Now().After(deadline) {
			t.Fatal("the first REGISTER did not start writing")
		}
		time.Sleep(time.Millisecond)
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

package transaction

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestClientTableModel runs random adds, removes and lookups against a
// map. Hashes are taken from a few values on purpose, so that keys
// collide, probe chains run long and wrap around the end of the table,
// and deletions must shift entries back for lookups to find them.
func TestClientTableModel(t *testing.T) {
	for seed := range uint64(20) {
		r := rand.New(rand.NewPCG(seed, 7))
		tab := newClientTable()
		model := map[clientKey]*ClientTx{}
		var live []*ClientTx
		spread := uint64(1 + r.IntN(200)) // distinct hash values
		hashOf := func(k clientKey) uint64 {
			v := (uint64(len(k.branch))*2654435761 + uint64(k.branch[len(k.branch)-1])*40503 + uint64(k.method[0])) % spread
			if v == 0 {
				return ^uint64(0) // the last slot: its chain wraps
			}
			return v*0x9E3779B97F4A7C15 | 1
		}
		key := func() clientKey {
			m := "NOTIFY"
			if r.IntN(4) == 0 {
				m = "INVITE"
			}
			return clientKey{fmt.Sprintf("z9hG4bK%d", r.IntN(3000)), m}
		}
		for op := range 20000 {
			switch n := r.IntN(10); {
			case n < 5: // add
				tx := &ClientTx{key: key()}
				tx.h = hashOf(tx.key)
				_, dup := model[tx.key]
				if got := tab.add(tx); got == dup {
					t.Fatalf("seed %d op %d: add %v = %v, key already present: %v", seed, op, tx.key, got, dup)
				}
				if !dup {
					model[tx.key] = tx
					live = append(live, tx)
				}
			case n < 8 && len(live) > 0: // remove one that is in
				i := r.IntN(len(live))
				tx := live[i]
				live[i] = live[len(live)-1]
				live = live[:len(live)-1]
				delete(model, tx.key)
				tab.remove(tx)
			case n < 9: // remove one that is not (a twin of a live key)
				k := key()
				twin := &ClientTx{key: k, h: hashOf(k)}
				tab.remove(twin)
			default:
				k := key()
				if got := tab.get(k, hashOf(k)); got != model[k] {
					t.Fatalf("seed %d op %d: get %v = %p, want %p", seed, op, k, got, model[k])
				}
			}
			if tab.n != len(model) {
				t.Fatalf("seed %d op %d: n %d, want %d", seed, op, tab.n, len(model))
			}
			if op%97 == 0 {
				for k, tx := range model {
					if got := tab.get(k, tx.h); got != tx {
						t.Fatalf("seed %d op %d: get %v = %p, want %p", seed, op, k, got, tx)
					}
				}
			}
		}
		// Emptied, it shrinks back and still works.
		for _, tx := range live {
			tab.remove(tx)
		}
		if tab.n != 0 || len(tab.slots) != minClientSlots {
			t.Fatalf("seed %d: emptied: n %d, %d slots, want 0 and %d", seed, tab.n, len(tab.slots), minClientSlots)
		}
	}
}

// TestClientTableHash: an INVITE and the CANCEL for it share the branch
// and still differ, and the hash is never the empty slot's mark.
func TestClientTableHash(t *testing.T) {
	tab := newClientTable()
	inv, can := clientKey{"z9hG4bKx", "INVITE"}, clientKey{"z9hG4bKx", "CANCEL"}
	if tab.hash(inv) == tab.hash(can) {
		t.Error("INVITE and CANCEL of one branch hash alike")
	}
	for i := range 1000 {
		if tab.hash(clientKey{fmt.Sprint(i), ""}) == 0 {
			t.Fatal("hash 0")
		}
	}
	a, b := &ClientTx{key: inv, h: tab.hash(inv)}, &ClientTx{key: can, h: tab.hash(can)}
	if !tab.add(a) || !tab.add(b) || tab.add(&ClientTx{key: inv, h: tab.hash(inv)}) {
		t.Fatal("add")
	}
	if tab.get(inv, tab.hash(inv)) != a || tab.get(can, tab.hash(can)) != b {
		t.Fatal("get")
	}
}

// BenchmarkClientTableChurn is the NOTIFY server's use of the table:
// 50 000 live transactions (5 s of Timer K at 10 000/s), each op one
// add, one response's lookup and the removal of the oldest.
func BenchmarkClientTableChurn(b *testing.B) {
	const live = 50000
	tab := newClientTable()
	txs := make([]*ClientTx, 4*live)
	for i := range txs {
		k := clientKey{fmt.Sprintf("z9hG4bKhlp%x.%d", uint64(i)*0x9E3779B97F4A7C15, i), "NOTIFY"}
		txs[i] = &ClientTx{key: k, h: tab.hash(k)}
	}
	for _, tx := range txs[:live] {
		tab.add(tx)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		tx := txs[(i+live)%len(txs)]
		tab.add(tx)
		old := txs[(i+live/2)%len(txs)]
		if tab.get(old.key, tab.hash(old.key)) != old {
			b.Fatal("lost")
		}
		tab.remove(txs[i%len(txs)])
	}
}

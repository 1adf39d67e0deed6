package transaction

import "hash/maphash"

// clientTable is the client transactions by key: an open-addressing
// table with linear probing over (hash, transaction) pairs, deleted from
// by shifting back (no tombstones).
//
// It replaces a map[clientKey]*ClientTx because of how a server sending
// NOTIFYs uses it: 10 000 transactions a second each inserted, matched
// once and deleted 5 s later (Timer K), so 50 000 live in a table much
// larger than the cache. A Go map compares string keys by reading their
// bytes from each request (a cache miss per probe), and a delete leaves
// a tombstone that later lookups probe past until the next rehash; here
// a probe compares the 64-bit hash held in the slot, only a matching
// hash reads the transaction's key, and a delete by transaction compares
// pointers only, without reading the key at all.
type clientTable struct {
	seed  maphash.Seed
	slots []clientSlot // len is a power of two, or 0
	n     int
}

type clientSlot struct {
	h  uint64 // 0: empty
	tx *ClientTx
}

// minClientSlots is the smallest table, and the one it shrinks to.
const minClientSlots = 64

func newClientTable() clientTable {
	return clientTable{seed: maphash.MakeSeed()}
}

// hash returns k's hash, never 0 (the empty slot's mark). The seed is
// the instance's own, so that no one can pick branches that collide.
func (t *clientTable) hash(k clientKey) uint64 {
	h := maphash.String(t.seed, k.branch)
	// The method only tells an INVITE from the CANCEL for it (same
	// branch); its first byte and length do, and the key comparison
	// settles any other case.
	if k.method != "" {
		h ^= uint64(k.method[0])<<56 ^ uint64(len(k.method))<<48
	}
	return h | 1
}

// get returns the transaction under k (of hash h), or nil.
func (t *clientTable) get(k clientKey, h uint64) *ClientTx {
	if t.n == 0 {
		return nil
	}
	mask := uint64(len(t.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		s := &t.slots[i]
		if s.h == 0 {
			return nil
		}
		if s.h == h && s.tx.key == k {
			return s.tx
		}
	}
}

// add puts tx (its key and hash set) in the table, unless a transaction
// of the same key is there: then it returns false and changes nothing.
func (t *clientTable) add(tx *ClientTx) bool {
	if (t.n+1)*2 > len(t.slots) {
		t.resize(max(minClientSlots, 2*len(t.slots)))
	}
	mask := uint64(len(t.slots) - 1)
	for i := tx.h & mask; ; i = (i + 1) & mask {
		s := &t.slots[i]
		if s.h == 0 {
			*s = clientSlot{tx.h, tx}
			t.n++
			return true
		}
		if s.h == tx.h && s.tx.key == tx.key {
			return false
		}
	}
}

// remove takes tx out of the table if it is there.
func (t *clientTable) remove(tx *ClientTx) {
	if t.n == 0 {
		return
	}
	mask := uint64(len(t.slots) - 1)
	i := tx.h & mask
	for ; t.slots[i].tx != tx; i = (i + 1) & mask {
		if t.slots[i].h == 0 {
			return
		}
	}
	// Shift back the entries after i whose probe sequence passes over i,
	// so that no lookup stops at the hole before reaching them.
	for j := i; ; {
		j = (j + 1) & mask
		s := t.slots[j]
		if s.h == 0 {
			break
		}
		home := s.h & mask
		// The entry at j stays if its home lies cyclically in (i, j].
		if i <= j {
			if i < home && home <= j {
				continue
			}
		} else if i < home || home <= j {
			continue
		}
		t.slots[i] = s
		i = j
	}
	t.slots[i] = clientSlot{}
	t.n--
	// Give back what a burst grew, with room for the next one.
	if len(t.slots) > minClientSlots && t.n*8 < len(t.slots) {
		t.resize(len(t.slots) / 2)
	}
}

// resize moves the entries into a table of size slots.
func (t *clientTable) resize(size int) {
	old := t.slots
	t.slots = make([]clientSlot, size)
	mask := uint64(size - 1)
	for _, s := range old {
		if s.h == 0 {
			continue
		}
		i := s.h & mask
		for t.slots[i].h != 0 {
			i = (i + 1) & mask
		}
		t.slots[i] = s
	}
}

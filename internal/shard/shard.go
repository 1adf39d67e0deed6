// Package shard maps a key (a Call-ID) to one of n workers, so that every
// message of a call is handled by the same worker, in order. The server
// and the user agent share it.
package shard

// Of returns the worker for key among n (n > 0): FNV-1a of the key, as
// hash/fnv's New32a computes it, without allocating on every message.
func Of(key string, n int) int {
	h := uint32(2166136261)
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= 16777619
	}
	return int(h % uint32(n))
}

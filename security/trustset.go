package security

import (
	"net/netip"
	"slices"
	"sync/atomic"
)

// TrustSet is a set of trusted networks that can be replaced while it is
// read (a configuration reload): readers see the old set or the new one,
// never a mix, and pay one atomic load.
type TrustSet struct {
	ps atomic.Pointer[[]netip.Prefix]
}

// NewTrustSet returns a set of prefixes (as TrustedPrefixes returns them).
func NewTrustSet(prefixes []netip.Prefix) *TrustSet {
	t := &TrustSet{}
	t.Set(prefixes)
	return t
}

// Set replaces the prefixes.
func (t *TrustSet) Set(prefixes []netip.Prefix) {
	ps := slices.Clone(prefixes)
	t.ps.Store(&ps)
}

// Contains reports whether some prefix covers ip (IPv4-mapped addresses
// count as IPv4).
func (t *TrustSet) Contains(ip netip.Addr) bool {
	ip = ip.Unmap().WithZone("")
	for _, p := range *t.ps.Load() {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

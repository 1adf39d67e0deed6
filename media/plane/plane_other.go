//go:build !linux

package plane

import (
	"errors"
	"net/netip"
)

// errUnsupported is New's answer where there is no epoll.
var errUnsupported = errors.New("plane: the media relay's data plane needs Linux")

// Plane relays the RTP and RTCP of linked legs; Linux only.
type Plane struct{}

// New returns an error: the data plane is built on epoll and recvmmsg.
func New(cfg Config) (*Plane, error) {
	if _, err := cfg.withDefaults(1); err != nil {
		return nil, err
	}
	return nil, errUnsupported
}

// Close does nothing.
func (p *Plane) Close() error { return nil }

// Allocate fails: there are no legs without Linux.
func (p *Plane) Allocate(addr netip.Addr) (*Leg, error) { return nil, errUnsupported }

// Leg is one side of one media stream; Linux only.
type Leg struct{}

// Addr is the RTP socket's address.
func (l *Leg) Addr() netip.AddrPort { return netip.AddrPort{} }

// SetPeer sets the party's signalled addresses.
func (l *Leg) SetPeer(rtp, rtcp netip.AddrPort, mux bool) {}

// SetClockRate sets the RTP clock rate jitter is counted in.
func (l *Leg) SetClockRate(hz int) {}

// Link makes a and b partners.
func Link(a, b *Leg) {}

// SetSecure tells s it is detached: there are no legs without Linux.
func (l *Leg) SetSecure(s Secure) {
	if s != nil {
		s.Detached()
	}
}

// RestartICE does nothing.
func (l *Leg) RestartICE() {}

// Selected returns no address.
func (l *Leg) Selected() (netip.AddrPort, bool) { return netip.AddrPort{}, false }

// Send fails: there are no legs without Linux.
func (l *Leg) Send(b []byte) error { return errUnsupported }

// Stats returns what the leg saw of its party.
func (l *Leg) Stats() LegStats { return LegStats{} }

// Close releases the leg.
func (l *Leg) Close() {}

// Kernel reports false: there is no kernel path without Linux.
func (p *Plane) Kernel() bool { return false }

// kernel is the kernel path, which exists on Linux only.
type kernel struct{}

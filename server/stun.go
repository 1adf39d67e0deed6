package server

import (
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"strings"

	"github.com/hlas-voip/hlas/sip/transport"
	"github.com/hlas-voip/hlas/stund"
)

// STUNConfig configures the STUN server (RFC 8489 Binding; package
// stund), which tells a client behind NAT the address and port its
// packets come from. See docs/stun.md.
type STUNConfig struct {
	// Enabled turns STUN on. Default true; false answers STUN nowhere.
	Enabled *bool `yaml:"enabled"`
	// Listen lists dedicated STUN sockets as udp:host:port (IPv6 hosts in
	// brackets). Default: port 3478 (RFC 8489 §9) on the host of each UDP
	// SIP listener, or an ephemeral port when that listener's port is 0.
	// A default socket that cannot be bound (another STUN server, or
	// another hlas, has the port) is logged as a warning and skipped; an
	// explicit one that cannot be bound stops the server from starting.
	// [none] opens no dedicated socket.
	Listen []string `yaml:"listen"`
	// OnSIPPorts answers STUN on the SIP UDP listeners too, told apart
	// from SIP by their first bytes (RFC 7983 §7), for clients that
	// check their mapping on their SIP flow (RFC 5626 §4.4.2). Default
	// true.
	OnSIPPorts *bool `yaml:"on_sip_ports"`
	// Rate is how many STUN datagrams per second one source (an IPv4
	// address or an IPv6 /64) may send, on all ports together; the excess
	// is dropped silently and counted. Default 20.
	Rate float64 `yaml:"rate"`
	// Burst is how many a source may send at once after a quiet spell.
	// Default twice Rate.
	Burst int `yaml:"burst"`
}

// DefaultSTUNPort is the port of the default dedicated STUN sockets.
const DefaultSTUNPort = 3478

// stunNone is the Listen entry that opens no dedicated socket.
const stunNone = "none"

// On reports whether STUN is enabled.
func (c STUNConfig) On() bool { return c.Enabled == nil || *c.Enabled }

// onSIPPorts reports whether the SIP UDP listeners answer STUN.
func (c STUNConfig) onSIPPorts() bool { return c.OnSIPPorts == nil || *c.OnSIPPorts }

// validate checks the STUN section.
func (c STUNConfig) validate() error {
	if c.Rate < 0 || math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0) {
		return fmt.Errorf("config stun.rate %v: want a positive number of requests per second", c.Rate)
	}
	if c.Burst < 0 {
		return fmt.Errorf("config stun.burst %d: must not be negative", c.Burst)
	}
	_, _, err := c.listeners(nil)
	return err
}

// listeners returns the dedicated sockets to open as host:port, and
// whether they were configured (a failure to bind one is then fatal) or
// are the defaults derived from the SIP listeners sip.
func (c STUNConfig) listeners(sip []Listener) (addrs []string, explicit bool, err error) {
	var entries []string
	for _, entry := range c.Listen {
		for _, e := range strings.Split(entry, ",") {
			if e = strings.TrimSpace(e); e != "" {
				entries = append(entries, e)
			}
		}
	}
	if len(entries) > 0 {
		if len(entries) == 1 && strings.EqualFold(entries[0], stunNone) {
			return nil, true, nil
		}
		for _, e := range entries {
			l, err := ParseListener(e)
			if err != nil || l.Proto != "udp" {
				return nil, false, fmt.Errorf("config stun.listen %q: want udp:host:port, or none alone", e)
			}
			addrs = append(addrs, l.Addr)
		}
		return addrs, true, nil
	}
	// Defaults: one socket per host of the SIP UDP listeners; a wildcard
	// socket covers the specific addresses of its family.
	var hosts []netip.AddrPort
	wild := map[bool]bool{} // by "is IPv4"
	for _, l := range sip {
		if l.Proto != "udp" {
			continue
		}
		ap, err := netip.ParseAddrPort(l.Addr)
		if err != nil {
			continue
		}
		port := uint16(DefaultSTUNPort)
		if ap.Port() == 0 {
			port = 0
		}
		a := netip.AddrPortFrom(ap.Addr().Unmap(), port)
		if a.Addr().IsUnspecified() {
			wild[a.Addr().Is4()] = true
		}
		hosts = append(hosts, a)
	}
	seen := map[netip.AddrPort]bool{}
	for _, a := range hosts {
		if seen[a] || wild[a.Addr().Is4()] && !a.Addr().IsUnspecified() || sipUDPOn(sip, a) {
			continue
		}
		seen[a] = true
		addrs = append(addrs, a.String())
	}
	return addrs, false, nil
}

// sipUDPOn reports whether a SIP UDP listener is bound to a itself (it
// then answers STUN there already).
func sipUDPOn(sip []Listener, a netip.AddrPort) bool {
	for _, l := range sip {
		if ap, err := netip.ParseAddrPort(l.Addr); err == nil && l.Proto == "udp" && a.Port() != 0 &&
			netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()) == a {
			return true
		}
	}
	return false
}

// newSTUN builds the STUN server when STUN is on, registers its metrics,
// and hooks it to the SIP UDP listeners in tcfg unless on_sip_ports is
// false. New calls it before it builds the transport.
func (s *Server) newSTUN(tcfg *transport.Config, log *slog.Logger) {
	c := s.cfg.STUN
	if !c.On() {
		return
	}
	s.stun = stund.New(stund.Config{Rate: c.Rate, Burst: c.Burst, Logger: log})
	s.reg.MustRegister(s.stun)
	if c.onSIPPorts() {
		tcfg.STUN = s.stun.Answer
	}
}

// startSTUN opens the dedicated STUN sockets; Start calls it once the SIP
// listeners are bound.
func (s *Server) startSTUN(sip []Listener) error {
	if s.stun == nil {
		return nil
	}
	addrs, explicit, err := s.cfg.STUN.listeners(sip)
	if err != nil {
		return err
	}
	for _, a := range addrs {
		if _, err := s.stun.Listen(a); err != nil {
			if explicit {
				return fmt.Errorf("stun.listen udp:%s: %w", a, err)
			}
			// Another STUN server (or another hlas on this host) may
			// well hold the well-known port: STUN on the SIP ports
			// still works, so this is not worth refusing to start.
			s.log.Warn("default STUN listener not opened; set stun.listen to choose another", "addr", a, "err", err)
		}
	}
	return nil
}

// closeSTUN closes the dedicated STUN sockets.
func (s *Server) closeSTUN() error {
	if s.stun == nil {
		return nil
	}
	if err := s.stun.Close(); err != nil {
		return fmt.Errorf("stun: %w", err)
	}
	return nil
}

// STUNAddrs returns the bound dedicated STUN sockets (not the SIP UDP
// listeners, which answer STUN too unless stun.on_sip_ports is false).
func (s *Server) STUNAddrs() []netip.AddrPort {
	if s.stun == nil {
		return nil
	}
	return s.stun.Addrs()
}

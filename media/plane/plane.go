// Package plane is the data plane of hlas's built-in media relay (the role
// of rtpproxy or rtpengine): pairs of UDP sockets ("legs") that take the
// RTP and RTCP one party of a call sends and forward it, untouched, out of
// the partner leg's sockets to the other party.
//
// A small fixed set of reader goroutines serves every socket: each owns an
// epoll instance over non-blocking sockets and reads them with recvmmsg,
// forwarding each batch with sendmmsg from the partner's socket. Nothing
// is allocated per forwarded packet. A leg learns where its party really
// sends from (symmetric latching, RFC 7362) and refuses other sources once
// latched. Linux only: elsewhere New returns an error.
//
// A leg facing a WebRTC party terminates its secure transport through a
// Secure (media/webrtc: ICE-lite and DTLS-SRTP): the plane demultiplexes
// STUN, DTLS and SRTP on the leg's port, lets ICE checks take the place
// of latching, decrypts in place what it forwards from that party and
// encrypts in place what it forwards to it, so that the partner leg's
// party (a desk phone) sees plain RTP.
//
// Once a leg has latched onto its party's RTP source, and the partner
// leg has a destination, the plane can hand that flow to the kernel: a
// tcx program (bpf/forward.c) at the ingress of the host's interfaces
// rewrites each such datagram to what the partner's socket would send
// and passes it straight to the egress interface, so a forwarded packet
// costs no system call and no wake-up. The userspace plane stays the
// authority: it writes a table entry only for the exact flow (leg
// address and port, latched source) it would forward itself, changes it
// when a latch, a signalled address or a link changes, and removes it
// before a leg closes. Everything the entry does not match (strangers,
// RTCP, IPv6, WebRTC legs, fragments) still reaches the leg's socket.
//
// The session glue (media/relay) allocates two legs per stream, links
// them, and sets each leg's peer from the SDP its party sent.
package plane

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/pion/rtcp"
	"github.com/prometheus/client_golang/prometheus"
)

// Defaults of Config.
const (
	DefaultPortMin     = 30000
	DefaultPortMax     = 39999
	DefaultLatchWindow = 3 * time.Second
)

// Values of Config.Kernel.
const (
	KernelAuto = "auto"
	KernelOn   = "on"
	KernelOff  = "off"
)

// ErrClosed is returned by Allocate after Plane.Close.
var ErrClosed = errors.New("plane: closed")

// Config configures a Plane; the zero value of each field is its
// documented default. The YAML keys are those of the media: section.
type Config struct {
	// PortMin and PortMax bound the inclusive UDP port range the legs
	// take their ports from: RTP on an even port, RTCP on the odd one
	// after it, so the range holds (PortMax-PortMin+1)/2 legs, whatever
	// the local address. Default 30000-39999 (5000 legs, 2500 calls).
	PortMin int `yaml:"port_min"`
	PortMax int `yaml:"port_max"`
	// Readers is the number of reader goroutines (each with its own epoll
	// set); the legs are spread over them round-robin. Default
	// runtime.GOMAXPROCS(0).
	Readers int `yaml:"readers"`
	// LatchWindow is how long after SetPeer, or after the first packet of
	// a flow that had none, the leg follows a new source address of its
	// party (RFC 7362 latching). After it, packets from any other source
	// are dropped as strangers, except from the signalled address when it
	// is public. Short windows resist hijacking (RTP bleed); the window
	// must cover the party's first packets. Default 3s, as rtpengine's.
	LatchWindow time.Duration `yaml:"latch_window"`
	// Kernel chooses the kernel fast path for latched RTP (a tcx BPF
	// program, Linux 6.6 or later, CAP_BPF and CAP_NET_ADMIN): "auto"
	// (the default) uses it where it loads and relays in userspace
	// otherwise, "on" refuses to start without it, "off" never uses it.
	// The userspace plane decides every flow either way; see the
	// package comment.
	Kernel string `yaml:"kernel"`
	// loadKernel replaces the kernel path's loader in tests.
	loadKernel func(legs int) (*kernel, error)
	// Logger gets the plane's records; nil discards them.
	Logger *slog.Logger `yaml:"-"`
	// Registerer takes the metrics (namespace hlas, subsystem media);
	// nil registers none.
	Registerer prometheus.Registerer `yaml:"-"`
}

// withDefaults validates c and fills in its defaults; errors name the
// YAML key.
// Validate reports the first field New would refuse, naming its key, so
// that a configuration is checked before anything is started.
func (c Config) Validate() error {
	_, err := c.withDefaults(1)
	return err
}

func (c Config) withDefaults(procs int) (Config, error) {
	if c.PortMin == 0 && c.PortMax == 0 {
		c.PortMin, c.PortMax = DefaultPortMin, DefaultPortMax
	}
	if c.PortMin < 1 || c.PortMin > 65535 {
		return c, fmt.Errorf("plane: port_min %d out of 1-65535", c.PortMin)
	}
	if c.PortMax < 1 || c.PortMax > 65535 {
		return c, fmt.Errorf("plane: port_max %d out of 1-65535", c.PortMax)
	}
	if pairs(c.PortMin, c.PortMax) < 1 {
		return c, fmt.Errorf("plane: port_min %d to port_max %d holds no even/odd port pair", c.PortMin, c.PortMax)
	}
	switch {
	case c.Readers < 0:
		return c, fmt.Errorf("plane: readers %d is negative", c.Readers)
	case c.Readers == 0:
		c.Readers = max(procs, 1)
	}
	switch {
	case c.LatchWindow < 0:
		return c, fmt.Errorf("plane: latch_window %v is negative", c.LatchWindow)
	case c.LatchWindow == 0:
		c.LatchWindow = DefaultLatchWindow
	}
	switch c.Kernel {
	case "":
		c.Kernel = KernelAuto
	case KernelAuto, KernelOn, KernelOff:
	default:
		return c, fmt.Errorf("plane: kernel %q is not auto, on or off", c.Kernel)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// firstPort is the first even port at or above min.
func firstPort(min int) int { return min + min%2 }

// pairs is how many RTP/RTCP port pairs [min, max] holds.
func pairs(min, max int) int {
	if n := (max - firstPort(min) + 1) / 2; n > 0 {
		return n
	}
	return 0
}

// LegStats is what one leg saw of its party.
type LegStats struct {
	// Packets and Bytes were received from the leg's party and forwarded
	// to the other party (RTP and RTCP).
	Packets, Bytes uint64
	// Dropped counts packets that arrived at the leg and were not
	// forwarded: from strangers (RFC 7362 §3), with no partner leg, with
	// no destination known for the other party (hold), too big, or
	// refused by the kernel on sending; on a leg with a Secure also
	// refused STUN, SRTP failing authentication, and media before the
	// keys. STUN and DTLS the Secure handled count neither as forwarded
	// nor as dropped.
	Dropped uint64
	// Lost (cumulative packets lost) and JitterMS (interarrival jitter in
	// milliseconds, at the clock rate of SetClockRate) are from the latest
	// RTCP sender or receiver report of the leg's party: what it receives
	// from the other party. Zero when none was seen (also with SRTP passed
	// through, whose reports are encrypted; a leg with a Secure reads them
	// decrypted).
	Lost     int64
	JitterMS float64
	// Last is when the latest packet from the party was accepted; zero if
	// none was.
	Last time.Time
}

// isRTCP tells RTCP from RTP on a muxed port (RFC 5761 §4): RTCP packet
// types 192-223 fall where RTP has marker bit and payload type 64-95,
// which RTP must not use.
func isRTCP(b []byte) bool { return len(b) >= 2 && b[1] >= 192 && b[1] <= 223 }

// public reports whether a is an address a party can be reached on from
// anywhere: only such a signalled address is trusted for latching back
// after the window (a private or loopback one may name another host
// behind the relay's own network).
func public(a netip.Addr) bool { return a.IsGlobalUnicast() && !a.IsPrivate() }

// usable reports whether packets can be sent to ap: an unspecified
// address (c=0.0.0.0, hold) or port 0 (a rejected stream) names no one.
func usable(ap netip.AddrPort) bool {
	return ap.IsValid() && ap.Port() != 0 && !ap.Addr().IsUnspecified()
}

// flow is where one of a party's flows (its RTP, or its RTCP on the
// leg's RTCP port) comes from.
type flow struct {
	// src is the latched source; invalid while nothing was accepted since
	// the signalled address last changed.
	src netip.AddrPort
	// until ends the latch window, in nanoseconds of the plane's
	// monotonic clock.
	until int64
}

// accept decides whether a packet from src at time now belongs to the
// party whose signalled address for this flow is sig, latching onto src
// when it may (RFC 7362 §4). other is the address the leg's other flow
// (RTCP for RTP, RTP for RTCP) is latched on, if it is.
//   - The latched source is always accepted.
//   - The signalled address, when public, is always the party: it takes
//     the latch back from whoever holds it.
//   - Inside the window the latch follows a new source, unless it sits on
//     the signalled address itself (the best evidence there is).
//   - A flow with nothing latched yet latches onto its first packet after
//     the window too (a party that starts late, RTCP that starts seconds
//     after RTP), if it comes from the host the other flow is latched on;
//     that opens a window of its own.
//   - Anyone else is a stranger.
//
// moved reports that the latch changed.
func (f *flow) accept(src, sig netip.AddrPort, other netip.Addr, now, window int64) (ok, moved bool) {
	inWindow := now < f.until
	switch {
	case src == f.src:
		return true, false
	case src == sig && public(sig.Addr()):
	case inWindow && (!f.src.IsValid() || f.src != sig):
	case !inWindow && !f.src.IsValid() && (!other.IsValid() || other == src.Addr()):
		f.until = now + window
	default:
		return false, false
	}
	f.src = src
	return true, true
}

// dest is where to send the party's flow: the latched source, else the
// signalled address; invalid when neither is usable.
func (f *flow) dest(sig netip.AddrPort) netip.AddrPort {
	if f.src.IsValid() {
		return f.src
	}
	if usable(sig) {
		return sig
	}
	return netip.AddrPort{}
}

// rtcpPeer is the RTCP address implied by the signalled ones: RTCP is
// RTP's port + 1 unless a=rtcp says otherwise (RFC 3605).
func rtcpPeer(rtp, rtcp netip.AddrPort) netip.AddrPort {
	if rtcp.IsValid() {
		return netip.AddrPortFrom(rtcp.Addr().Unmap(), rtcp.Port())
	}
	if !rtp.IsValid() || rtp.Port() == 0 || rtp.Port() == 65535 {
		return netip.AddrPortFrom(rtp.Addr().Unmap(), 0)
	}
	return netip.AddrPortFrom(rtp.Addr().Unmap(), rtp.Port()+1)
}

// report holds the first reception report block of an RTCP compound
// packet (in an SR or RR, RFC 3550 §6.4).
type report struct {
	lost   int64  // cumulative number of packets lost, sign-extended from 24 bits
	jitter uint32 // interarrival jitter in timestamp units
}

// parseReport reads the first reception report of an RTCP compound
// packet. It allocates (pion/rtcp), which is why it runs only for RTCP,
// a few packets per stream and 5 s.
func parseReport(b []byte) (report, bool) {
	pkts, err := rtcp.Unmarshal(b)
	if err != nil {
		return report{}, false
	}
	for _, pk := range pkts {
		var rr []rtcp.ReceptionReport
		switch r := pk.(type) {
		case *rtcp.SenderReport:
			rr = r.Reports
		case *rtcp.ReceiverReport:
			rr = r.Reports
		}
		if len(rr) > 0 {
			lost := int64(rr[0].TotalLost & 0xffffff)
			if lost&0x800000 != 0 {
				lost -= 1 << 24
			}
			return report{lost: lost, jitter: rr[0].Jitter}, true
		}
	}
	return report{}, false
}

// jitterMS converts jitter in timestamp units at hz to milliseconds.
func jitterMS(jitter uint32, hz int) float64 {
	if hz <= 0 {
		hz = 8000
	}
	return float64(jitter) * 1000 / float64(hz)
}

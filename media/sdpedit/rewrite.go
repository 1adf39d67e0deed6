package sdpedit

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
)

// ErrEndpoint is a Rewrite refused for its endpoints, not for the
// description: a fault of the caller, not of the party that sent the SDP.
var ErrEndpoint = errors.New("sdpedit: bad relay endpoint")

// Endpoint is where the relay receives one stream, as the other party
// must see it.
type Endpoint struct {
	// Addr is the relay's address. The zero Addr (not valid) leaves the
	// m-line exactly as it was: that stream is not relayed. It must not
	// be unspecified or carry a zone; an IPv4-mapped one is written as
	// IPv4.
	Addr netip.Addr
	// RTP is the relay's port for the stream, 1-65535. RTCP is its RTCP
	// port; 0 means RTP+1 (RFC 3550 §11). Equal to RTP when the relay
	// muxes RTP and RTCP (RFC 5761).
	RTP, RTCP int
}

// plan is what Rewrite writes for one stream.
type plan struct {
	relayed bool
	addr    netip.Addr // for c= and a=rtcp: the relay's, or unspecified on hold
	rtp     int
	rtcp    int
}

// Rewrite returns the description with the relay's endpoints in place of
// the party's, eps[i] for Streams[i] (len(eps) must equal len(Streams)).
// A stream with the zero endpoint, and every disabled stream (port 0,
// whatever its endpoint), keeps its m-line as it was. For each relayed
// stream:
//   - the m= port becomes RTP (a /<number of ports> is dropped: the relay
//     gives one port pair);
//   - its c= carries the relay's address, or the unspecified address of
//     that family if the stream was on hold (c=0.0.0.0), so the hold
//     stays; a stream that used the session-level c= gets its own c=
//     when that one no longer says its address;
//   - an a=rtcp becomes a=rtcp:<RTCP> IN IP4|IP6 <address>; without one
//     in the input, one is added only when RTCP is not RTP+1 (RFC 3605);
//   - the ICE attributes are removed (RFC 8839 §5: candidate,
//     remote-candidates, end-of-candidates, ice-ufrag, ice-pwd,
//     ice-options, ice-lite, ice-mismatch, ice-pacing), as they are
//     from the session level: the relay answers without ICE.
//
// A session-level c= takes the address of the first relayed stream, and
// a stream in use that is not relayed and relied on the old one gets it
// as its own c=, so its meaning stays (likewise the session-level ICE
// credentials for such a stream with candidates). The o= address becomes
// the first relayed endpoint's; username, session id and version stay,
// so the version still grows exactly when the party's does (RFC 3264 §8)
// and the same input and endpoints give the same bytes. Every other line
// passes unchanged and in order; line ends become CRLF.
func (d *Description) Rewrite(eps []Endpoint) ([]byte, error) {
	if len(eps) != len(d.media) {
		return nil, fmt.Errorf("%w: %d endpoints for %d streams", ErrEndpoint, len(eps), len(d.media))
	}
	var plans [MaxStreams]plan
	p := plans[:len(eps)]
	first := -1
	var origin netip.Addr
	for i, ep := range eps {
		if !ep.Addr.IsValid() || !d.media[i].live {
			continue
		}
		a := ep.Addr.Unmap()
		if a.IsUnspecified() || a.Zone() != "" {
			return nil, fmt.Errorf("%w: stream %d: address %s", ErrEndpoint, i, ep.Addr)
		}
		rtcp := ep.RTCP
		if rtcp == 0 {
			rtcp = ep.RTP + 1
		}
		if ep.RTP < 1 || ep.RTP > 65535 || rtcp < 1 || rtcp > 65535 {
			return nil, fmt.Errorf("%w: stream %d: ports %d/%d", ErrEndpoint, i, ep.RTP, ep.RTCP)
		}
		w := a
		if d.media[i].hold {
			w = unspecified(a)
		}
		p[i] = plan{relayed: true, addr: w, rtp: ep.RTP, rtcp: rtcp}
		if first < 0 {
			first, origin = i, a
		}
	}

	out := make([]byte, 0, len(d.text)+2*len(d.lines)+64)
	if first < 0 {
		for i := range d.lines {
			out = d.appendLine(out, i)
		}
		return out, nil
	}

	// The session-level c= moves to the first relayed stream; whoever
	// relied on the old one is told it explicitly.
	sessConn := -1
	sessChanged := false
	for i := 0; i < d.sessionEnd(); i++ {
		if d.lines[i].kind == kSessConn {
			sessConn = i
			old := d.line(i)
			var buf [64]byte
			sessChanged = string(appendConn(buf[:0], p[first].addr)) != old
		}
	}

	for i := 0; i < d.sessionEnd(); i++ {
		switch d.lines[i].kind {
		case kOrigin:
			l := d.line(i)
			out = append(out, l[:d.verEnd]...)
			out = append(out, " IN "...)
			out = appendFamilyAddr(out, origin)
			out = append(out, "\r\n"...)
		case kSessConn:
			out = appendConn(out, p[first].addr)
			out = append(out, "\r\n"...)
		case kICE, kICECred:
		default:
			out = d.appendLine(out, i)
		}
	}

	for si := range d.media {
		sec := &d.media[si]
		pl := &p[si]
		if !pl.relayed {
			out = d.appendKept(out, sec, sessConn, sessChanged)
			continue
		}
		ml := d.line(sec.start)
		out = append(out, ml[:sec.portStart]...)
		out = strconv.AppendInt(out, int64(pl.rtp), 10)
		out = append(out, ml[sec.portEnd:]...)
		out = append(out, "\r\n"...)
		i := sec.start + 1
		for ; i < sec.end && d.line(i)[0] == 'i'; i++ {
			out = d.appendLine(out, i)
		}
		if !sec.hasConn && pl.addr != p[first].addr {
			out = appendConn(out, pl.addr)
			out = append(out, "\r\n"...)
		}
		for ; i < sec.end; i++ {
			switch d.lines[i].kind {
			case kConn:
				out = appendConn(out, pl.addr)
				out = append(out, "\r\n"...)
			case kRTCP:
				out = appendRTCP(out, pl.rtcp, pl.addr)
			case kICE:
			default:
				out = d.appendLine(out, i)
			}
		}
		if !sec.hasRTCP && pl.rtcp != pl.rtp+1 {
			out = appendRTCP(out, pl.rtcp, pl.addr)
		}
	}
	return out, nil
}

// appendKept writes a section that is not relayed: as it was, plus what
// it took from the session level that the rewrite changed.
func (d *Description) appendKept(out []byte, sec *section, sessConn int, sessChanged bool) []byte {
	out = d.appendLine(out, sec.start)
	i := sec.start + 1
	for ; i < sec.end && d.line(i)[0] == 'i'; i++ {
		out = d.appendLine(out, i)
	}
	// A disabled stream's address means nothing, and repeating the
	// party's address there would only show it to the other side.
	if sec.live && !sec.hasConn && sessChanged {
		out = d.appendLine(out, sessConn)
	}
	for ; i < sec.end; i++ {
		out = d.appendLine(out, i)
	}
	if sec.live && sec.hasCand && d.sessICE {
		for j := 0; j < d.sessionEnd(); j++ {
			if d.lines[j].kind != kICECred {
				continue
			}
			name, _ := attr(d.line(j))
			if name == "ice-ufrag" && !sec.hasUfrag || name == "ice-pwd" && !sec.hasPwd ||
				name == "ice-options" && !sec.hasOptions {
				out = d.appendLine(out, j)
			}
		}
	}
	return out
}

// sessionEnd is the index of the first m= line.
func (d *Description) sessionEnd() int {
	if len(d.media) == 0 {
		return len(d.lines)
	}
	return d.media[0].start
}

func (d *Description) appendLine(out []byte, i int) []byte {
	out = append(out, d.line(i)...)
	return append(out, "\r\n"...)
}

// appendConn writes c=IN IP4|IP6 <a> without the line end.
func appendConn(out []byte, a netip.Addr) []byte {
	out = append(out, "c=IN "...)
	return appendFamilyAddr(out, a)
}

// appendRTCP writes a=rtcp:<port> IN IP4|IP6 <a> (RFC 3605 §2.1).
func appendRTCP(out []byte, port int, a netip.Addr) []byte {
	out = append(out, "a=rtcp:"...)
	out = strconv.AppendInt(out, int64(port), 10)
	out = append(out, " IN "...)
	out = appendFamilyAddr(out, a)
	return append(out, "\r\n"...)
}

// appendFamilyAddr writes <addrtype> <address> (a unmapped already).
func appendFamilyAddr(out []byte, a netip.Addr) []byte {
	if a.Is4() {
		out = append(out, "IP4 "...)
	} else {
		out = append(out, "IP6 "...)
	}
	return a.AppendTo(out)
}

func unspecified(a netip.Addr) netip.Addr {
	if a.Is4() {
		return netip.IPv4Unspecified()
	}
	return netip.IPv6Unspecified()
}

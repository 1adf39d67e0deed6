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

// plan is what Rewrite or Convert writes for one stream.
type plan struct {
	relayed bool
	addr    netip.Addr // for c= and a=rtcp: the relay's, or unspecified on hold
	rtp     int
	rtcp    int
	// to is the receiver's profile (Keep: the stream's own); off writes
	// the stream disabled, br is its Bridge.
	to  Profile
	off bool
	br  *Bridge
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
	return d.write(eps, nil)
}

// write is Rewrite, and Convert when bs is not nil.
func (d *Description) write(eps []Endpoint, bs []Bridge) ([]byte, error) {
	if len(eps) != len(d.media) || bs != nil && len(bs) != len(d.media) {
		return nil, fmt.Errorf("%w: %d endpoints and %d bridges for %d streams", ErrEndpoint, len(eps), len(bs), len(d.media))
	}
	var plans [MaxStreams]plan
	p := plans[:len(eps)]
	first := -1
	var origin netip.Addr
	// toPlain and toWebRTC: some stream is converted (or disabled for
	// it); lite: some stream is relayed to a browser.
	var toPlain, toWebRTC, lite bool
	for i, ep := range eps {
		var br *Bridge
		if bs != nil && bs[i].To != Keep {
			br = &bs[i]
			switch br.To {
			case Plain:
				toPlain = true
			case WebRTC:
				toWebRTC = true
			default:
				return nil, fmt.Errorf("%w: stream %d: profile %d", ErrEndpoint, i, br.To)
			}
			if !d.media[i].live || !d.Bridgeable(i, br.To) {
				if br.Mid != "" && !token(br.Mid, 64) {
					return nil, fmt.Errorf("%w: stream %d: mid %q", ErrEndpoint, i, br.Mid)
				}
				p[i] = plan{to: br.To, off: true, br: br}
				continue
			}
			if !ep.Addr.IsValid() {
				return nil, fmt.Errorf("%w: stream %d: converted without a relay endpoint", ErrEndpoint, i)
			}
			if err := br.check(); err != nil {
				return nil, fmt.Errorf("%w: stream %d: %v", ErrEndpoint, i, err)
			}
		}
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
		pl := plan{relayed: true, rtp: ep.RTP, rtcp: rtcp}
		if br != nil {
			// The far end of a converted stream needs the relay's real
			// address: a WebRTC sender's 0.0.0.0 is no hold, and a
			// browser finds the relay by ICE whatever c= says.
			pl.to, pl.br = br.To, br
			if br.To == WebRTC {
				pl.rtcp = ep.RTP // rtcp-mux, which browsers require (RFC 8829 §4.1.1)
				lite = true
			}
		} else if d.media[i].hold {
			w = unspecified(a)
		}
		pl.addr = w
		p[i] = pl
		if first < 0 {
			first, origin = i, a
		}
	}
	conv := toPlain || toWebRTC

	out := make([]byte, 0, len(d.text)+2*len(d.lines)+64+len(d.media)*bridgeExtra(toWebRTC))
	if first < 0 && !conv {
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
			if first >= 0 {
				old := d.line(i)
				var buf [64]byte
				sessChanged = string(appendConn(buf[:0], p[first].addr)) != old
			}
		}
	}

	for i := 0; i < d.sessionEnd(); i++ {
		switch k := d.lines[i].kind; {
		case k == kOrigin && first >= 0:
			l := d.line(i)
			out = append(out, l[:d.verEnd]...)
			out = append(out, " IN "...)
			out = appendFamilyAddr(out, origin)
			out = append(out, "\r\n"...)
		case k == kSessConn && first >= 0:
			out = appendConn(out, p[first].addr)
			out = append(out, "\r\n"...)
		case k == kICE || k == kICECred:
		case conv && (k == kDTLS || k == kGroup):
			// Towards a phone there is no DTLS and no BUNDLE; towards a
			// browser the relay writes its own per m-line and declines
			// BUNDLE, which RFC 8843 §7.3.3 allows: each m-line keeps its
			// own transport.
		case toPlain && k == kWeb:
		default:
			out = d.appendLine(out, i)
		}
	}
	if lite {
		// The relay is an ICE-lite agent (RFC 8445 §2.5): it answers the
		// browser's checks and makes none.
		out = append(out, "a=ice-lite\r\n"...)
		for i := range p {
			if pl := &p[i]; pl.relayed && pl.to == WebRTC && pl.br.Bundle && pl.br.Mid != "" {
				out = appendAttr(out, "group", "BUNDLE "+pl.br.Mid)
			}
		}
	}

	for si := range d.media {
		sec := &d.media[si]
		pl := &p[si]
		switch {
		case pl.off:
			out = d.appendOff(out, sec, pl)
		case !pl.relayed:
			out = d.appendKept(out, sec, sessConn, sessChanged, conv)
		default:
			out = d.appendRelayed(out, sec, pl, p[first].addr)
		}
	}
	return out, nil
}

// appendRelayed writes a relayed section (see Rewrite and Convert).
func (d *Description) appendRelayed(out []byte, sec *section, pl *plan, sessAddr netip.Addr) []byte {
	ml := d.line(sec.start)
	out = append(out, ml[:sec.portStart]...)
	out = strconv.AppendInt(out, int64(pl.rtp), 10)
	if pl.to == Keep {
		out = append(out, ml[sec.portEnd:]...)
	} else {
		out = append(out, ml[sec.portEnd:sec.protoStart]...)
		out = append(out, pl.to.proto()...)
		out = append(out, ml[sec.protoEnd:]...)
	}
	out = append(out, "\r\n"...)
	i := sec.start + 1
	for ; i < sec.end && d.line(i)[0] == 'i'; i++ {
		out = d.appendLine(out, i)
	}
	if !sec.hasConn && pl.addr != sessAddr {
		out = appendConn(out, pl.addr)
		out = append(out, "\r\n"...)
	}
	conv := pl.to != Keep
	for ; i < sec.end; i++ {
		switch k := d.lines[i].kind; {
		case k == kConn:
			out = appendConn(out, pl.addr)
			out = append(out, "\r\n"...)
		case k == kRTCP && pl.to == WebRTC:
			// Muxed: RTCP is on the RTP port.
		case k == kRTCP:
			out = appendRTCP(out, pl.rtcp, pl.addr)
		case k == kICE:
		case conv && (k == kDTLS || k == kMid || k == kMux || k == kCrypto || k == kGroup):
		case pl.to == Plain && k == kWeb:
		default:
			out = d.appendLine(out, i)
		}
	}
	if pl.to != WebRTC && !sec.hasRTCP && pl.rtcp != pl.rtp+1 {
		out = appendRTCP(out, pl.rtcp, pl.addr)
	}
	if pl.to == WebRTC {
		out = pl.br.appendWebRTC(out, pl.addr, pl.rtp)
	}
	return out
}

// appendOff writes a section a conversion cannot carry, or one its
// sender disabled, as a disabled m-line (RFC 3264 §8.2): port 0, the
// receiver's proto for an RTP stream, nothing of the sender's but a c=
// with no address in it, and the a=mid a browser matches m-lines by.
func (d *Description) appendOff(out []byte, sec *section, pl *plan) []byte {
	ml := d.line(sec.start)
	out = append(out, ml[:sec.portStart]...)
	out = append(out, '0')
	if rtpProto(ml[sec.protoStart:sec.protoEnd]) {
		out = append(out, ml[sec.portEnd:sec.protoStart]...)
		out = append(out, pl.to.proto()...)
		out = append(out, ml[sec.protoEnd:]...)
	} else {
		out = append(out, ml[sec.portEnd:]...)
	}
	out = append(out, "\r\n"...)
	if sec.hasConn {
		if sec.connIP6 {
			out = append(out, "c=IN IP6 ::\r\n"...)
		} else {
			out = append(out, "c=IN IP4 0.0.0.0\r\n"...)
		}
	}
	if pl.to == WebRTC && pl.br.Mid != "" {
		out = append(out, "a=mid:"...)
		out = append(out, pl.br.Mid...)
		out = append(out, "\r\n"...)
	}
	return out
}

// appendKept writes a section that is not relayed: as it was, plus what
// it took from the session level that the rewrite changed or dropped
// (the c=, the ICE credentials for a stream with candidates, and when
// conv dropped them, the DTLS attributes).
func (d *Description) appendKept(out []byte, sec *section, sessConn int, sessChanged, conv bool) []byte {
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
	if !sec.live {
		return out
	}
	for j := 0; j < d.sessionEnd(); j++ {
		switch d.lines[j].kind {
		case kICECred:
			if !sec.hasCand {
				continue
			}
			name, _ := attr(d.line(j))
			if name == "ice-ufrag" && !sec.hasUfrag || name == "ice-pwd" && !sec.hasPwd ||
				name == "ice-options" && !sec.hasOptions {
				out = d.appendLine(out, j)
			}
		case kDTLS:
			if !conv {
				continue
			}
			name, _ := attr(d.line(j))
			if name == "fingerprint" && !sec.hasFP || name == "setup" && !sec.hasSetup ||
				name == "tls-id" && !sec.hasTLSID {
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

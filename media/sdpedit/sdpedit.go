// Package sdpedit reads and rewrites session descriptions (RFC 8866,
// offer/answer RFC 3264) for hlas's media relay: Parse reports where each
// m-line's media goes, and Description.Rewrite replaces those transport
// addresses with the relay's, so that the other party sends to the relay.
// Description.Convert does that and also changes a stream's profile for a
// relay that bridges a WebRTC client (ICE, DTLS-SRTP, rtcp-mux) and a
// plain RTP phone.
//
// Editing is line-based rather than a pion/sdp Unmarshal and Marshal: a
// relay must pass what it does not understand, and pion/sdp/v3 refuses
// descriptions phones send (T.38's m=image, b= of an unregistered type,
// lines slightly out of the RFC's order, a last line without CRLF) and on
// Marshal collapses whitespace and moves a media-level c= ahead of the
// attributes. Here every line the relay has no reason to change leaves
// byte for byte and in order; only line ends become CRLF. pion/sdp stays
// the independent reader the tests check the output against.
package sdpedit

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/hlas-voip/hlas/media"
)

// Limits of Parse. A description is at most a few kilobytes in practice;
// the bounds keep a hostile one from costing more than that.
const (
	// MaxStreams is the largest number of m-lines accepted.
	MaxStreams = 64
	// MaxSize is the largest body accepted, in bytes.
	MaxSize = 64 << 10
)

// Direction attributes (RFC 3264 §5.1).
const (
	SendRecv = "sendrecv"
	SendOnly = "sendonly"
	RecvOnly = "recvonly"
	Inactive = "inactive"
)

// Stream is one m-line as the relay needs it.
type Stream struct {
	// Media is the media type: audio, video, application, image, ...
	Media string
	// Proto is the transport protocol: RTP/AVP, RTP/SAVP,
	// UDP/TLS/RTP/SAVPF, udptl, ...
	Proto string
	// Port is the m-line's port. 0 is a disabled or rejected stream (RFC
	// 3264 §6): it is never relayed, and of its other fields only Media,
	// Proto, Direction and ClockRate are reliable (Addr when its c= holds
	// an IP literal; RTCP is zero).
	Port int
	// Addr is the effective connection address: the media-level c= over
	// the session-level one, IPv4-mapped IPv6 unmapped. The unspecified
	// address (0.0.0.0 or ::) is a hold in the style of RFC 2543, except
	// in a WebRTC stream, where ICE finds the path and c= is only the
	// default candidate (JSEP, RFC 8829 §5.2.1: port 9 and c=IN IP4
	// 0.0.0.0 before gathering); see OnHold.
	Addr netip.Addr
	// RTCP is where the party receives RTCP: a=rtcp (RFC 3605) when
	// present (its address defaulting to Addr), else Addr:Port+1 (zero
	// when Port is 65535, which leaves no room for it).
	RTCP netip.AddrPort
	// RTCPMux is a=rtcp-mux (RFC 5761): RTP and RTCP share Port.
	RTCPMux bool
	// Direction is sendrecv (the default), sendonly, recvonly or inactive:
	// the media-level attribute over the session-level one.
	Direction string
	// ClockRate is the RTP clock rate of the first format: from its
	// rtpmap, else the static payload types of RFC 3551 (0-34), else
	// 8000 for audio and 90000 for video; 0 when none of these applies
	// (a non-RTP stream such as T.38 or a data channel).
	ClockRate int
	// WebRTC is a DTLS-SRTP stream as browsers send it: proto
	// UDP/TLS/RTP/SAVP or UDP/TLS/RTP/SAVPF with an a=fingerprint (media
	// or session level, RFC 8122). SRTP keyed by a=crypto (SDES, RFC 4568)
	// over RTP/SAVP is not: it passes as any other stream.
	WebRTC bool
}

// OnHold reports whether the party asks for no media now: a direction
// other than sendrecv, or the unspecified address of RFC 2543 on a stream
// that is not WebRTC.
func (s Stream) OnHold() bool {
	return s.Direction != SendRecv || s.Addr.IsUnspecified() && !s.WebRTC
}

// Description is a parsed session description, kept as its lines so that
// Rewrite can return it with only the relay's changes. Rewrite works from
// the parse, not from Streams: changing Streams changes nothing.
type Description struct {
	// Streams are the m-lines in order.
	Streams []Stream

	text   string // the body, copied
	lines  []line
	verEnd int  // in the o= line: end of <sess-version>
	sessFP bool // session-level a=fingerprint
	media  []section
}

// kind is what Rewrite may do to a line.
type kind uint8

const (
	kPlain    kind = iota // passed as is
	kOrigin               // o=: address replaced
	kSessConn             // session-level c=
	kMLine                // m=: port replaced
	kConn                 // media-level c=
	kRTCP                 // a=rtcp
	kICE                  // ICE attribute: dropped where relayed
	kICECred              // session-level a=ice-ufrag, ice-pwd, ice-options
	kDTLS                 // a=fingerprint, setup, tls-id: dropped where converted
	kWeb                  // WebRTC's RTP extras (see webAttr): dropped towards a phone
	kMid                  // a=mid: dropped where converted (the relay writes its own)
	kGroup                // a=group: dropped where converted
	kMux                  // a=rtcp-mux, rtcp-mux-only: dropped where converted
	kCrypto               // a=crypto: dropped where converted
)

// line is one line of the body, without its line end.
type line struct {
	start, end int32
	kind       kind
}

// section is one media description: lines [start, end) of the body, the
// m= line first.
type section struct {
	start, end int
	// portStart, portEnd bound <port>[/<number of ports>] in the m= line;
	// protoStart, protoEnd its <proto>.
	portStart, portEnd   int
	protoStart, protoEnd int
	live                 bool // port != 0
	hold                 bool // effective address unspecified
	hasConn              bool // media-level c=
	connIP6              bool // its address type is IP6
	hasRTCP              bool
	hasCand              bool // a=candidate
	hasUfrag, hasPwd     bool
	hasOptions           bool // a=ice-options
	hasFP, hasSetup      bool // a=fingerprint, a=setup
	hasTLSID             bool // a=tls-id
}

// errf returns a parse error wrapping media.ErrBadSDP, so that the proxy
// answers 400 to the sender.
func errf(format string, args ...any) error {
	return fmt.Errorf("sdpedit: "+format+": %w", append(args, media.ErrBadSDP)...)
}

// Parse reads a session description. It accepts what RFC 8866 allows and
// a little more that devices send (LF line ends, no CRLF after the last
// line, unregistered media, protocols and line types, lines slightly out
// of order), and rejects what the relay cannot use: an unparsable line or
// structure, a stream in use whose connection address is not an IP
// literal (an FQDN c= is legal SDP, but the relay cannot send to it), a
// port out of range, more than MaxStreams m-lines, a body over MaxSize.
// Every error wraps media.ErrBadSDP. A description without m-lines has
// no streams and is not an error.
func Parse(body []byte) (*Description, error) {
	if len(body) > MaxSize {
		return nil, errf("body of %d bytes exceeds %d", len(body), MaxSize)
	}
	d := &Description{text: string(body)}
	if err := d.split(); err != nil {
		return nil, err
	}
	if err := d.structure(); err != nil {
		return nil, err
	}
	return d, nil
}

// split cuts the body into lines: LF or CRLF ends, blank lines dropped,
// every line <type>=<value> with an ASCII letter type (RFC 8866 §5).
func (d *Description) split() error {
	s := d.text
	d.lines = make([]line, 0, strings.Count(s, "\n")+1)
	for off := 0; off < len(s); {
		end := strings.IndexByte(s[off:], '\n')
		next := len(s)
		if end < 0 {
			end = len(s)
		} else {
			end += off
			next = end + 1
		}
		e := end
		if e > off && s[e-1] == '\r' {
			e--
		}
		if e > off {
			l := s[off:e]
			if len(l) < 2 || l[1] != '=' || !isLetter(l[0]) {
				return errf("line %d: not <type>=<value>", len(d.lines)+1)
			}
			// A bare CR would end the line for some readers and not for
			// others; NUL is excluded by RFC 8866 §9.
			if strings.IndexByte(l, '\r') >= 0 || strings.IndexByte(l, 0) >= 0 {
				return errf("line %d: CR or NUL inside a line", len(d.lines)+1)
			}
			d.lines = append(d.lines, line{start: int32(off), end: int32(e)})
		}
		off = next
	}
	return nil
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// text of line i.
func (d *Description) line(i int) string {
	l := d.lines[i]
	return d.text[l.start:l.end]
}

// connLine is a c= line's fields (RFC 8866 §5.7).
type connLine struct {
	netType, addrType, addr string
	ok                      bool // present
}

// structure reads the session level and every media description.
func (d *Description) structure() error {
	if len(d.lines) < 2 || strings.TrimRight(d.line(0), " \t") != "v=0" {
		return errf("the description must start with v=0")
	}
	if err := d.origin(); err != nil {
		return err
	}
	var sessConn connLine
	sessDir := ""
	firstM, nm := len(d.lines), 0
	for i := range d.lines {
		if d.line(i)[0] == 'm' {
			firstM = min(firstM, i)
			nm++
		}
	}
	if nm > MaxStreams {
		return errf("%d m-lines, at most %d", nm, MaxStreams)
	}
	d.media = make([]section, 0, nm)
	d.Streams = make([]Stream, 0, nm)
	for i := 2; i < firstM; i++ {
		l := d.line(i)
		switch l[0] {
		case 'v', 'o':
			return errf("line %d: %c= repeated", i+1, l[0])
		case 'c':
			if sessConn.ok {
				return errf("line %d: second session-level c=", i+1)
			}
			c, err := parseConn(l, i)
			if err != nil {
				return err
			}
			sessConn = c
			d.lines[i].kind = kSessConn
		case 'a':
			name, _ := attr(l)
			if dir := direction(name); dir != "" && sessDir == "" {
				sessDir = dir
			}
			if k := iceKind(name); k != kPlain {
				d.lines[i].kind = k
			} else if k := bridgeKind(name); k != kPlain {
				d.lines[i].kind = k
				d.sessFP = d.sessFP || name == "fingerprint"
			}
		}
	}
	i := firstM
	for i < len(d.lines) {
		end := i + 1
		for end < len(d.lines) && d.line(end)[0] != 'm' {
			end++
		}
		if err := d.section(i, end, sessConn, sessDir); err != nil {
			return err
		}
		i = end
	}
	return nil
}

// origin checks the o= line (RFC 8866 §5.2), which must follow v=:
// o=<username> <sess-id> <sess-version> <nettype> <addrtype> <address>.
func (d *Description) origin() error {
	l := d.line(1)
	if l[0] != 'o' {
		return errf("line 2: o= must follow v=")
	}
	var f [7]string
	if n := splitFields(l[2:], f[:]); n != 6 {
		return errf("line 2: o= has %d fields, not 6", n)
	}
	// The rewrite keeps the line up to <sess-version> as written.
	p := 2
	for range 3 {
		_, p = nextField(l, p)
	}
	d.verEnd = p
	d.lines[1].kind = kOrigin
	return nil
}

// section reads the media description in lines [start, end).
func (d *Description) section(start, end int, sessConn connLine, sessDir string) error {
	ml := d.line(start)
	d.lines[start].kind = kMLine
	var f [4]string
	n := splitFields(ml[2:], f[:])
	if n < 3 {
		return errf("line %d: m= needs <media> <port> <proto>", start+1)
	}
	sec := section{start: start, end: end}
	st := Stream{Media: f[0], Proto: f[2]}
	_, pe := nextField(ml, 2)
	sec.portStart, sec.portEnd = nextField(ml, pe)
	sec.protoStart, sec.protoEnd = nextField(ml, sec.portEnd)
	portTok := ml[sec.portStart:sec.portEnd]
	portS, count, hasCount := strings.Cut(portTok, "/")
	port, ok := parsePort(portS)
	if !ok {
		return errf("line %d: m= port %q out of range", start+1, portS)
	}
	if hasCount {
		if c, ok := parsePort(count); !ok || c == 0 {
			return errf("line %d: m= number of ports %q", start+1, count)
		}
	}
	st.Port = port
	sec.live = port != 0
	firstFmt := ""
	if n > 3 {
		firstFmt = f[3]
	}

	var conn connLine
	var rtcpVal string
	rate := 0
	for i := start + 1; i < end; i++ {
		l := d.line(i)
		switch l[0] {
		case 'v', 'o', 's', 't', 'r', 'z', 'u', 'e', 'p':
			return errf("line %d: session-level %c= inside a media description", i+1, l[0])
		case 'c':
			if conn.ok {
				if sec.live {
					return errf("line %d: second c= in a media description in use", i+1)
				}
				continue
			}
			c, err := parseConn(l, i)
			if err != nil {
				return err
			}
			conn = c
			sec.hasConn = true
			sec.connIP6 = strings.EqualFold(c.addrType, "IP6")
			d.lines[i].kind = kConn
		case 'a':
			name, val := attr(l)
			if dir := direction(name); dir != "" {
				if st.Direction == "" {
					st.Direction = dir
				}
				continue
			}
			switch name {
			case "rtcp":
				if !sec.hasRTCP {
					rtcpVal = val
				}
				sec.hasRTCP = true
				d.lines[i].kind = kRTCP
				continue
			case "rtcp-mux":
				st.RTCPMux = true
				d.lines[i].kind = kMux
				continue
			case "rtpmap":
				if rate == 0 && firstFmt != "" {
					rate = rtpmapRate(val, firstFmt)
				}
				continue
			}
			if k := iceKind(name); k != kPlain {
				d.lines[i].kind = kICE
				switch name {
				case "candidate":
					sec.hasCand = true
				case "ice-ufrag":
					sec.hasUfrag = true
				case "ice-pwd":
					sec.hasPwd = true
				case "ice-options":
					sec.hasOptions = true
				}
				continue
			}
			if k := bridgeKind(name); k != kPlain {
				d.lines[i].kind = k
				switch name {
				case "fingerprint":
					sec.hasFP = true
				case "setup":
					sec.hasSetup = true
				case "tls-id":
					sec.hasTLSID = true
				}
			}
		}
	}
	if st.Direction == "" {
		st.Direction = sessDir
	}
	if st.Direction == "" {
		st.Direction = SendRecv
	}
	st.ClockRate = clockRate(st.Media, firstFmt, rate)
	st.WebRTC = dtlsProto(st.Proto) && (sec.hasFP || d.sessFP)

	if !conn.ok {
		conn = sessConn
	}
	addr, ok := conn.ip()
	if sec.live {
		if !conn.ok {
			return errf("m-line %d (line %d): no c= for a stream in use", len(d.media)+1, start+1)
		}
		if !ok {
			return errf("m-line %d (line %d): connection address %q is not an IP literal", len(d.media)+1, start+1, conn.addr)
		}
		st.Addr = addr
		sec.hold = addr.IsUnspecified()
		rtcp, err := rtcpAddr(rtcpVal, sec.hasRTCP, addr, port)
		if err != nil {
			return errf("m-line %d (line %d): %v", len(d.media)+1, start+1, err)
		}
		st.RTCP = rtcp
	} else if ok {
		st.Addr = addr
	}
	d.media = append(d.media, sec)
	d.Streams = append(d.Streams, st)
	return nil
}

// rtcpAddr is where RTCP goes: a=rtcp:<port> [IN IP4|IP6 <address>]
// (RFC 3605 §2.1), else the next port up (RFC 3550 §11).
func rtcpAddr(val string, has bool, addr netip.Addr, port int) (netip.AddrPort, error) {
	if !has {
		if port >= 65535 {
			return netip.AddrPort{}, nil
		}
		return netip.AddrPortFrom(addr, uint16(port+1)), nil
	}
	var f [5]string
	n := splitFields(val, f[:])
	p, ok := parsePort(f[0])
	if n == 0 || !ok || p == 0 {
		return netip.AddrPort{}, fmt.Errorf("a=rtcp port %q out of range", f[0])
	}
	switch n {
	case 1:
		return netip.AddrPortFrom(addr, uint16(p)), nil
	case 4:
		c := connLine{netType: f[1], addrType: f[2], addr: f[3], ok: true}
		a, ok := c.ip()
		if !ok {
			return netip.AddrPort{}, fmt.Errorf("a=rtcp address %q is not an IP literal", f[3])
		}
		return netip.AddrPortFrom(a, uint16(p)), nil
	}
	return netip.AddrPort{}, fmt.Errorf("a=rtcp has %d fields, not 1 or 4", n)
}

// parseConn reads c=<nettype> <addrtype> <connection-address>. Whether
// the address is usable is asked only where a stream in use needs it.
func parseConn(l string, i int) (connLine, error) {
	var f [4]string
	if n := splitFields(l[2:], f[:]); n != 3 {
		return connLine{}, errf("line %d: c= has %d fields, not 3", i+1, n)
	}
	return connLine{netType: f[0], addrType: f[1], addr: f[2], ok: true}, nil
}

// ip is the connection address when it is an IP literal of the stated
// family (a multicast /ttl or /count suffix dropped), unmapped.
func (c connLine) ip() (netip.Addr, bool) {
	if !c.ok || !strings.EqualFold(c.netType, "IN") {
		return netip.Addr{}, false
	}
	s, _, _ := strings.Cut(c.addr, "/")
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, false
	}
	switch {
	case strings.EqualFold(c.addrType, "IP4") && a.Is4(),
		strings.EqualFold(c.addrType, "IP6") && a.Is6():
		return a.Unmap(), true
	}
	return netip.Addr{}, false
}

// attr splits a=<name>[:<value>].
func attr(l string) (name, value string) {
	name, value, _ = strings.Cut(l[2:], ":")
	return name, value
}

func direction(name string) string {
	switch name {
	case SendRecv, SendOnly, RecvOnly, Inactive:
		return name
	}
	return ""
}

// iceKind tells the ICE attributes (RFC 8839 §5) the relay removes:
// it answers on its own ports without ICE, so candidates would point the
// other party past it.
func iceKind(name string) kind {
	switch name {
	case "ice-ufrag", "ice-pwd", "ice-options":
		return kICECred
	case "candidate", "remote-candidates", "end-of-candidates", "ice-lite", "ice-mismatch", "ice-pacing":
		return kICE
	}
	return kPlain
}

// bridgeKind tells the attributes Convert removes or replaces when it
// changes a stream's profile.
func bridgeKind(name string) kind {
	switch name {
	case "fingerprint", "setup", "tls-id":
		return kDTLS
	case "mid":
		return kMid
	case "group":
		return kGroup
	case "rtcp-mux", "rtcp-mux-only":
		return kMux
	case "crypto":
		return kCrypto
	case "rtcp-fb", "extmap", "extmap-allow-mixed", "msid", "msid-semantic", "bundle-only",
		"rid", "simulcast", "rtcp-rsize", "identity":
		// RTCP feedback (RFC 4585) needs AVPF; header extensions, media
		// stream ids, RIDs and simulcast are the browser's and mean
		// nothing to a phone; reduced-size RTCP (RFC 5506) would break an
		// RTCP reader that expects compound packets.
		return kWeb
	}
	return kPlain
}

// dtlsProto reports the protos of DTLS-SRTP over UDP (RFC 5764 §8).
func dtlsProto(p string) bool {
	return strings.EqualFold(p, "UDP/TLS/RTP/SAVPF") || strings.EqualFold(p, "UDP/TLS/RTP/SAVP")
}

// plainProto reports the protos of unencrypted RTP (RFC 3551, RFC 4585).
func plainProto(p string) bool {
	return strings.EqualFold(p, "RTP/AVP") || strings.EqualFold(p, "RTP/AVPF")
}

// rtpProto reports whether a proto carries RTP in some profile.
func rtpProto(p string) bool {
	return strings.HasPrefix(strings.ToUpper(p), "RTP/") || strings.Contains(strings.ToUpper(p), "/RTP/")
}

// rtpmapRate returns the clock rate in a=rtpmap:<pt> <name>/<rate>[/<params>]
// when pt is the given format, else 0.
func rtpmapRate(val, pt string) int {
	var f [3]string
	if splitFields(val, f[:]) < 2 || f[0] != pt {
		return 0
	}
	_, rest, _ := strings.Cut(f[1], "/")
	rs, _, _ := strings.Cut(rest, "/")
	if len(rs) == 0 || len(rs) > 9 {
		return 0
	}
	r := 0
	for i := 0; i < len(rs); i++ {
		if rs[i] < '0' || rs[i] > '9' {
			return 0
		}
		r = r*10 + int(rs[i]-'0')
	}
	return r
}

// clockRate picks the clock rate of the first format (see Stream).
func clockRate(mediaType, pt string, rtpmap int) int {
	if rtpmap > 0 {
		return rtpmap
	}
	if n, ok := parsePort(pt); ok && n <= 34 {
		if r := staticRate(n); r > 0 {
			return r
		}
	}
	switch mediaType {
	case "audio":
		return 8000
	case "video":
		return 90000
	}
	return 0
}

// staticRate is the clock rate of a static payload type (RFC 3551
// tables 4 and 5); 0 for a reserved or unassigned one.
func staticRate(pt int) int {
	switch pt {
	case 0, 3, 4, 5, 7, 8, 9, 12, 13, 15, 18:
		return 8000
	case 6:
		return 16000
	case 10, 11:
		return 44100
	case 16:
		return 11025
	case 17:
		return 22050
	case 14, 25, 26, 28, 31, 32, 33, 34:
		return 90000
	}
	return 0
}

// parsePort reads a decimal port, 0-65535, digits only.
func parsePort(s string) (int, bool) {
	if len(s) == 0 || len(s) > 5 {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int(s[i]-'0')
	}
	return n, n <= 65535
}

// nextField returns the bounds of the first field of s at or after i;
// fields are separated by runs of spaces and tabs (as pion/sdp reads
// them). start == end: no field left.
func nextField(s string, i int) (start, end int) {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	start = i
	for i < len(s) && s[i] != ' ' && s[i] != '\t' {
		i++
	}
	return start, i
}

// splitFields stores the first len(out) fields of s in out and returns
// how many fields s has.
func splitFields(s string, out []string) int {
	n := 0
	for i := 0; ; {
		st, e := nextField(s, i)
		if st == e {
			return n
		}
		if n < len(out) {
			out[n] = s[st:e]
		}
		n++
		i = e
	}
}

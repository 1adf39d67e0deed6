package sip

import (
	"slices"
	"strings"
	"unsafe"
)

// ParseError says why a message is malformed. Msg holds whatever could be
// parsed (nil when not even the start line could), so that a server can
// still answer a broken request with a 400 when its top Via is usable
// (RFC 3261 §8.2.6, RFC 4475 §3.1.2).
type ParseError struct {
	// Reason is a short human-readable description, fit for a Warning
	// header or a log line.
	Reason string
	// Msg is the partially parsed message, or nil.
	Msg Message
}

func (e *ParseError) Error() string { return "sip: " + e.Reason }

// Parse parses one SIP message: a start line, header fields and a body
// delimited by Content-Length (or by the end of data when Content-Length is
// absent, as on UDP, RFC 3261 §18.3). Octets after the body are ignored
// (RFC 3261 §18.3). CRLFs before the start line are skipped (§7.5).
//
// Parse does not copy: the message's strings and Body refer into data, so
// the caller must not modify data afterwards. Transports hand each message
// its own buffer, which makes this free.
//
// On error Parse returns a *ParseError; its Msg (also returned as the first
// result) is the partial message when the start line was recognisable.
func Parse(data []byte) (Message, error) {
	if len(data) == 0 {
		return nil, &ParseError{Reason: "empty message"}
	}
	var p parser
	p.s = unsafe.String(&data[0], len(data))
	p.data = data
	return p.parse()
}

// ResponseBuffer is the memory of one parsed response, for a reader that
// knows when the response it parsed is done with and parses the next one
// into the same memory (ParseInto): a server that handles thousands of
// responses a second on the goroutine that read them need not allocate
// each. The zero value is ready.
type ResponseBuffer struct {
	blk  responseBlock
	used bool // a response was parsed into blk since the last Reset
}

// ParseInto is Parse, except that a response is parsed into buf, which
// must hold no response still in use. A request is allocated as Parse
// does. buf.Holds tells which happened.
func ParseInto(data []byte, buf *ResponseBuffer) (Message, error) {
	if len(data) == 0 {
		return nil, &ParseError{Reason: "empty message"}
	}
	var p parser
	p.s = unsafe.String(&data[0], len(data))
	p.data = data
	p.res = buf
	return p.parse()
}

// Holds reports whether msg is the response parsed into b.
func (b *ResponseBuffer) Holds(msg Message) bool {
	r, ok := msg.(*Response)
	return ok && r == &b.blk.msg
}

// Reset forgets what b holds, so that it keeps nothing alive and is ready
// for the next ParseInto. Whatever came from the response (its lists,
// its strings) must no longer be in use. A buffer that a request left
// unused costs nothing to reset.
func (b *ResponseBuffer) Reset() {
	if b.used {
		b.blk, b.used = responseBlock{}, false
	}
}

// ParseString is Parse for a string.
func ParseString(s string) (Message, error) {
	if s == "" {
		return nil, &ParseError{Reason: "empty message"}
	}
	return Parse([]byte(s))
}

type parser struct {
	s    string
	data []byte
	h    *Header
	err  string // first error found
	seen uint32 // kinds seen, for single-value headers
	clen int
	// Room in the message's block (requestBlock, responseBlock) for the
	// first Vias and the first address list; nil once handed out.
	vias  []Via
	addrs []Address
	// res, when set, is where a response goes (ParseInto).
	res *ResponseBuffer
}

// requestBlock and responseBlock are what Parse allocates: the message
// together with room for its first raw header fields, two Vias and one
// address (the Contact, or whichever of Contact, Route and Record-Route
// comes first), so that a typical message costs one allocation, not
// four. A list that outgrows its room moves to the heap as append does;
// the typed lists are clipped (len == cap) once parsed, so that appending
// to one of them, or to a copy, never writes into the block.
type requestBlock struct {
	msg    Request
	fields [8]Field
	vias   [2]Via
	addrs  [1]Address
}

type responseBlock struct {
	msg    Response
	fields [8]Field
	vias   [2]Via
	addrs  [1]Address
}

func (p *parser) fail(reason string) {
	if p.err == "" {
		p.err = reason
	}
}

func (p *parser) parse() (Message, error) {
	s := p.s
	pos := 0
	for pos < len(s) && (s[pos] == '\r' || s[pos] == '\n') {
		pos++
	}
	nl := strings.IndexByte(s[pos:], '\n')
	if nl < 0 {
		return nil, &ParseError{Reason: "no header section"}
	}
	line := s[pos : pos+nl]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	pos += nl + 1

	var msg Message
	var body *[]byte
	if len(line) >= 4 && strings.EqualFold(line[:4], "SIP/") {
		var blk *responseBlock
		if p.res != nil {
			blk, p.res.used = &p.res.blk, true
		} else {
			blk = new(responseBlock)
		}
		r := &blk.msg
		if reason := r.parseStatusLine(line); reason != "" {
			return nil, &ParseError{Reason: reason}
		}
		msg, p.h, body = r, &r.Header, &r.Body
		p.h.Fields, p.vias, p.addrs = blk.fields[:0], blk.vias[:0], blk.addrs[:0]
	} else {
		blk := new(requestBlock)
		r := &blk.msg
		if reason := r.parseRequestLine(line); reason != "" {
			if r.Method == "" {
				return nil, &ParseError{Reason: reason}
			}
			p.fail(reason)
		}
		msg, p.h, body = r, &r.Header, &r.Body
		p.h.Fields, p.vias, p.addrs = blk.fields[:0], blk.vias[:0], blk.addrs[:0]
	}
	p.h.MaxForwards = -1
	p.clen = -1

	bodyStart := p.headers(pos)
	h := p.h
	h.Via, h.Contact = slices.Clip(h.Via), slices.Clip(h.Contact)
	h.Route, h.RecordRoute = slices.Clip(h.Route), slices.Clip(h.RecordRoute)

	for _, req := range [...]struct {
		k    kind
		name string
	}{{kVia, "Via"}, {kFrom, "From"}, {kTo, "To"}, {kCallID, "Call-ID"}, {kCSeq, "CSeq"}} {
		if p.seen&(1<<req.k) == 0 {
			p.fail("missing " + req.name + " header")
		}
	}

	avail := len(s) - bodyStart
	switch {
	case p.clen < 0:
		*body = p.data[bodyStart:len(s):len(s)]
	case p.clen > avail:
		p.fail("Content-Length larger than the message body")
		*body = p.data[bodyStart:len(s):len(s)]
	default:
		*body = p.data[bodyStart : bodyStart+p.clen : bodyStart+p.clen]
	}
	if len(*body) == 0 {
		*body = nil
	}
	if p.err != "" {
		return msg, &ParseError{Reason: p.err, Msg: msg}
	}
	return msg, nil
}

// headers parses header lines from pos up to the empty line and returns
// where the body starts. Folded lines (a line starting with SP or HTAB)
// continue the previous field (RFC 3261 §7.3.1). A message that ends
// without the empty line is accepted with an empty body.
func (p *parser) headers(pos int) int {
	s := p.s
	name, valStart, valEnd, folded := "", -1, -1, false
	flush := func() {
		if valStart >= 0 {
			p.field(name, trimLWS(s[valStart:valEnd]), folded)
			valStart, folded = -1, false
		}
	}
	for pos < len(s) {
		end, next := len(s), len(s)
		if nl := strings.IndexByte(s[pos:], '\n'); nl >= 0 {
			end, next = pos+nl, pos+nl+1
		}
		if end > pos && s[end-1] == '\r' {
			end--
		}
		line := s[pos:end]
		if line == "" {
			flush()
			return next
		}
		if isWS(line[0]) {
			if valStart < 0 {
				p.fail("continuation line without a header field")
			} else {
				valEnd, folded = end, true
			}
			pos = next
			continue
		}
		flush()
		colon := strings.IndexByte(line, ':')
		if colon < 0 {
			p.fail("malformed header line (no colon)")
			pos = next
			continue
		}
		n := colon
		for n > 0 && isWS(line[n-1]) {
			n--
		}
		name = line[:n]
		if !isToken(name) {
			p.fail("malformed header field name")
			pos = next
			continue
		}
		valStart, valEnd = pos+colon+1, end
		pos = next
	}
	flush()
	return len(s)
}

// field dispatches one header field: hot headers are parsed into their typed
// fields now; the rest are kept raw. A hot header that fails to parse is
// kept raw too (so a 400 can echo it) and the error recorded.
func (p *parser) field(name, value string, folded bool) {
	h := p.h
	i := lookupName(name)
	if i < 0 {
		h.Fields = append(h.Fields, Field{Name: name, Value: value})
		return
	}
	hn := &headerNames[i]
	if hn.kind == kOther {
		h.Fields = append(h.Fields, Field{Name: name, Value: value, canon: hn.name})
		return
	}
	v := value
	if folded {
		v = unfold(value)
	}
	bit := uint32(1) << hn.kind
	dup := p.seen&bit != 0
	p.seen |= bit
	raw := func(reason string) {
		p.fail(reason)
		h.Fields = append(h.Fields, Field{Name: name, Value: value, canon: hn.name})
	}
	single := func() bool {
		if dup {
			p.fail("multiple " + hn.name + " header fields")
			return false
		}
		return true
	}
	switch hn.kind {
	case kVia:
		n := len(h.Via)
		ok := splitComma(v, func(e string) bool {
			var via Via
			if via.parse(e, true) != nil {
				return false
			}
			if h.Via == nil {
				h.Via, p.vias = p.vias, nil
			}
			h.Via = append(h.Via, via)
			return true
		})
		if !ok {
			h.Via = h.Via[:n]
			var via Via
			if via.parse(v, false) == nil {
				// Salvaged sent-by; the rest stays raw so it echoes as sent.
				h.Via = append(h.Via, via)
				p.fail("malformed Via header")
			} else {
				raw("malformed Via header")
			}
		}
	case kFrom, kTo:
		if !single() {
			return
		}
		a := &h.From
		if hn.kind == kTo {
			a = &h.To
		}
		if err := a.parse(v); err != nil {
			*a = Address{}
			raw("malformed " + hn.name + " header: " + err.Error())
		}
	case kCallID:
		if !single() {
			return
		}
		if v == "" || hasLWS(v) {
			raw("malformed Call-ID header")
			return
		}
		h.CallID = v
	case kCSeq:
		if !single() {
			return
		}
		if !parseCSeq(v, &h.CSeq) {
			h.CSeq = CSeq{}
			raw("malformed CSeq header")
		}
	case kContact, kRoute, kRecordRoute:
		list := &h.Contact
		switch hn.kind {
		case kRoute:
			list = &h.Route
		case kRecordRoute:
			list = &h.RecordRoute
		}
		n := len(*list)
		var perr error
		ok := splitComma(v, func(e string) bool {
			var a Address
			if e == "*" && hn.kind == kContact {
				a.Wildcard = true
			} else if perr = a.parse(e); perr != nil {
				return false
			}
			if *list == nil {
				*list, p.addrs = p.addrs, nil
			}
			*list = append(*list, a)
			return true
		})
		if !ok {
			*list = (*list)[:n]
			if perr == nil {
				perr = errUnterminatedQuote
			}
			raw("malformed " + hn.name + " header: " + perr.Error())
		}
	case kMaxForwards:
		if !single() {
			return
		}
		n, ok := parseUint(v, 255)
		if !ok {
			raw("malformed or out-of-range Max-Forwards")
			return
		}
		h.MaxForwards = int(n)
	case kContentLength:
		n, ok := parseUint(v, 1<<31-1)
		switch {
		case !ok:
			p.fail("malformed Content-Length")
		case dup && int(n) != p.clen:
			p.fail("multiple differing Content-Length values")
		default:
			p.clen = int(n)
		}
	case kContentType:
		if !single() {
			return
		}
		if strings.IndexByte(v, '/') <= 0 {
			raw("malformed Content-Type")
			return
		}
		h.ContentType = v
	}
}

// parseCSeq parses "1*DIGIT LWS Method". The number must fit in 32 bits
// (RFC 3261 §8.1.1.5 asks for less than 2**31; hlas accepts up to 2**32-1).
func parseCSeq(v string, c *CSeq) bool {
	i := 0
	for i < len(v) && v[i] >= '0' && v[i] <= '9' {
		i++
	}
	n, ok := parseUint(v[:i], 1<<32-1)
	if !ok || i == len(v) || !isLWS(v[i]) {
		return false
	}
	m := trimLWS(v[i:])
	if !isToken(m) {
		return false
	}
	c.Seq, c.Method = uint32(n), m
	return true
}

// parseRequestLine parses "Method SP Request-URI SP SIP-Version". Runs of
// white space between the elements and trailing white space are accepted
// (RFC 4475 §3.1.2.9 and §3.1.2.10 allow a liberal element to); white space
// inside the Request-URI is not (§3.1.2.8). It returns "" or an error
// reason; Method is set whenever it was a valid token, so that a 400 can
// still be sent.
func (r *Request) parseRequestLine(line string) string {
	method, rest, ok := cutWS(line)
	if !isToken(method) {
		return "malformed Request-Line"
	}
	r.Method = method
	if !ok {
		return "malformed Request-Line"
	}
	uri, version, _ := cutWS(rest)
	version = trimLWS(version)
	if version == "" || hasLWS(version) {
		return "malformed Request-Line"
	}
	if !validVersion(version) {
		return "malformed SIP-Version"
	}
	r.Version = normVersion(version)
	if strings.IndexByte(uri, '<') >= 0 {
		return "Request-URI must not be enclosed in <>"
	}
	if err := r.URI.parse(uri); err != nil {
		return "malformed Request-URI: " + err.Error()
	}
	return ""
}

// cutWS splits s at the first run of white space, skipping leading ones.
func cutWS(s string) (first, rest string, ok bool) {
	i := 0
	for i < len(s) && isWS(s[i]) {
		i++
	}
	s = s[i:]
	j := 0
	for j < len(s) && !isWS(s[j]) {
		j++
	}
	if j == len(s) {
		return s, "", false
	}
	k := j
	for k < len(s) && isWS(s[k]) {
		k++
	}
	return s[:j], s[k:], true
}

// validVersion checks "SIP/" 1*DIGIT "." 1*DIGIT (case-insensitive SIP).
func validVersion(v string) bool {
	if len(v) < 7 || !strings.EqualFold(v[:4], "SIP/") {
		return false
	}
	major, minor, ok := strings.Cut(v[4:], ".")
	_, ok1 := parseUint(major, 1<<16)
	_, ok2 := parseUint(minor, 1<<16)
	return ok && ok1 && ok2
}

func normVersion(v string) string {
	if strings.EqualFold(v, sip20) {
		return sip20
	}
	return v
}

// parseStatusLine parses "SIP-Version SP Status-Code SP Reason-Phrase". The
// status code is exactly three digits, 100 to 699 (RFC 3261 §7.2; RFC 4475
// §3.1.2.19). An empty reason phrase is valid (§3.1.1.13).
func (r *Response) parseStatusLine(line string) string {
	version, rest, ok := strings.Cut(line, " ")
	if !ok || !validVersion(version) {
		return "malformed Status-Line"
	}
	r.Version = normVersion(version)
	if len(rest) < 3 || (len(rest) > 3 && rest[3] != ' ') {
		return "malformed Status-Code"
	}
	code, ok := parseUint(rest[:3], 699)
	if !ok || code < 100 {
		return "malformed Status-Code"
	}
	r.StatusCode = int(code)
	if len(rest) > 4 {
		r.Reason = rest[4:]
	}
	return ""
}

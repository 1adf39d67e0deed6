package transport

import (
	"bytes"
	"errors"
	"io"
)

// frameKind says what the stream framer found next.
type frameKind uint8

const (
	frameMessage    frameKind = iota + 1 // one whole message
	framePing                            // RFC 5626 §3.5.1 double-CRLF keep-alive
	frameOversize                        // message larger than the limit: data is the header section (or what there is of it)
	frameBadFraming                      // unusable Content-Length: data is the header section, reason says why
)

// frame is one unit cut from a byte stream by framer.
type frame struct {
	kind   frameKind
	data   []byte // fresh allocation; nil for framePing
	off    int64  // stream offset of data[0] (of the ping for framePing)
	reason string // frameBadFraming only
}

// Reasons carried by frameBadFraming (and so by Packet.BadFraming).
const (
	reasonNegative    = "negative Content-Length"
	reasonNotNumber   = "Content-Length is not a number"
	reasonConflicting = "conflicting Content-Length values"
	reasonMissing     = "Content-Length missing on a stream with a Content-Type"
)

// Read buffer sizes. Between messages a framer reads into its own small
// buffer, which holds keep-alives and most single messages whole. A
// message that does not fit moves to a readBufSize buffer from the pool,
// and one larger still to a buffer grown for it up to the message size
// limit. Once everything buffered is consumed the buffer goes back (to the
// pool, or to the garbage collector if it was grown), so an idle
// connection holds idleBufSize bytes, not readBufSize or more.
const (
	idleBufSize = 1024
	readBufSize = 4096
)

// maxEmptyReads bounds how often a Reader may return 0, nil in a row.
const maxEmptyReads = 100

// errFramerStopped is returned by framer.next after an oversize or
// bad-framing frame: the stream cannot be trusted any more.
var errFramerStopped = errors.New("transport: framing stopped after an unusable message")

// framer cuts SIP messages out of a byte stream (RFC 3261 §18.3): the
// header section ends at an empty line, the body is Content-Length bytes.
// It never holds more than max+1 bytes.
type framer struct {
	r    io.Reader
	max  int         // largest message (header section + body) delivered whole
	pool *streamBufs // where readBufSize buffers come from; nil allocates them

	buf        []byte             // small, pooled, a grown allocation, or nil
	pooled     *[readBufSize]byte // the pool buffer buf is on, if it is
	start, end int                // unconsumed bytes are buf[start:end]
	off        int64              // stream offset of buf[start]

	inMsg bool // a message's first byte is at buf[start]
	scan  int  // where the header terminator search resumes, relative to start
	total int  // header section + body once the header section is found, else 0

	err error // sticky: read error or errFramerStopped

	small [idleBufSize]byte
}

func newFramer(r io.Reader, max int) *framer {
	return &framer{r: r, max: max}
}

// next returns the next frame. It returns an error only when no frame can
// be cut from what was read before the error; a partial message is dropped.
func (f *framer) next() (frame, error) {
	for {
		if fr, ok := f.cut(); ok {
			return fr, nil
		}
		if f.err != nil {
			return frame{}, f.err
		}
		f.fill()
	}
}

// buffered reports how many unconsumed bytes the framer holds.
func (f *framer) buffered() int { return f.end - f.start }

// pending reports whether the first byte of a message has been read while
// the message is not complete yet, and the stream offset of that byte,
// which tells one pending message from the next.
func (f *framer) pending() (off int64, ok bool) { return f.off, f.inMsg }

// release gives the buffer back and drops what it held; the framer is not
// used afterwards.
func (f *framer) release() {
	f.drop()
	f.start, f.end = 0, 0
}

// drop lets go of the buffer, back to the pool if it came from there.
func (f *framer) drop() {
	if f.pooled != nil {
		f.pool.put(f.pooled)
		f.pooled = nil
	}
	f.buf = nil
}

// cut tries to cut one frame from the buffered bytes.
func (f *framer) cut() (frame, bool) {
	if f.err == errFramerStopped {
		return frame{}, false
	}
	b := f.buf[f.start:f.end]
	if !f.inMsg {
		// Between messages: RFC 5626 §3.5.1 keep-alives and the stray line
		// ends RFC 3261 §7.5 says to ignore before a start line.
		for len(b) > 0 && (b[0] == '\r' || b[0] == '\n') {
			switch {
			case b[0] == '\n': // bare LF: liberal, skip
				f.consume(1)
			case len(b) < 2:
				return frame{}, false
			case b[1] != '\n': // stray CR
				f.consume(1)
			case len(b) < 3:
				return frame{}, false
			case b[2] != '\r': // lone CRLF
				f.consume(2)
			case len(b) < 4:
				return frame{}, false
			case b[3] == '\n': // CRLFCRLF: ping
				off := f.off
				f.consume(4)
				return frame{kind: framePing, off: off}, true
			default: // CRLF CR x: lone CRLF, then a stray CR
				f.consume(2)
			}
			b = f.buf[f.start:f.end]
		}
		if len(b) == 0 {
			return frame{}, false
		}
		f.inMsg = true
	}
	if f.total == 0 {
		h, resume := findHeaderEnd(b, f.scan)
		if h < 0 {
			f.scan = resume
			if len(b) > f.max {
				return f.stop(frameOversize, len(b), ""), true
			}
			return frame{}, false
		}
		cl, reason := contentLength(b[:h], f.max)
		if reason != "" {
			return f.stop(frameBadFraming, h, reason), true
		}
		if cl > f.max-h {
			return f.stop(frameOversize, h, ""), true
		}
		f.total = h + cl
	}
	if len(b) < f.total {
		return frame{}, false
	}
	fr := frame{kind: frameMessage, data: bytes.Clone(b[:f.total]), off: f.off}
	f.consume(f.total)
	f.inMsg, f.scan, f.total = false, 0, 0
	return fr, true
}

// stop returns a terminal frame holding the first n buffered bytes; the
// framer delivers nothing after it.
func (f *framer) stop(kind frameKind, n int, reason string) frame {
	fr := frame{kind: kind, data: bytes.Clone(f.buf[f.start : f.start+n]), off: f.off, reason: reason}
	f.err = errFramerStopped
	f.release()
	return fr
}

func (f *framer) consume(n int) {
	f.start += n
	f.off += int64(n)
	if f.start == f.end {
		f.start, f.end = 0, 0
		f.drop() // nothing pending: the next read goes to the small buffer
	}
}

// fill makes room and reads once.
func (f *framer) fill() {
	limit := f.max + 1
	onSmall := f.buf != nil && &f.buf[0] == &f.small[0]
	switch {
	case f.buf == nil:
		f.buf = f.small[:min(idleBufSize, limit)]
	case !f.inMsg && !onSmall:
		// Between messages only a keep-alive's first line ends (under 4
		// bytes) can be pending: wait for the rest in the small buffer.
		n := copy(f.small[:], f.buf[f.start:f.end])
		f.drop()
		f.buf, f.start, f.end = f.small[:min(idleBufSize, limit)], 0, n
	case f.end < len(f.buf):
		// Room to read into.
	case f.start > 0 && (!onSmall || len(f.buf) == limit):
		f.end = copy(f.buf, f.buf[f.start:f.end])
		f.start = 0
	case len(f.buf) < limit:
		// A full small buffer means traffic: move to a larger one rather
		// than go on reading a small buffer's worth at a time.
		f.grow(limit)
	default:
		// Unreachable: a full buffer of max+1 bytes is always cut as oversize.
		f.err = errors.New("transport: framer buffer full")
		return
	}
	for range maxEmptyReads {
		n, err := f.r.Read(f.buf[f.end:])
		f.end += n
		if err != nil {
			f.err = err
			return
		}
		if n > 0 {
			return
		}
	}
	f.err = io.ErrNoProgress
}

// grow moves the buffered bytes to the start of a larger buffer: a pooled
// one after the small buffer, then twice the size, never more than limit.
func (f *framer) grow(limit int) {
	var (
		nb     []byte
		pooled *[readBufSize]byte
	)
	if len(f.buf) < readBufSize {
		pooled = f.pool.get()
		nb = pooled[:min(readBufSize, limit)]
	} else {
		nb = make([]byte, min(2*len(f.buf), limit))
	}
	n := copy(nb, f.buf[f.start:f.end])
	f.drop()
	f.buf, f.pooled, f.start, f.end = nb, pooled, 0, n
}

// findHeaderEnd looks for the empty line ending a header section in b,
// starting at from. A line ends in LF with an optional CR before it
// (LF alone is accepted to be liberal). It returns the length of the header
// section including the empty line, or -1 and the offset to resume the
// search from once more bytes have arrived.
func findHeaderEnd(b []byte, from int) (end, resume int) {
	i := from
	for {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return -1, len(b)
		}
		lf := i + j
		n := lf + 1
		switch {
		case n < len(b) && b[n] == '\n':
			return n + 1, 0
		case n+1 < len(b) && b[n] == '\r' && b[n+1] == '\n':
			return n + 2, 0
		case n >= len(b) || (n+1 == len(b) && b[n] == '\r'):
			return -1, lf // undecided until more bytes arrive
		}
		i = n
	}
}

// contentLength finds the body length declared by a header section
// (start line included). Header names match case-insensitively, in full
// (Content-Length) or compact (l) form, with optional whitespace before the
// colon; a value may continue on folded lines (RFC 3261 §7.3.1). Several
// headers must agree. Without one the length is 0, unless a Content-Type is
// present: then a body was meant and its length is unknown. Values above
// max are returned as max+1. A non-empty reason means the length is
// unusable.
func contentLength(hdr []byte, max int) (n int, reason string) {
	var (
		v       clValue
		inCL    bool // the current header line is a Content-Length
		seen    bool
		hasType bool
	)
	settle := func() string {
		inCL = false
		l, r := v.result()
		if r != "" {
			return r
		}
		if seen && l != n {
			return reasonConflicting
		}
		seen, n = true, l
		return ""
	}
	first := true
	for len(hdr) > 0 {
		var line []byte
		if i := bytes.IndexByte(hdr, '\n'); i >= 0 {
			line, hdr = hdr[:i], hdr[i+1:]
		} else {
			line, hdr = hdr, nil
		}
		if len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		}
		if first { // the start line
			first = false
			continue
		}
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' { // folded continuation
			if inCL {
				v.feed(line)
			}
			continue
		}
		if inCL {
			if r := settle(); r != "" {
				return 0, r
			}
		}
		colon := bytes.IndexByte(line, ':')
		if colon < 0 {
			continue // not a header line; the parser will judge it
		}
		name := bytes.TrimRight(line[:colon], " \t")
		switch {
		case isHeader(name, "content-length", 'l'):
			inCL = true
			v = clValue{max: max}
			v.feed(line[colon+1:])
		case isHeader(name, "content-type", 'c'):
			hasType = true
		}
	}
	if inCL {
		if r := settle(); r != "" {
			return 0, r
		}
	}
	if !seen && hasType {
		return 0, reasonMissing
	}
	return n, ""
}

// isHeader reports whether name is the header full (lower case) or its
// compact form, case-insensitively.
func isHeader(name []byte, full string, compact byte) bool {
	if len(name) == 1 {
		return name[0]|0x20 == compact
	}
	if len(name) != len(full) {
		return false
	}
	for i := range len(name) {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != full[i] {
			return false
		}
	}
	return true
}

// clValue parses a Content-Length value fed in pieces (folded lines):
// optional whitespace, digits, optional whitespace.
type clValue struct {
	max    int
	n      int
	state  uint8 // 0 before digits, 1 in digits, 2 after digits
	reason string
}

func (v *clValue) feed(b []byte) {
	for _, c := range b {
		if v.reason != "" {
			return
		}
		switch {
		case c == ' ' || c == '\t':
			if v.state == 1 {
				v.state = 2
			}
		case '0' <= c && c <= '9':
			if v.state == 2 {
				v.reason = reasonNotNumber
				return
			}
			v.state = 1
			if v.n <= v.max {
				v.n = v.n*10 + int(c-'0')
			}
			if v.n > v.max {
				v.n = v.max + 1
			}
		case c == '-' && v.state == 0:
			v.reason = reasonNegative
		default:
			v.reason = reasonNotNumber
		}
	}
}

func (v *clValue) result() (int, string) {
	if v.reason != "" {
		return 0, v.reason
	}
	if v.state == 0 {
		return 0, reasonNotNumber
	}
	return v.n, ""
}

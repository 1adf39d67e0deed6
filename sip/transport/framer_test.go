package transport

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// Messages used by the framing tests.
const (
	invite10 = "INVITE sip:bob@example.com SIP/2.0\r\n" +
		"Via: SIP/2.0/TCP pc33.example.com;branch=z9hG4bK776asdhds\r\n" +
		"Call-ID: a84b4c76e66710\r\n" +
		"Content-Type: text/plain\r\n" +
		"Content-Length: 10\r\n" +
		"\r\n" +
		"0123456789"
	options0 = "OPTIONS sip:bob@example.com SIP/2.0\r\n" +
		"Call-ID: b84b4c76e66710\r\n" +
		"Content-Length: 0\r\n" +
		"\r\n"
)

// hdr builds a message with the given header lines (joined with CRLF) and body.
func hdr(body string, lines ...string) string {
	return "MESSAGE sip:bob@example.com SIP/2.0\r\n" + strings.Join(lines, "\r\n") + "\r\n\r\n" + body
}

// exactly returns a message of n bytes.
func exactly(n int) string {
	for body := n - len(hdr("", "l: 0")); body > 0; body-- {
		if m := hdr(strings.Repeat("x", body), "l: "+fmt.Sprint(body)); len(m) == n {
			return m
		}
	}
	panic("no message of that size")
}

// headerOf returns the header section of a message.
func headerOf(msg string) string {
	if i := strings.Index(msg, "\r\n\r\n"); i >= 0 {
		return msg[:i+4]
	}
	i := strings.Index(msg, "\n\n")
	return msg[:i+2]
}

// got is a frame reduced to what the tests compare.
type got struct {
	kind   frameKind
	data   string
	reason string
}

func (g got) String() string {
	return fmt.Sprintf("{kind %d, %d bytes %q, reason %q}", g.kind, len(g.data), g.data, g.reason)
}

func msg(s string) got { return got{kind: frameMessage, data: s} }

var ping = got{kind: framePing}

var framingTests = []struct {
	name    string
	in      string
	max     int // 0: 1024
	want    []got
	wantErr error // after the frames; nil means io.EOF
}{
	{
		name: "RFC 3261 18.3 pipelined pair",
		in:   invite10 + options0,
		want: []got{msg(invite10), msg(options0)},
	},
	{
		name: "RFC 3261 7.3.1 folded Content-Length",
		in:   hdr("hello", "Call-ID: x", "Content-Length:", " 5") + options0,
		want: []got{msg(hdr("hello", "Call-ID: x", "Content-Length:", " 5")), msg(options0)},
	},
	{
		name: "folded Content-Length on a tab continuation",
		in:   hdr("hello", "Content-Length:", "\t  5  ", "Call-ID: x"),
		want: []got{msg(hdr("hello", "Content-Length:", "\t  5  ", "Call-ID: x"))},
	},
	{
		name: "RFC 3261 7.3.3 compact l",
		in:   hdr("hello", "l: 5") + options0,
		want: []got{msg(hdr("hello", "l: 5")), msg(options0)},
	},
	{
		name: "compact L in upper case without space",
		in:   hdr("hello", "L:5"),
		want: []got{msg(hdr("hello", "L:5"))},
	},
	{
		name: "whitespace before the colon",
		in:   hdr("hello", "Content-Length   : 5"),
		want: []got{msg(hdr("hello", "Content-Length   : 5"))},
	},
	{
		name: "header name in lower case",
		in:   hdr("hello", "content-length: 5"),
		want: []got{msg(hdr("hello", "content-length: 5"))},
	},
	{
		name: "header name in mixed case",
		in:   hdr("hello", "CONTENT-length: 5"),
		want: []got{msg(hdr("hello", "CONTENT-length: 5"))},
	},
	{
		name: "LF-only line ends",
		in:   "MESSAGE sip:b SIP/2.0\nl: 5\n\nhello" + "OPTIONS sip:b SIP/2.0\nCall-ID: y\n\n",
		want: []got{msg("MESSAGE sip:b SIP/2.0\nl: 5\n\nhello"), msg("OPTIONS sip:b SIP/2.0\nCall-ID: y\n\n")},
	},
	{
		name: "mixed CRLF and LF line ends",
		in:   "MESSAGE sip:b SIP/2.0\r\nl: 5\n\r\nhello",
		want: []got{msg("MESSAGE sip:b SIP/2.0\r\nl: 5\n\r\nhello")},
	},
	{
		name: "missing Content-Length counts as zero",
		in:   hdr("", "Call-ID: x") + options0,
		want: []got{msg(hdr("", "Call-ID: x")), msg(options0)},
	},
	{
		name: "duplicate equal Content-Length values",
		in:   hdr("hello", "Content-Length: 5", "l: 05"),
		want: []got{msg(hdr("hello", "Content-Length: 5", "l: 05"))},
	},
	{
		name: "Content-Length text in the body is body",
		in:   hdr("l: 99", "Content-Length: 5") + options0,
		want: []got{msg(hdr("l: 99", "Content-Length: 5")), msg(options0)},
	},
	{
		name: "header without a colon is left to the parser",
		in:   hdr("hello", "Garbage", "l: 5"),
		want: []got{msg(hdr("hello", "Garbage", "l: 5"))},
	},
	{
		name:    "missing Content-Length with a Content-Type",
		in:      hdr("v=0\r\n", "Content-Type: application/sdp") + options0,
		want:    []got{{kind: frameBadFraming, data: headerOf(hdr("", "Content-Type: application/sdp")), reason: reasonMissing}},
		wantErr: errFramerStopped,
	},
	{
		name:    "missing Content-Length with a compact c",
		in:      hdr("v=0\r\n", "c: application/sdp"),
		want:    []got{{kind: frameBadFraming, data: headerOf(hdr("", "c: application/sdp")), reason: reasonMissing}},
		wantErr: errFramerStopped,
	},
	{
		name:    "RFC 4475 3.1.2.7 negative Content-Length",
		in:      hdr("hello", "Content-Length: -999") + options0,
		want:    []got{{kind: frameBadFraming, data: headerOf(hdr("", "Content-Length: -999")), reason: reasonNegative}},
		wantErr: errFramerStopped,
	},
	{
		name:    "non-numeric Content-Length",
		in:      hdr("hello", "Content-Length: five"),
		want:    []got{{kind: frameBadFraming, data: headerOf(hdr("", "Content-Length: five")), reason: reasonNotNumber}},
		wantErr: errFramerStopped,
	},
	{
		name:    "Content-Length with a sign",
		in:      hdr("hello", "Content-Length: +5"),
		want:    []got{{kind: frameBadFraming, data: headerOf(hdr("", "Content-Length: +5")), reason: reasonNotNumber}},
		wantErr: errFramerStopped,
	},
	{
		name:    "empty Content-Length",
		in:      hdr("", "Content-Length:"),
		want:    []got{{kind: frameBadFraming, data: headerOf(hdr("", "Content-Length:")), reason: reasonNotNumber}},
		wantErr: errFramerStopped,
	},
	{
		name:    "Content-Length split by folding",
		in:      hdr("", "Content-Length: 1", " 5"),
		want:    []got{{kind: frameBadFraming, data: headerOf(hdr("", "Content-Length: 1", " 5")), reason: reasonNotNumber}},
		wantErr: errFramerStopped,
	},
	{
		name:    "RFC 4475 3.1.2.11 conflicting Content-Length values",
		in:      hdr("hello", "Content-Length: 13", "Max-Forwards: 60", "l: 5"),
		want:    []got{{kind: frameBadFraming, data: headerOf(hdr("", "Content-Length: 13", "Max-Forwards: 60", "l: 5")), reason: reasonConflicting}},
		wantErr: errFramerStopped,
	},
	{
		name:    "oversize body",
		in:      hdr(strings.Repeat("x", 200), "Content-Length: 200"),
		max:     128,
		want:    []got{{kind: frameOversize, data: headerOf(hdr("", "Content-Length: 200"))}},
		wantErr: errFramerStopped,
	},
	{
		name:    "oversize header section without terminator",
		in:      "MESSAGE sip:b SIP/2.0\r\n" + strings.Repeat("X-Long: yyyyyyyyyy\r\n", 10),
		max:     64,
		want:    []got{{kind: frameOversize, data: ("MESSAGE sip:b SIP/2.0\r\n" + strings.Repeat("X-Long: yyyyyyyyyy\r\n", 10))[:65]}},
		wantErr: errFramerStopped,
	},
	{
		name:    "huge Content-Length number",
		in:      hdr("hello", "Content-Length: 99999999999999999999999999"),
		want:    []got{{kind: frameOversize, data: headerOf(hdr("", "Content-Length: 99999999999999999999999999"))}},
		wantErr: errFramerStopped,
	},
	{
		name: "message of exactly the limit",
		in:   exactly(128) + options0,
		max:  128,
		want: []got{msg(exactly(128)), msg(options0)},
	},
	{
		name:    "message one byte over the limit",
		in:      exactly(129),
		max:     128,
		want:    []got{{kind: frameOversize, data: headerOf(exactly(129))}},
		wantErr: errFramerStopped,
	},
	{
		name: "RFC 5626 3.5.1 CRLF ping",
		in:   "\r\n\r\n",
		want: []got{ping},
	},
	{
		name: "two pings",
		in:   "\r\n\r\n\r\n\r\n",
		want: []got{ping, ping},
	},
	{
		name: "ping between messages",
		in:   options0 + "\r\n\r\n" + invite10,
		want: []got{msg(options0), ping, msg(invite10)},
	},
	{
		name: "RFC 3261 7.5 lone CRLF between messages skipped",
		in:   invite10 + "\r\n" + options0,
		want: []got{msg(invite10), msg(options0)},
	},
	{
		name: "stray line ends before a message skipped",
		in:   "\n\r\r\n" + options0,
		want: []got{msg(options0)},
	},
	{
		name: "lone CRLF at the end waits for more",
		in:   options0 + "\r\n",
		want: []got{msg(options0)},
	},
	{
		name: "incomplete message at EOF dropped",
		in:   options0 + invite10[:40],
		want: []got{msg(options0)},
	},
}

// collect frames in until an error; it checks every frame against the
// stream as it goes.
func collect(t testing.TB, in []byte, r io.Reader, max int) ([]got, error) {
	t.Helper()
	return collectFrom(t, in, newFramer(r, max), max)
}

// collectFrom is collect with a framer of the caller's.
func collectFrom(t testing.TB, in []byte, f *framer, max int) ([]got, error) {
	t.Helper()
	var out []got
	pos := int64(0)
	for {
		fr, err := f.next()
		if err != nil {
			return out, err
		}
		checkFrame(t, in, &pos, fr, max)
		out = append(out, got{kind: fr.kind, data: string(fr.data), reason: fr.reason})
		if len(out) > len(in)+1 {
			t.Fatalf("more frames than input bytes")
		}
	}
}

// checkFrame verifies that fr is the next slice of the stream in after
// pos, with only line ends skipped before it, and advances pos.
func checkFrame(t testing.TB, in []byte, pos *int64, fr frame, max int) {
	t.Helper()
	if fr.off < *pos || fr.off > int64(len(in)) {
		t.Fatalf("frame at offset %d, want at or after %d within %d bytes", fr.off, *pos, len(in))
	}
	if !onlyCRLF(in[*pos:fr.off]) {
		t.Fatalf("skipped %q before offset %d", in[*pos:fr.off], fr.off)
	}
	switch fr.kind {
	case framePing:
		if !bytes.HasPrefix(in[fr.off:], []byte("\r\n\r\n")) {
			t.Fatalf("ping at offset %d over %q", fr.off, in[fr.off:])
		}
		*pos = fr.off + 4
		return
	case frameMessage:
		if len(fr.data) > max {
			t.Fatalf("message of %d bytes over the limit %d", len(fr.data), max)
		}
	case frameOversize, frameBadFraming:
		if len(fr.data) > max+1 {
			t.Fatalf("unusable message with %d bytes over the limit %d", len(fr.data), max)
		}
	default:
		t.Fatalf("unknown frame kind %d", fr.kind)
	}
	if len(fr.data) == 0 || !bytes.HasPrefix(in[fr.off:], fr.data) {
		t.Fatalf("frame %q is not the input at offset %d", fr.data, fr.off)
	}
	*pos = fr.off + int64(len(fr.data))
}

// chunkReader returns its chunks one Read each.
type chunkReader struct{ chunks [][]byte }

func (r *chunkReader) Read(p []byte) (int, error) {
	for len(r.chunks) > 0 && len(r.chunks[0]) == 0 {
		r.chunks = r.chunks[1:]
	}
	if len(r.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.chunks[0])
	r.chunks[0] = r.chunks[0][n:]
	return n, nil
}

// stepReader returns at most step bytes per Read.
type stepReader struct {
	b    []byte
	step int
}

func (r *stepReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), r.step)], r.b)
	r.b = r.b[n:]
	return n, nil
}

func TestFraming(t *testing.T) {
	for _, tc := range framingTests {
		t.Run(tc.name, func(t *testing.T) {
			max := tc.max
			if max == 0 {
				max = 1024
			}
			wantErr := tc.wantErr
			if wantErr == nil {
				wantErr = io.EOF
			}
			in := []byte(tc.in)
			readers := map[string]func() io.Reader{
				"whole":    func() io.Reader { return bytes.NewReader(in) },
				"one byte": func() io.Reader { return iotest.OneByteReader(bytes.NewReader(in)) },
			}
			// Every split of the input into two reads.
			for i := 1; i < len(in); i++ {
				readers[fmt.Sprintf("split at %d", i)] = func() io.Reader {
					return &chunkReader{chunks: [][]byte{in[:i:i], in[i:]}}
				}
			}
			for rname, r := range readers {
				frames, err := collect(t, in, r(), max)
				if !errors.Is(err, wantErr) {
					t.Fatalf("%s: error %v, want %v", rname, err, wantErr)
				}
				if fmt.Sprint(frames) != fmt.Sprint(tc.want) {
					t.Fatalf("%s:\ngot  %v\nwant %v", rname, frames, tc.want)
				}
			}
		})
	}
}

func TestFramingEverySplitOfPipelinedPair(t *testing.T) {
	in := []byte(invite10 + "\r\n\r\n" + options0 + invite10)
	want := fmt.Sprint([]got{msg(invite10), ping, msg(options0), msg(invite10)})
	for i := 0; i <= len(in); i++ {
		for j := i; j <= len(in); j += 37 {
			r := &chunkReader{chunks: [][]byte{in[:i:i], in[i:j:j], in[j:]}}
			frames, err := collect(t, in, r, 1024)
			if err != io.EOF || fmt.Sprint(frames) != want {
				t.Fatalf("split at %d, %d: %v, %v", i, j, frames, err)
			}
		}
	}
}

func TestFramingReusesBuffer(t *testing.T) {
	// A large message grows the buffer; once it is consumed the framer
	// drops back to a small one, and the pipelined data after it is intact.
	big := hdr(strings.Repeat("b", 20000), "l: 20000")
	in := []byte(big + options0 + big)
	frames, err := collect(t, in, &stepReader{b: in, step: 3000}, 65536)
	if err != io.EOF || fmt.Sprint(frames) != fmt.Sprint([]got{msg(big), msg(options0), msg(big)}) {
		t.Fatalf("got %d frames, %v", len(frames), err)
	}
}

// TestFramingIdleHoldsNoBuffer: between messages a framer reads into its
// small buffer and holds no pooled or grown one, whatever came before
// (messages on either side of each buffer size, trailing line ends, pings)
// and however the stream is split; messages move between the buffers
// intact; and whatever it holds goes back on release.
func TestFramingIdleHoldsNoBuffer(t *testing.T) {
	const max = 65536
	var (
		in   string
		want []got
	)
	for _, n := range []int{200, idleBufSize - 1, idleBufSize, idleBufSize + 1,
		readBufSize - 1, readBufSize, readBufSize + 1, 3 * readBufSize} {
		m := exactly(n)
		in += m + "\r\n\r\n" + m + "\r\n"
		want = append(want, msg(m), ping, msg(m))
	}
	pool := new(streamBufs)
	for _, step := range []int{1, 3, 100, idleBufSize - 1, idleBufSize + 1, readBufSize + 1, len(in)} {
		r := &probeReader{stepReader: stepReader{b: []byte(in), step: step}}
		f := newFramer(r, max)
		f.pool, r.f = pool, f
		frames, err := collectFrom(t, []byte(in), f, max)
		if err != io.EOF || fmt.Sprint(frames) != fmt.Sprint(want) {
			t.Fatalf("step %d: %d frames, %v", step, len(frames), err)
		}
		if r.heldIdle > 0 {
			t.Fatalf("step %d: %d reads between messages with a pooled or grown buffer held", step, r.heldIdle)
		}
		if r.pooled == 0 {
			t.Fatalf("step %d: no read into a pooled buffer", step)
		}
		f.release()
		if f.pooled != nil || f.buf != nil {
			t.Fatalf("step %d: buffer held after release", step)
		}
	}
}

// probeReader is a stepReader that checks, at each read, which buffer its
// framer reads into.
type probeReader struct {
	stepReader
	f        *framer
	heldIdle int // reads with no message pending and more than the small buffer held
	pooled   int // reads into a pooled buffer
}

func (r *probeReader) Read(p []byte) (int, error) {
	if _, ok := r.f.pending(); !ok && (r.f.pooled != nil || len(r.f.buf) > idleBufSize) {
		r.heldIdle++
	}
	if r.f.pooled != nil {
		r.pooled++
	}
	return r.stepReader.Read(p)
}

func TestFramingNoProgress(t *testing.T) {
	f := newFramer(stuckReader{}, 1024)
	if _, err := f.next(); !errors.Is(err, io.ErrNoProgress) {
		t.Fatalf("error %v, want io.ErrNoProgress", err)
	}
}

// stuckReader always returns 0, nil.
type stuckReader struct{}

func (stuckReader) Read([]byte) (int, error) { return 0, nil }

func FuzzFraming(f *testing.F) {
	for _, tc := range framingTests {
		f.Add([]byte(tc.in), uint8(3))
	}
	f.Add([]byte(strings.Repeat("\r\n", 10)+"M\n\nM\r\nl:\r\n 1\r\n\r\nx"), uint8(1))
	f.Fuzz(func(t *testing.T, in []byte, step uint8) {
		const max = 256
		whole, errWhole := collect(t, in, bytes.NewReader(in), max)
		split, errSplit := collect(t, in, &stepReader{b: in, step: int(step)%17 + 1}, max)
		if errWhole != errSplit {
			t.Fatalf("errors differ by read size: %v, %v", errWhole, errSplit)
		}
		if fmt.Sprint(whole) != fmt.Sprint(split) {
			t.Fatalf("frames differ by read size:\n%v\n%v", whole, split)
		}
		for i, g := range whole {
			if (g.kind == frameOversize || g.kind == frameBadFraming) && i != len(whole)-1 {
				t.Fatalf("frames after an unusable message: %v", whole)
			}
		}
	})
}

// benchInvite is a typical INVITE with an SDP body.
var benchInvite = func() string {
	sdp := "v=0\r\no=alice 2890844526 2890844526 IN IP4 pc33.example.com\r\ns=-\r\n" +
		"c=IN IP4 192.0.2.101\r\nt=0 0\r\nm=audio 49172 RTP/AVP 0 8 101\r\n" +
		"a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
	return "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n" +
		"Via: SIP/2.0/TCP pc33.example.com:5060;branch=z9hG4bK776asdhds;rport\r\n" +
		"Max-Forwards: 70\r\n" +
		"To: Bob <sip:bob@biloxi.example.com>\r\n" +
		"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n" +
		"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n" +
		"CSeq: 314159 INVITE\r\n" +
		"Contact: <sip:alice@pc33.atlanta.example.com;transport=tcp>\r\n" +
		"Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, MESSAGE, SUBSCRIBE, INFO\r\n" +
		"Supported: replaces, timer, outbound\r\n" +
		"User-Agent: hlas-bench\r\n" +
		"Content-Type: application/sdp\r\n" +
		"Content-Length: " + fmt.Sprint(len(sdp)) + "\r\n" +
		"\r\n" + sdp
}()

func BenchmarkFraming(b *testing.B) {
	stream := []byte(strings.Repeat(benchInvite, 100))
	for _, bc := range []struct {
		name string
		r    func() io.Reader
	}{
		{"pipelined/large reads", func() io.Reader { return bytes.NewReader(stream) }},
		{"pipelined/1400 byte reads", func() io.Reader { return &stepReader{b: stream, step: 1400} }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(stream)))
			b.ReportAllocs()
			for b.Loop() {
				f := newFramer(bc.r(), DefaultMaxMessageSize)
				n := 0
				for {
					fr, err := f.next()
					if err != nil {
						break
					}
					if fr.kind != frameMessage {
						b.Fatalf("frame kind %d", fr.kind)
					}
					n++
				}
				if n != 100 {
					b.Fatalf("%d messages, want 100", n)
				}
			}
		})
	}
}

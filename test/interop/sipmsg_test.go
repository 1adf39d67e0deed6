//go:build interop

package interop

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// This file is a deliberately small, independent SIP toolkit: the tests are
// black-box, so they build requests and read responses without the hlas sip
// package they are testing.

// optionsRequest describes an OPTIONS request addressed to the server
// itself (RFC 3261 §11: no user part in the Request-URI).
type optionsRequest struct {
	Transport string // Via transport: "UDP" or "TCP"
	SentBy    string // Via sent-by, host:port
	Target    string // the server's host:port, for the Request-URI and To
	RPort     bool   // add an empty rport parameter (RFC 3581 §3)
	Branch    string // Via branch; a fresh one when empty
	CallID    string // a fresh one when empty
	FromTag   string // a fresh one when empty
}

// Bytes renders the request. Empty identifiers are filled in first, so
// call fill to learn them before sending.
func (r *optionsRequest) Bytes() []byte {
	r.fill()
	via := fmt.Sprintf("SIP/2.0/%s %s;branch=%s", r.Transport, r.SentBy, r.Branch)
	if r.RPort {
		via += ";rport"
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "OPTIONS sip:%s SIP/2.0\r\n", r.Target)
	fmt.Fprintf(&b, "Via: %s\r\n", via)
	b.WriteString("Max-Forwards: 70\r\n")
	fmt.Fprintf(&b, "From: <sip:interop@%s>;tag=%s\r\n", r.SentBy, r.FromTag)
	fmt.Fprintf(&b, "To: <sip:%s>\r\n", r.Target)
	fmt.Fprintf(&b, "Call-ID: %s\r\n", r.CallID)
	b.WriteString("CSeq: 1 OPTIONS\r\n")
	fmt.Fprintf(&b, "Contact: <sip:interop@%s;transport=%s>\r\n", r.SentBy, strings.ToLower(r.Transport))
	b.WriteString("Accept: application/sdp\r\n")
	b.WriteString("User-Agent: hlas-interop\r\n")
	b.WriteString("Content-Length: 0\r\n\r\n")
	return b.Bytes()
}

// fill sets the empty identifiers to fresh random values.
func (r *optionsRequest) fill() {
	if r.Branch == "" {
		r.Branch = "z9hG4bK" + randomToken()
	}
	if r.CallID == "" {
		r.CallID = randomToken() + "@interop.invalid"
	}
	if r.FromTag == "" {
		r.FromTag = randomToken()
	}
}

// randomToken returns a random SIP token, unique enough for branches,
// tags and Call-IDs.
func randomToken() string { return strings.ToLower(rand.Text()) }

// compactForms maps the compact header names of RFC 3261 §7.3.3 and
// §20 that matter here to their long forms.
var compactForms = map[string]string{
	"v": "via", "f": "from", "t": "to", "i": "call-id", "m": "contact",
	"l": "content-length", "c": "content-type", "e": "content-encoding",
	"k": "supported", "s": "subject",
}

// headerField is one header field line, unfolded, with the name in
// lower-case long form.
type headerField struct{ Name, Value string }

// response is a parsed SIP response.
type response struct {
	StatusCode int
	Reason     string
	StartLine  string
	Fields     []headerField
	Body       []byte
}

// Values returns every value of the named header field (any case, long or
// compact name), split at top-level commas for the list headers.
func (r *response) Values(name string) []string {
	name = canonicalName(name)
	var out []string
	for _, f := range r.Fields {
		if f.Name == name {
			out = append(out, f.Value)
		}
	}
	return out
}

// Has reports whether the named header field is present, even if empty.
func (r *response) Has(name string) bool { return len(r.Values(name)) > 0 }

// Get returns the first value of the named header field.
func (r *response) Get(name string) string {
	if v := r.Values(name); len(v) > 0 {
		return v[0]
	}
	return ""
}

// canonicalName lower-cases a header name and expands a compact form.
func canonicalName(name string) string {
	name = strings.ToLower(strings.TrimSpace(name))
	if long, ok := compactForms[name]; ok {
		return long
	}
	return name
}

// errIncomplete means more bytes are needed to finish the message.
var errIncomplete = errors.New("incomplete SIP message")

// parseResponse parses one response from the start of data and returns the
// number of bytes it used. In stream mode (TCP) the body ends where
// Content-Length says and a missing Content-Length means no body; in
// datagram mode a missing Content-Length means the rest of the datagram.
func parseResponse(data []byte, stream bool) (*response, int, error) {
	// RFC 3261 §7.5: ignore CRLFs before the start line (keep-alives).
	skipped := len(data) - len(bytes.TrimLeft(data, "\r\n"))
	data = data[skipped:]
	end := bytes.Index(data, []byte("\r\n\r\n"))
	if end < 0 {
		return nil, 0, errIncomplete
	}
	lines := strings.Split(string(data[:end]), "\r\n")
	r := &response{StartLine: lines[0]}
	version, rest, _ := strings.Cut(lines[0], " ")
	codeText, reason, _ := strings.Cut(rest, " ")
	code, err := strconv.Atoi(codeText)
	if version != "SIP/2.0" || err != nil || len(codeText) != 3 {
		return nil, 0, fmt.Errorf("not a SIP/2.0 status line: %q", lines[0])
	}
	r.StatusCode, r.Reason = code, reason
	for _, line := range lines[1:] {
		if line != "" && (line[0] == ' ' || line[0] == '\t') && len(r.Fields) > 0 {
			// RFC 3261 §7.3.1: a continuation line folds into the previous.
			r.Fields[len(r.Fields)-1].Value += " " + strings.TrimSpace(line)
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			return nil, 0, fmt.Errorf("header line without a colon: %q", line)
		}
		r.Fields = append(r.Fields, headerField{canonicalName(name), strings.TrimSpace(value)})
	}
	bodyStart := end + 4
	bodyLen := len(data) - bodyStart
	if cl := r.Get("content-length"); cl != "" {
		if bodyLen, err = strconv.Atoi(cl); err != nil || bodyLen < 0 {
			return nil, 0, fmt.Errorf("bad Content-Length %q", cl)
		}
	} else if stream {
		bodyLen = 0
	}
	if len(data)-bodyStart < bodyLen {
		return nil, 0, errIncomplete
	}
	r.Body = data[bodyStart : bodyStart+bodyLen]
	return r, skipped + bodyStart + bodyLen, nil
}

// readUDPResponse reads datagrams from conn until a final response arrives
// or the deadline passes. It returns the final response, else the last
// provisional one, else nil when nothing came. Responses for which ours
// returns false (nil: none) are skipped, as are requests.
func readUDPResponse(conn net.PacketConn, deadline time.Time, ours func(*response) bool) (*response, error) {
	conn.SetReadDeadline(deadline)
	buf := make([]byte, 65535)
	var last *response
	for {
		n, _, err := conn.ReadFrom(buf)
		if err != nil {
			if isTimeout(err) {
				return last, nil
			}
			return last, err
		}
		if !bytes.HasPrefix(buf[:n], []byte("SIP/")) {
			// A request, not a response: stray traffic from another SIP
			// program on this host (the torture test binds 5060).
			continue
		}
		resp, _, err := parseResponse(buf[:n], false)
		if err != nil {
			return last, fmt.Errorf("unparsable datagram from hlas: %v\n%q", err, buf[:n])
		}
		if ours != nil && !ours(resp) {
			continue
		}
		last = resp
		if resp.StatusCode >= 200 {
			return resp, nil
		}
	}
}

// readStreamResponse reads from a stream connection until a final response
// arrives, the peer closes or the deadline passes, with the same result
// rules as readUDPResponse.
func readStreamResponse(conn net.Conn, deadline time.Time) (*response, error) {
	conn.SetReadDeadline(deadline)
	var pending []byte
	buf := make([]byte, 65535)
	var last *response
	for {
		for {
			resp, used, err := parseResponse(pending, true)
			if errors.Is(err, errIncomplete) {
				break
			}
			if err != nil {
				return last, fmt.Errorf("unparsable response from hlas: %v\n%q", err, pending)
			}
			pending = pending[used:]
			last = resp
			if resp.StatusCode >= 200 {
				return resp, nil
			}
		}
		n, err := conn.Read(buf)
		pending = append(pending, buf[:n]...)
		if err != nil {
			if isTimeout(err) || isClosed(err) {
				return last, nil
			}
			return last, err
		}
	}
}

// isTimeout reports whether err is a read deadline expiry.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// isClosed reports whether err means the peer closed or reset the stream.
func isClosed(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) ||
		strings.Contains(err.Error(), "connection reset")
}

// viaParams splits the first Via field value of r into its sent-by and its
// parameters (names lower-cased; a flag parameter maps to "").
func viaParams(r *response) (sentBy string, params map[string]string) {
	via := r.Get("via")
	if i := strings.IndexByte(via, ','); i >= 0 {
		via = via[:i]
	}
	parts := strings.Split(via, ";")
	fields := strings.Fields(parts[0])
	if len(fields) > 0 {
		sentBy = fields[len(fields)-1]
	}
	params = map[string]string{}
	for _, p := range parts[1:] {
		name, value, _ := strings.Cut(p, "=")
		params[strings.ToLower(strings.TrimSpace(name))] = strings.TrimSpace(value)
	}
	return sentBy, params
}

// describeStatus renders an expected or observed status for messages.
func describeStatus(code int) string {
	if code == 0 {
		return "no response"
	}
	return strconv.Itoa(code)
}

package sip

import (
	"strconv"
)

// Methods of RFC 3261 and its extensions that hlas knows. Methods are
// case-sensitive (RFC 3261 §7.1): "invite" is an unknown method.
const (
	INVITE    = "INVITE"
	ACK       = "ACK"
	CANCEL    = "CANCEL"
	BYE       = "BYE"
	REGISTER  = "REGISTER"
	OPTIONS   = "OPTIONS"
	SUBSCRIBE = "SUBSCRIBE"
	NOTIFY    = "NOTIFY"
	PUBLISH   = "PUBLISH"
	REFER     = "REFER"
	MESSAGE   = "MESSAGE"
	UPDATE    = "UPDATE"
	PRACK     = "PRACK"
	INFO      = "INFO"
)

// KnownMethods lists the methods hlas understands, in the order an Allow
// header lists them.
var KnownMethods = []string{INVITE, ACK, CANCEL, BYE, REGISTER, OPTIONS, SUBSCRIBE, NOTIFY, PUBLISH, REFER, MESSAGE, UPDATE, PRACK, INFO}

// IsKnownMethod reports whether m is one of KnownMethods (case-sensitive).
func IsKnownMethod(m string) bool {
	switch m {
	case INVITE, ACK, CANCEL, BYE, REGISTER, OPTIONS, SUBSCRIBE, NOTIFY, PUBLISH, REFER, MESSAGE, UPDATE, PRACK, INFO:
		return true
	}
	return false
}

// Message is a SIP request (*Request) or response (*Response).
type Message interface {
	// Head returns the header fields.
	Head() *Header
	// Payload returns the body.
	Payload() []byte
	// AppendTo appends the message as written on the wire.
	AppendTo(b []byte) []byte
	// String returns the message as written on the wire.
	String() string
}

// Request is a SIP request (RFC 3261 §7.1).
type Request struct {
	Method  string
	URI     URI
	Version string // "SIP/2.0"
	Header
	Body []byte
}

// Response is a SIP response (RFC 3261 §7.2).
type Response struct {
	Version    string
	StatusCode int
	Reason     string
	Header
	Body []byte
}

// Head implements Message.
func (r *Request) Head() *Header { return &r.Header }

// Head implements Message.
func (r *Response) Head() *Header { return &r.Header }

// Payload implements Message.
func (r *Request) Payload() []byte { return r.Body }

// Payload implements Message.
func (r *Response) Payload() []byte { return r.Body }

// AppendTo implements Message.
func (r *Request) AppendTo(b []byte) []byte {
	b = append(b, r.Method...)
	b = append(b, ' ')
	b = r.URI.AppendTo(b)
	b = append(b, ' ')
	b = appendVersion(b, r.Version)
	b = append(b, "\r\n"...)
	b = r.Header.appendTo(b, len(r.Body))
	return append(b, r.Body...)
}

// AppendTo implements Message.
func (r *Response) AppendTo(b []byte) []byte {
	b = appendVersion(b, r.Version)
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(r.StatusCode), 10)
	b = append(b, ' ')
	b = append(b, r.Reason...)
	b = append(b, "\r\n"...)
	b = r.Header.appendTo(b, len(r.Body))
	return append(b, r.Body...)
}

// String implements Message.
func (r *Request) String() string { return string(r.AppendTo(make([]byte, 0, r.sizeHint()))) }

// String implements Message.
func (r *Response) String() string { return string(r.AppendTo(make([]byte, 0, r.sizeHint()))) }

func (r *Request) sizeHint() int  { return 512 + len(r.Body) + 64*len(r.Fields) }
func (r *Response) sizeHint() int { return 512 + len(r.Body) + 64*len(r.Fields) }

// IsInvite reports whether this is an INVITE request.
func (r *Request) IsInvite() bool { return r.Method == INVITE }

func appendVersion(b []byte, v string) []byte {
	if v == "" {
		v = sip20
	}
	return append(b, v...)
}

func appendInt(b []byte, n int) []byte { return strconv.AppendInt(b, int64(n), 10) }

func appendCSeq(b []byte, c CSeq) []byte {
	b = strconv.AppendUint(b, uint64(c.Seq), 10)
	b = append(b, ' ')
	return append(b, c.Method...)
}

// appendTo writes the header fields: the typed ones first, in the order
// RFC 3261 §7.3.1 recommends (Via and routing first so proxies find them
// fast), then the raw fields in arrival order, then Content-Type and a
// Content-Length computed from the body. Field order across different names
// carries no meaning, and rows of one name keep their order.
func (h *Header) appendTo(b []byte, bodyLen int) []byte {
	for i := range h.Via {
		b = append(b, "Via: "...)
		b = h.Via[i].AppendTo(b)
		b = append(b, "\r\n"...)
	}
	b = appendAddrs(b, "Route: ", h.Route)
	b = appendAddrs(b, "Record-Route: ", h.RecordRoute)
	if h.MaxForwards >= 0 {
		b = append(b, "Max-Forwards: "...)
		b = appendInt(b, h.MaxForwards)
		b = append(b, "\r\n"...)
	}
	if !h.From.IsZero() {
		b = append(b, "From: "...)
		b = h.From.AppendTo(b)
		b = append(b, "\r\n"...)
	}
	if !h.To.IsZero() {
		b = append(b, "To: "...)
		b = h.To.AppendTo(b)
		b = append(b, "\r\n"...)
	}
	if h.CallID != "" {
		b = append(b, "Call-ID: "...)
		b = append(b, h.CallID...)
		b = append(b, "\r\n"...)
	}
	if h.CSeq.Method != "" {
		b = append(b, "CSeq: "...)
		b = appendCSeq(b, h.CSeq)
		b = append(b, "\r\n"...)
	}
	b = appendAddrs(b, "Contact: ", h.Contact)
	for i := range h.Fields {
		b = append(b, h.Fields[i].Name...)
		b = append(b, ": "...)
		b = append(b, h.Fields[i].Value...)
		b = append(b, "\r\n"...)
	}
	if h.ContentType != "" {
		b = append(b, "Content-Type: "...)
		b = append(b, h.ContentType...)
		b = append(b, "\r\n"...)
	}
	b = append(b, "Content-Length: "...)
	b = appendInt(b, bodyLen)
	return append(b, "\r\n\r\n"...)
}

func appendAddrs(b []byte, name string, addrs []Address) []byte {
	for i := range addrs {
		b = append(b, name...)
		b = addrs[i].AppendTo(b)
		b = append(b, "\r\n"...)
	}
	return b
}

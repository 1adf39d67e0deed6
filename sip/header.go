package sip

import (
	"strings"
)

// kind identifies the header fields the parser types eagerly ("hot" headers).
// Every other field is kept as a raw Field and parsed on demand.
type kind uint8

const (
	kOther kind = iota
	kVia
	kFrom
	kTo
	kCallID
	kCSeq
	kContact
	kRoute
	kRecordRoute
	kMaxForwards
	kContentLength
	kContentType
)

// headerName is one row of the header name table: the canonical spelling,
// its compact form (RFC 3261 §7.3.3 and the IANA registry), and its kind.
type headerName struct {
	name    string
	compact byte
	kind    kind
}

// headerNames lists the header fields hlas knows by name. The table is data:
// adding a header here is enough for lookups by full or compact name.
var headerNames = []headerName{
	{"Accept", 0, kOther},
	{"Accept-Contact", 'a', kOther},
	{"Accept-Encoding", 0, kOther},
	{"Accept-Language", 0, kOther},
	{"Alert-Info", 0, kOther},
	{"Allow", 0, kOther},
	{"Allow-Events", 'u', kOther},
	{"Authentication-Info", 0, kOther},
	{"Authorization", 0, kOther},
	{"Call-ID", 'i', kCallID},
	{"Call-Info", 0, kOther},
	{"Contact", 'm', kContact},
	{"Content-Disposition", 0, kOther},
	{"Content-Encoding", 'e', kOther},
	{"Content-Language", 0, kOther},
	{"Content-Length", 'l', kContentLength},
	{"Content-Type", 'c', kContentType},
	{"CSeq", 0, kCSeq},
	{"Date", 0, kOther},
	{"Error-Info", 0, kOther},
	{"Event", 'o', kOther},
	{"Expires", 0, kOther},
	{"Flow-Timer", 0, kOther},
	{"From", 'f', kFrom},
	{"Identity", 'y', kOther},
	{"In-Reply-To", 0, kOther},
	{"Max-Forwards", 0, kMaxForwards},
	{"MIME-Version", 0, kOther},
	{"Min-Expires", 0, kOther},
	{"Min-SE", 0, kOther},
	{"Organization", 0, kOther},
	{"P-Asserted-Identity", 0, kOther},
	{"P-Preferred-Identity", 0, kOther},
	{"Path", 0, kOther},
	{"Priority", 0, kOther},
	{"Privacy", 0, kOther},
	{"Proxy-Authenticate", 0, kOther},
	{"Proxy-Authorization", 0, kOther},
	{"Proxy-Require", 0, kOther},
	{"RAck", 0, kOther},
	{"Reason", 0, kOther},
	{"Record-Route", 0, kRecordRoute},
	{"Refer-To", 'r', kOther},
	{"Referred-By", 'b', kOther},
	{"Reject-Contact", 'j', kOther},
	{"Replaces", 0, kOther},
	{"Reply-To", 0, kOther},
	{"Request-Disposition", 'd', kOther},
	{"Require", 0, kOther},
	{"Retry-After", 0, kOther},
	{"Route", 0, kRoute},
	{"RSeq", 0, kOther},
	{"Server", 0, kOther},
	{"Session-Expires", 'x', kOther},
	{"SIP-ETag", 0, kOther},
	{"SIP-If-Match", 0, kOther},
	{"Subject", 's', kOther},
	{"Subscription-State", 0, kOther},
	{"Supported", 'k', kOther},
	{"Timestamp", 0, kOther},
	{"To", 't', kTo},
	{"Unsupported", 0, kOther},
	{"User-Agent", 0, kOther},
	{"Via", 'v', kVia},
	{"Warning", 0, kOther},
	{"WWW-Authenticate", 0, kOther},
}

// nameIndex maps a lower-case first letter to the rows starting with it, and
// compact letters to their row, so a lookup is a few length checks and one
// case-insensitive compare, with no allocation.
var nameIndex, compactIndex = func() (byFirst [256][]int, byCompact [256]int) {
	for i := range byCompact {
		byCompact[i] = -1
	}
	for i, h := range headerNames {
		c := lower(h.name[0])
		byFirst[c] = append(byFirst[c], i)
		if h.compact != 0 {
			byCompact[h.compact] = i
			byCompact[h.compact-'a'+'A'] = i
		}
	}
	return
}()

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// lookupName returns the table row for a header name written in any case or
// in compact form, or -1 for names hlas does not know.
func lookupName(name string) int {
	if len(name) == 1 {
		return compactIndex[name[0]]
	}
	if name == "" {
		return -1
	}
	for _, i := range nameIndex[lower(name[0])] {
		if len(headerNames[i].name) == len(name) && strings.EqualFold(headerNames[i].name, name) {
			return i
		}
	}
	return -1
}

// CanonicalName returns the canonical spelling of a header name, expanding
// compact forms ("v" → "Via", "call-id" → "Call-ID"). Unknown names are
// returned unchanged.
func CanonicalName(name string) string {
	if i := lookupName(name); i >= 0 {
		return headerNames[i].name
	}
	return name
}

// Field is a header field that hlas keeps raw: its name as written and its
// value with surrounding white space removed (line folds inside are kept, so
// the bytes survive a round trip).
type Field struct {
	Name  string
	Value string
	canon string // canonical name for known headers, "" otherwise
}

// matches reports whether the field has the given canonical name (or, for
// unknown headers, the same name ignoring case).
func (f *Field) matches(canon string, known bool) bool {
	if f.canon != "" {
		return known && f.canon == canon
	}
	if known {
		// A Field built as a literal has no cached canonical name.
		return CanonicalName(f.Name) == canon
	}
	return strings.EqualFold(f.Name, canon)
}

// canonical returns the canonical name of a known header, or "".
func (f *Field) canonical() string {
	if f.canon != "" {
		return f.canon
	}
	if i := lookupName(f.Name); i >= 0 {
		return headerNames[i].name
	}
	return ""
}

// CSeq is the CSeq header field (RFC 3261 §20.16).
type CSeq struct {
	Seq    uint32
	Method string
}

// Header holds the header fields common to requests and responses. The hot
// header fields are typed; every other field is in Fields, in arrival order.
type Header struct {
	Via         []Via
	From        Address
	To          Address
	CallID      string
	CSeq        CSeq
	Contact     []Address
	Route       []Address
	RecordRoute []Address
	// MaxForwards is -1 when the header is absent.
	MaxForwards int
	ContentType string
	Fields      []Field
}

// Get returns the value of the first header field with the given name (any
// case, full or compact form), unfolded. For the typed hot headers it
// renders the typed value. It returns "" when there is none.
func (h *Header) Get(name string) string {
	i := lookupName(name)
	if i >= 0 && headerNames[i].kind != kOther {
		return h.renderHot(headerNames[i].kind)
	}
	known := i >= 0
	canon := name
	if known {
		canon = headerNames[i].name
	}
	for k := range h.Fields {
		if h.Fields[k].matches(canon, known) {
			return unfold(h.Fields[k].Value)
		}
	}
	return ""
}

// Values returns every value of the named header: each row, split at commas
// outside quotes and angle brackets (RFC 3261 §7.3.1). Use it for list
// headers such as Allow, Supported, Require.
func (h *Header) Values(name string) []string {
	i := lookupName(name)
	known := i >= 0
	canon := name
	if known {
		canon = headerNames[i].name
	}
	var out []string
	for k := range h.Fields {
		if h.Fields[k].matches(canon, known) {
			splitComma(unfold(h.Fields[k].Value), func(e string) bool {
				if e != "" {
					out = append(out, e)
				}
				return true
			})
		}
	}
	return out
}

// All returns every row of the named raw header, unfolded but not split at
// commas: for headers whose values contain commas of their own, such as
// WWW-Authenticate and Proxy-Authenticate (RFC 3261 §20.44).
func (h *Header) All(name string) []string {
	i := lookupName(name)
	known := i >= 0
	canon := name
	if known {
		canon = headerNames[i].name
	}
	var out []string
	for k := range h.Fields {
		if h.Fields[k].matches(canon, known) {
			out = append(out, unfold(h.Fields[k].Value))
		}
	}
	return out
}

// Has reports whether a raw (non-typed) header field with this name is present.
func (h *Header) Has(name string) bool {
	i := lookupName(name)
	known := i >= 0
	canon := name
	if known {
		canon = headerNames[i].name
	}
	for k := range h.Fields {
		if h.Fields[k].matches(canon, known) {
			return true
		}
	}
	return false
}

// Add appends a raw header field. Hot headers must be set through their
// typed fields instead; Add panics for them so the mistake shows in tests.
func (h *Header) Add(name, value string) {
	i := lookupName(name)
	canon := ""
	if i >= 0 {
		if headerNames[i].kind != kOther {
			panic("sip: Header.Add on typed header " + name)
		}
		canon = headerNames[i].name
	}
	h.Fields = append(h.Fields, Field{Name: name, Value: value, canon: canon})
}

// Set replaces every field of that name with one holding value.
func (h *Header) Set(name, value string) {
	h.Del(name)
	h.Add(name, value)
}

// Del removes every raw field of that name.
func (h *Header) Del(name string) {
	i := lookupName(name)
	known := i >= 0
	canon := name
	if known {
		canon = headerNames[i].name
	}
	out := h.Fields[:0]
	for _, f := range h.Fields {
		if !f.matches(canon, known) {
			out = append(out, f)
		}
	}
	clear(h.Fields[len(out):])
	h.Fields = out
}

func (h *Header) renderHot(k kind) string {
	var b []byte
	switch k {
	case kVia:
		if len(h.Via) > 0 {
			b = h.Via[0].AppendTo(b)
		}
	case kFrom:
		if !h.From.IsZero() {
			b = h.From.AppendTo(b)
		}
	case kTo:
		if !h.To.IsZero() {
			b = h.To.AppendTo(b)
		}
	case kCallID:
		return h.CallID
	case kCSeq:
		if h.CSeq.Method == "" {
			return ""
		}
		b = appendCSeq(b, h.CSeq)
	case kContact:
		if len(h.Contact) > 0 {
			b = h.Contact[0].AppendTo(b)
		}
	case kRoute:
		if len(h.Route) > 0 {
			b = h.Route[0].AppendTo(b)
		}
	case kRecordRoute:
		if len(h.RecordRoute) > 0 {
			b = h.RecordRoute[0].AppendTo(b)
		}
	case kMaxForwards:
		if h.MaxForwards < 0 {
			return ""
		}
		b = appendInt(b, h.MaxForwards)
	case kContentType:
		return h.ContentType
	case kContentLength:
		return "" // computed when the message is written
	}
	return string(b)
}

// HasOption reports whether an option tag is listed in the named header
// (Require, Supported, Proxy-Require, Unsupported). Option tags are tokens,
// and tokens compare case-insensitively (RFC 3261 §7.3.1).
func (h *Header) HasOption(header, tag string) bool {
	for _, v := range h.Values(header) {
		if strings.EqualFold(v, tag) {
			return true
		}
	}
	return false
}

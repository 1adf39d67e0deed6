// Package reginfo writes and reads registration information documents,
// the bodies of the reg event package (RFC 3680): a subscriber sees the
// bindings of an address-of-record come and go.
package reginfo

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/hlas-voip/hlas/internal/xmltext"
)

// NS is the reginfo namespace and ContentType its media type
// (RFC 3680 §5.3, §7).
const (
	NS          = "urn:ietf:params:xml:ns:reginfo"
	ContentType = "application/reginfo+xml"
)

// Info is a whole reginfo document.
type Info struct {
	// Version counts the documents sent on one subscription (RFC 3680 §5.3).
	Version uint32
	// Full is true for state="full", false for state="partial".
	Full          bool
	Registrations []Registration
}

// Registration is the state of one address-of-record (RFC 3680 §5.3).
type Registration struct {
	// AOR is the address-of-record and ID a token naming this
	// registration, stable across documents; both required.
	AOR string
	ID  string
	// State is "init", "active" or "terminated".
	State    string
	Contacts []Contact
}

// Contact is one binding of an address-of-record (RFC 3680 §5.3).
type Contact struct {
	// ID is a token naming the binding, stable across documents.
	ID string
	// URI is the contact URI and DisplayName its display name, if any.
	URI         string
	DisplayName string
	// State is "active" or "terminated".
	State string
	// Event is what last happened to the binding: "registered",
	// "created", "refreshed", "shortened", "expired", "deactivated",
	// "probation", "unregistered" or "rejected" (RFC 3680 §5.2.2).
	Event string
	// Expires is the number of seconds left, DurationRegistered the number
	// of seconds since the binding was created, RetryAfter the wait after
	// "probation"; zero values are left out.
	Expires            uint32
	DurationRegistered uint32
	RetryAfter         uint32
	// Q is the binding's q-value as written ("0.8"), empty when none.
	Q string
	// CallID and CSeq are those of the REGISTER that last changed the
	// binding; CSeq is written when CallID is set or it is not zero.
	CallID string
	CSeq   uint32
}

// Build writes a reginfo document. The caller keeps the version counter
// of each subscription and decides between full and partial state (a
// partial document carries only the registrations and contacts that
// changed). The values are written as given; all text is escaped.
func Build(version uint32, full bool, regs []Registration) []byte {
	size := 128
	for i := range regs {
		size += 80 + len(regs[i].AOR) + len(regs[i].ID)
		for j := range regs[i].Contacts {
			c := &regs[i].Contacts[j]
			size += 200 + len(c.ID) + len(c.URI) + len(c.DisplayName) + len(c.CallID)
		}
	}
	b := make([]byte, 0, size+size/8)
	b = append(b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<reginfo xmlns=\""+NS+"\""...)
	b = xmltext.AppendVersionState(b, version, full)
	b = append(b, ">\n"...)
	for i := range regs {
		r := &regs[i]
		b = append(b, "<registration"...)
		b = xmltext.AppendAttr(b, "aor", r.AOR)
		b = xmltext.AppendAttr(b, "id", r.ID)
		b = xmltext.AppendAttr(b, "state", r.State)
		b = append(b, ">\n"...)
		for j := range r.Contacts {
			b = appendContact(b, &r.Contacts[j])
		}
		b = append(b, "</registration>\n"...)
	}
	return append(b, "</reginfo>\n"...)
}

func appendContact(b []byte, c *Contact) []byte {
	b = append(b, "<contact"...)
	b = xmltext.AppendAttr(b, "id", c.ID)
	b = xmltext.AppendAttr(b, "state", c.State)
	b = xmltext.AppendAttr(b, "event", c.Event)
	b = xmltext.AppendUintAttr(b, "duration-registered", c.DurationRegistered)
	b = xmltext.AppendUintAttr(b, "expires", c.Expires)
	b = xmltext.AppendUintAttr(b, "retry-after", c.RetryAfter)
	if c.Q != "" {
		b = xmltext.AppendAttr(b, "q", c.Q)
	}
	if c.CallID != "" {
		b = xmltext.AppendAttr(b, "callid", c.CallID)
	}
	if c.CallID != "" || c.CSeq != 0 {
		b = append(b, " cseq=\""...)
		b = strconv.AppendUint(b, uint64(c.CSeq), 10)
		b = append(b, '"')
	}
	b = append(b, "><uri>"...)
	b = xmltext.AppendEscaped(b, c.URI, false)
	b = append(b, "</uri>"...)
	if c.DisplayName != "" {
		b = append(b, "<display-name>"...)
		b = xmltext.AppendEscaped(b, c.DisplayName, false)
		b = append(b, "</display-name>"...)
	}
	return append(b, "</contact>\n"...)
}

type xmlInfo struct {
	Version       *string           `xml:"version,attr"`
	State         string            `xml:"state,attr"`
	Registrations []xmlRegistration `xml:"urn:ietf:params:xml:ns:reginfo registration"`
}

type xmlRegistration struct {
	AOR      string       `xml:"aor,attr"`
	ID       string       `xml:"id,attr"`
	State    string       `xml:"state,attr"`
	Contacts []xmlContact `xml:"urn:ietf:params:xml:ns:reginfo contact"`
}

type xmlContact struct {
	ID                 string  `xml:"id,attr"`
	State              string  `xml:"state,attr"`
	Event              string  `xml:"event,attr"`
	DurationRegistered string  `xml:"duration-registered,attr"`
	Expires            string  `xml:"expires,attr"`
	RetryAfter         string  `xml:"retry-after,attr"`
	Q                  string  `xml:"q,attr"`
	CallID             string  `xml:"callid,attr"`
	CSeq               string  `xml:"cseq,attr"`
	URI                *string `xml:"urn:ietf:params:xml:ns:reginfo uri"`
	DisplayName        string  `xml:"urn:ietf:params:xml:ns:reginfo display-name"`
}

// Parse reads and validates a reginfo document: at most MaxSize bytes and
// MaxDepth levels, no DTD, root <reginfo> in NS with a version and state
// full or partial, every registration with aor, id and state, every
// contact with id, state, event and uri, values from RFC 3680 §5.3.
// The error says what is wrong.
func Parse(b []byte) (*Info, error) {
	var x xmlInfo
	if err := rules().Decode(b, NS, "reginfo", &x); err != nil {
		return nil, err
	}
	info := &Info{}
	var err error
	if info.Version, info.Full, err = rules().Versioned("reginfo", x.Version, x.State); err != nil {
		return nil, err
	}
	info.Registrations = make([]Registration, 0, len(x.Registrations))
	for i := range x.Registrations {
		xr := &x.Registrations[i]
		r := Registration{AOR: strings.TrimSpace(xr.AOR), ID: xr.ID, State: xr.State}
		switch {
		case r.AOR == "":
			return nil, errors.New("reginfo: <registration> without aor")
		case r.ID == "":
			return nil, fmt.Errorf("reginfo: registration %q without id", xmltext.Clip(r.AOR))
		case !slices.Contains([]string{"init", "active", "terminated"}, r.State):
			return nil, fmt.Errorf("reginfo: registration %q: state %q, want init, active or terminated", xmltext.Clip(r.AOR), xmltext.Clip(r.State))
		}
		r.Contacts = make([]Contact, 0, len(xr.Contacts))
		for j := range xr.Contacts {
			c, err := convertContact(&xr.Contacts[j])
			if err != nil {
				return nil, fmt.Errorf("reginfo: registration %q: %v", xmltext.Clip(r.AOR), err)
			}
			r.Contacts = append(r.Contacts, c)
		}
		info.Registrations = append(info.Registrations, r)
	}
	return info, nil
}

func convertContact(x *xmlContact) (Contact, error) {
	c := Contact{ID: x.ID, State: x.State, Event: x.Event, Q: x.Q, CallID: x.CallID, DisplayName: x.DisplayName}
	switch {
	case c.ID == "":
		return c, errors.New("<contact> without id")
	case !slices.Contains([]string{"active", "terminated"}, c.State):
		return c, fmt.Errorf("contact %q: state %q, want active or terminated", xmltext.Clip(c.ID), xmltext.Clip(c.State))
	case !slices.Contains([]string{"registered", "created", "refreshed", "shortened", "expired", "deactivated", "probation", "unregistered", "rejected"}, c.Event):
		return c, fmt.Errorf("contact %q: event %q is not one of RFC 3680", xmltext.Clip(c.ID), xmltext.Clip(c.Event))
	case x.URI == nil || strings.TrimSpace(*x.URI) == "":
		return c, fmt.Errorf("contact %q has no <uri>", xmltext.Clip(c.ID))
	}
	c.URI = strings.TrimSpace(*x.URI)
	if c.Q != "" {
		if !isQValue(c.Q) {
			return c, fmt.Errorf("contact %q: q %q is not a q-value", xmltext.Clip(c.ID), xmltext.Clip(c.Q))
		}
	}
	for _, f := range []struct {
		name string
		in   string
		out  *uint32
	}{
		{"duration-registered", x.DurationRegistered, &c.DurationRegistered},
		{"expires", x.Expires, &c.Expires},
		{"retry-after", x.RetryAfter, &c.RetryAfter},
		{"cseq", x.CSeq, &c.CSeq},
	} {
		if f.in == "" {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSpace(f.in), 10, 32)
		if err != nil {
			return c, fmt.Errorf("contact %q: %s %q is not a 32-bit unsigned number", xmltext.Clip(c.ID), f.name, xmltext.Clip(f.in))
		}
		*f.out = uint32(n)
	}
	return c, nil
}

// isQValue checks the qvalue syntax of RFC 3261 §25.1: 0 to 1 with at most
// three decimals.
func isQValue(q string) bool {
	if q == "" || (q[0] != '0' && q[0] != '1') {
		return false
	}
	if len(q) == 1 {
		return true
	}
	if q[1] != '.' || len(q) > 5 {
		return false
	}
	for i := 2; i < len(q); i++ {
		if q[i] < '0' || q[i] > '9' || (q[0] == '1' && q[i] != '0') {
			return false
		}
	}
	return true
}

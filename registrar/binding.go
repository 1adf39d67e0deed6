package registrar

import (
	"net/netip"
	"time"

	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/transport"
	"github.com/hlas-voip/hlas/store"
)

// Binding is one contact registered for an address-of-record (RFC 3261
// §10.3), with how the REGISTER reached the server so that a request for
// a UA behind a NAT can be sent back the same way (RFC 5626 §6, §7).
// Lookup returns copies; the strings and Contact refer to memory the
// registrar never changes.
type Binding struct {
	// AOR is the address-of-record, "user@domain".
	AOR string
	// ID identifies the binding for its whole life (the store's key).
	ID string
	// Contact is the Contact header value as registered, without its
	// expires parameter; Contact.URI is where requests for the AOR go.
	Contact sip.Address
	// Q is the q-value in thousandths (RFC 3261 §20.10); 1000 when the
	// contact had none.
	Q int
	// Expires is when the binding lapses.
	Expires time.Time
	// CallID and CSeq are those of the REGISTER that last refreshed the
	// binding; an older CSeq of the same Call-ID cannot change it
	// (RFC 3261 §10.3 step 7).
	CallID string
	CSeq   uint32
	// Path is the Path header of that REGISTER (RFC 3327 §5.3), its values
	// comma-separated; a proxy sends requests for this binding through it
	// as a preloaded Route. Empty when there was none.
	Path string
	// Instance is the +sip.instance Contact parameter as written, RegID
	// the reg-id parameter when SIP Outbound applied (RFC 5626 §6), else 0.
	Instance string
	RegID    int
	// Source is the address the REGISTER came from (after any NAT), Local
	// the server address it arrived on, Transport UDP, TCP or TLS.
	Source    netip.AddrPort
	Local     netip.AddrPort
	Transport string
	// Conn is the stream connection the REGISTER came on, nil for UDP or
	// after a restart. Requests to a UA behind a NAT reuse it while it is
	// open (RFC 5626 §5.3): check Conn.Done() before writing.
	Conn *transport.Conn
	// UserAgent is the User-Agent header of the REGISTER.
	UserAgent string
	// Updated is when the binding was last refreshed.
	Updated time.Time
}

// Outbound reports a binding made under SIP Outbound (RFC 5626): the UA
// keeps a flow open and requests must go down that flow.
func (b *Binding) Outbound() bool { return b.RegID > 0 && b.Instance != "" }

// toStore converts a binding to its stored form.
func (b *Binding) toStore() store.Binding {
	sb := store.Binding{
		AOR: b.AOR, ID: b.ID, Contact: b.Contact.String(), Q: b.Q, Expires: b.Expires,
		CallID: b.CallID, CSeq: b.CSeq, Path: b.Path, Instance: b.Instance, RegID: b.RegID,
		Transport: b.Transport, UserAgent: b.UserAgent, Updated: b.Updated,
	}
	if b.Source.IsValid() {
		sb.Source = b.Source.String()
	}
	if b.Local.IsValid() {
		sb.Local = b.Local.String()
	}
	return sb
}

// fromStore rebuilds a binding read from the store.
func fromStore(sb store.Binding) (*Binding, error) {
	c, err := sip.ParseAddress(sb.Contact)
	if err != nil {
		return nil, err
	}
	b := &Binding{
		AOR: sb.AOR, ID: sb.ID, Contact: c, Q: sb.Q, Expires: sb.Expires, CallID: sb.CallID, CSeq: sb.CSeq,
		Path: sb.Path, Instance: sb.Instance, RegID: sb.RegID, Transport: sb.Transport,
		UserAgent: sb.UserAgent, Updated: sb.Updated,
	}
	b.Source, _ = netip.ParseAddrPort(sb.Source)
	b.Local, _ = netip.ParseAddrPort(sb.Local)
	return b, nil
}

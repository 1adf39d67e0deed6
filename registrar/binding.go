package registrar

import (
	"encoding/binary"
	"encoding/hex"
	"math"
	"net/netip"
	"strings"
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
	// NAT is the REGISTER's evidence of a NAT between the UA and the
	// server: its top Via named another address than the one it came from,
	// or the Contact holds a private, shared, link-local or loopback
	// address that is not the source (nat.go). Whether requests
	// then go over the flow is the server's rule (nat.contact).
	NAT bool
}

// Outbound reports a binding made under SIP Outbound (RFC 5626): the UA
// keeps a flow open and requests must go down that flow.
func (b *Binding) Outbound() bool { return b.RegID > 0 && b.Instance != "" }

// binding is how the location service keeps a Binding: 96 bytes with one
// pointer-free string holding every variable-length field (the AOR
// included), so that a registered contact costs two heap objects (its
// record, which holds the first binding, and that string) and no parsed
// form. The Contact is parsed again when a Binding is handed out (about
// 100 ns, no allocation), the ID is a number formatted on demand, times
// are Unix nanoseconds (no *time.Location), addresses carry no zone
// pointer, and the transport is an index into the usual names.
//
// Bindings are changed only under the location's write lock; Lookup
// copies them under its read lock.
type binding struct {
	data    string // the fields named field*, each a uvarint length and its bytes; trailing empty ones omitted
	id      uint64 // the ID's 16 hex digits, unless flagIDText
	expires int64  // Unix nanoseconds
	updated int64  // Unix nanoseconds
	conn    *transport.Conn
	source  addrPort
	local   addrPort
	cseq    uint32
	regID   int32 // 0..2^31-1 (RFC 5626 §4.2)
	q       uint16
	proto   uint8 // proto*
	flags   uint8 // flag*
}

// The variable-length fields of a binding, in the order they are packed.
const (
	fieldAOR = iota // also the key of the binding's record
	fieldContact
	fieldCallID
	fieldPath
	fieldInstance
	fieldUserAgent
	fieldID         // an ID that is not 16 lower-case hex digits (flagIDText)
	fieldTransport  // a transport without a proto* index (protoOther)
	fieldSourceZone // the zones of IPv6 link-local addresses, rare
	fieldLocalZone
	numFields
)

// binding.flags.
const (
	flagIDText  uint8 = 1 << iota // the ID is fieldID, not id
	flagFresh                     // made by the REGISTER being served (apply only)
	flagSource4                   // source is an IPv4 address
	flagSource6                   // source is an IPv6 address
	flagLocal4                    // local is an IPv4 address
	flagLocal6                    // local is an IPv6 address
	flagNAT                       // Binding.NAT
)

// binding.proto: the transports a REGISTER arrives on.
const (
	protoNone uint8 = iota
	protoUDP
	protoTCP
	protoTLS
	protoWS
	protoWSS
	protoOther // the name is fieldTransport
)

func protoIndex(name string) uint8 {
	switch name {
	case "":
		return protoNone
	case transport.UDP:
		return protoUDP
	case transport.TCP:
		return protoTCP
	case transport.TLS:
		return protoTLS
	case "WS":
		return protoWS
	case "WSS":
		return protoWSS
	}
	return protoOther
}

// transportName returns the binding's transport without allocating: the
// constants are shared.
func (b *binding) transportName() string {
	switch b.proto {
	case protoUDP:
		return transport.UDP
	case protoTCP:
		return transport.TCP
	case protoTLS:
		return transport.TLS
	case protoWS:
		return "WS"
	case protoWSS:
		return "WSS"
	case protoOther:
		return b.field(fieldTransport)
	}
	return ""
}

// addrPort is a netip.AddrPort without its zone (kept in the binding's
// data when there is one) and its family (in the binding's flags): 18
// bytes and no pointer instead of 32 and one.
type addrPort struct {
	ip   [16]byte
	port uint16
}

// setAddrs records the addresses of the flow.
func (b *binding) setAddrs(source, local netip.AddrPort, fs *[numFields]string) {
	b.flags &^= flagSource4 | flagSource6 | flagLocal4 | flagLocal6
	b.source, b.flags = packAddr(source, b.flags, flagSource4, flagSource6)
	b.local, b.flags = packAddr(local, b.flags, flagLocal4, flagLocal6)
	fs[fieldSourceZone], fs[fieldLocalZone] = source.Addr().Zone(), local.Addr().Zone()
}

func packAddr(ap netip.AddrPort, flags, is4, is6 uint8) (addrPort, uint8) {
	switch a := ap.Addr(); {
	case a.Is4():
		return addrPort{ip: a.As16(), port: ap.Port()}, flags | is4
	case a.Is6():
		return addrPort{ip: a.As16(), port: ap.Port()}, flags | is6
	}
	return addrPort{}, flags
}

// sourceAddr and localAddr return the flow's addresses; zone is the
// field of that address's zone.
func (b *binding) sourceAddr(zone string) netip.AddrPort {
	return b.source.unpack(b.flags&flagSource4 != 0, b.flags&flagSource6 != 0, zone)
}

func (b *binding) localAddr(zone string) netip.AddrPort {
	return b.local.unpack(b.flags&flagLocal4 != 0, b.flags&flagLocal6 != 0, zone)
}

func (a addrPort) unpack(is4, is6 bool, zone string) netip.AddrPort {
	var ip netip.Addr
	switch {
	case is4:
		ip = netip.AddrFrom4([4]byte(a.ip[12:]))
	case is6:
		ip = netip.AddrFrom16(a.ip)
		if zone != "" {
			ip = ip.WithZone(zone)
		}
	default:
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(ip, a.port)
}

// field returns one of the packed fields.
func (b *binding) field(f int) string { return fieldOf(b.data, f) }

// fieldOf returns one of the fields packed in data.
func fieldOf(data string, f int) string {
	s := data
	for i := 0; ; i++ {
		if s == "" {
			return ""
		}
		n, w := uvarint(s)
		s = s[w:]
		if i == f {
			return s[:n]
		}
		s = s[n:]
	}
}

// fields returns every packed field.
func (b *binding) fields() (fs [numFields]string) {
	s := b.data
	for i := 0; i < numFields && s != ""; i++ {
		n, w := uvarint(s)
		s = s[w:]
		fs[i], s = s[:n], s[n:]
	}
	return fs
}

// uvarint decodes a length written by pack; the data are the registrar's
// own, so they are well formed.
func uvarint(s string) (n, width int) {
	var x uint64
	var shift uint
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x80 {
			return int(x | uint64(c)<<shift), i + 1
		}
		x |= uint64(c&0x7f) << shift
		shift += 7
	}
	return 0, len(s)
}

// pack sets b.data to the fields, one allocation, unless it holds the
// same fields already: a refresh that changes nothing but numbers (CSeq,
// expiry) allocates nothing.
func (b *binding) pack(fs *[numFields]string) {
	if b.data != "" && b.fields() == *fs {
		return
	}
	last, size := -1, 0
	for i, f := range fs {
		if f != "" {
			last = i
		}
		size += len(f) + varintLen(len(f))
	}
	size -= numFields - 1 - last // trailing empty fields are left out
	var sb strings.Builder
	sb.Grow(size)
	var tmp [binary.MaxVarintLen64]byte
	for _, f := range fs[:last+1] {
		sb.Write(binary.AppendUvarint(tmp[:0], uint64(len(f))))
		sb.WriteString(f)
	}
	b.data = sb.String()
}

func varintLen(n int) int {
	w := 1
	for ; n >= 0x80; n >>= 7 {
		w++
	}
	return w
}

// live reports whether the binding has not lapsed at now (Unix ns).
func (b *binding) live(now int64) bool { return b.expires > now }

// idString formats the binding's ID.
func (b *binding) idString() string {
	if b.flags&flagIDText != 0 {
		return b.field(fieldID)
	}
	var buf [16]byte
	return string(appendHexID(buf[:0], b.id))
}

// appendHexID appends a numeric ID's text form, 16 lower-case hex digits.
func appendHexID(dst []byte, id uint64) []byte {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], id)
	return hex.AppendEncode(dst, n[:])
}

// setID keeps id as a number when it has the form newID gives it.
func (b *binding) setID(id string, fs *[numFields]string) {
	if n, ok := parseHexID(id); ok {
		b.id, b.flags = n, b.flags&^flagIDText
		fs[fieldID] = ""
		return
	}
	b.id, b.flags = 0, b.flags|flagIDText
	fs[fieldID] = id
}

func parseHexID(s string) (uint64, bool) {
	if len(s) != 16 {
		return 0, false
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case '0' <= c && c <= '9':
			n = n<<4 | uint64(c-'0')
		case 'a' <= c && c <= 'f':
			n = n<<4 | uint64(c-'a'+10)
		default:
			return 0, false
		}
	}
	return n, true
}

// contact parses the binding's Contact; it was valid when stored.
func (b *binding) contact() sip.Address {
	a, _ := sip.ParseAddress(b.field(fieldContact))
	return a
}

// contactFrom is contact, taking the parse of a request contact of the
// same text when there is one: the same text parses the same.
func (b *binding) contactFrom(cs []contact) sip.Address {
	text := b.field(fieldContact)
	for i := range cs {
		if cs[i].text == text {
			return cs[i].parsed
		}
	}
	a, _ := sip.ParseAddress(text)
	return a
}

// export returns the Binding b is the compact form of.
func (b *binding) export() Binding {
	fs := b.fields()
	out := Binding{
		AOR: fs[fieldAOR], ID: b.idString(), Q: int(b.q),
		Expires: time.Unix(0, b.expires), CallID: fs[fieldCallID], CSeq: b.cseq,
		Path: fs[fieldPath], Instance: fs[fieldInstance], RegID: int(b.regID),
		Source: b.sourceAddr(fs[fieldSourceZone]), Local: b.localAddr(fs[fieldLocalZone]),
		Transport: b.transportName(), Conn: b.conn, UserAgent: fs[fieldUserAgent],
		Updated: time.Unix(0, b.updated), NAT: b.flags&flagNAT != 0,
	}
	out.Contact, _ = sip.ParseAddress(fs[fieldContact])
	return out
}

// flow is what a REGISTER says about how it arrived, common to the
// bindings it makes.
type flow struct {
	aor, callID, path, userAgent string
	cseq                         uint32
	source, local                netip.AddrPort
	transport                    string
	conn                         *transport.Conn
	updated                      int64 // Unix nanoseconds
	viaNAT                       bool  // the top Via showed a NAT (viaShowsNAT)
}

// set makes b the binding of contact c registered by a REGISTER that came
// over f, keeping b's ID and, when nothing in them changed, its data.
func (b *binding) set(f *flow, c *contact, expires int64) {
	var fs [numFields]string
	if b.flags&flagIDText != 0 {
		fs[fieldID] = b.field(fieldID)
	}
	fs[fieldAOR], fs[fieldContact], fs[fieldCallID], fs[fieldPath] = f.aor, c.text, f.callID, f.path
	fs[fieldInstance], fs[fieldUserAgent] = c.instance, f.userAgent
	b.proto = protoIndex(f.transport)
	if b.proto == protoOther {
		fs[fieldTransport] = f.transport
	}
	b.setAddrs(f.source, f.local, &fs)
	b.pack(&fs)
	b.expires, b.updated, b.cseq, b.conn = expires, f.updated, f.cseq, f.conn
	b.q, b.regID = uint16(c.q), int32(c.regID)
	b.setNAT(f.viaNAT || contactShowsNAT(&c.parsed.URI, f.source))
}

func (b *binding) setNAT(nat bool) {
	if nat {
		b.flags |= flagNAT
	} else {
		b.flags &^= flagNAT
	}
}

// toStore converts a binding to its stored form. The fields it has to
// format — the ID and the addresses — share one string: one allocation
// instead of three.
func (b *binding) toStore() store.Binding {
	fs := b.fields()
	sb := store.Binding{
		AOR: fs[fieldAOR], Contact: fs[fieldContact], Q: int(b.q), Expires: time.Unix(0, b.expires),
		CallID: fs[fieldCallID], CSeq: b.cseq, Path: fs[fieldPath], Instance: fs[fieldInstance], RegID: int(b.regID),
		Transport: b.transportName(), UserAgent: fs[fieldUserAgent], Updated: time.Unix(0, b.updated),
		NAT: b.flags&flagNAT != 0,
	}
	var buf [16 + 2*len("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535")]byte
	t := buf[:0]
	if b.flags&flagIDText != 0 {
		sb.ID = fs[fieldID]
	} else {
		t = appendHexID(t, b.id)
	}
	id := len(t)
	// AppendTo writes what String does for a valid address.
	if src := b.sourceAddr(fs[fieldSourceZone]); src.IsValid() {
		t = src.AppendTo(t)
	}
	source := len(t)
	if local := b.localAddr(fs[fieldLocalZone]); local.IsValid() {
		t = local.AppendTo(t)
	}
	all := string(t)
	if b.flags&flagIDText == 0 {
		sb.ID = all[:id]
	}
	sb.Source, sb.Local = all[id:source], all[source:]
	return sb
}

// fromStore rebuilds a binding read from the store: one allocation, its
// data. The Contact must parse. A q-value or reg-id out of range (the
// registrar writes none) is clamped. The NAT flag is the stored one or
// what the Contact and source show, so that a row written before the flag
// was stored is judged as it would be now, as far as it can be.
func fromStore(sb *store.Binding) (binding, error) {
	contact, err := sip.ParseAddress(sb.Contact)
	if err != nil {
		return binding{}, err
	}
	var b binding
	var fs [numFields]string
	fs[fieldAOR], fs[fieldContact], fs[fieldCallID], fs[fieldPath] = sb.AOR, sb.Contact, sb.CallID, sb.Path
	fs[fieldInstance], fs[fieldUserAgent] = sb.Instance, sb.UserAgent
	b.setID(sb.ID, &fs)
	b.proto = protoIndex(sb.Transport)
	if b.proto == protoOther {
		fs[fieldTransport] = sb.Transport
	}
	src, _ := netip.ParseAddrPort(sb.Source)
	local, _ := netip.ParseAddrPort(sb.Local)
	b.setAddrs(src, local, &fs)
	b.pack(&fs)
	b.expires, b.updated, b.cseq = sb.Expires.UnixNano(), sb.Updated.UnixNano(), sb.CSeq
	b.q = uint16(min(max(sb.Q, 0), 1000))
	b.regID = int32(min(max(sb.RegID, 0), math.MaxInt32))
	b.setNAT(sb.NAT || contactShowsNAT(&contact.URI, src))
	return b, nil
}

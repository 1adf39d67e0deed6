package stund

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// failsafe bounds every wait on the network in these tests; it is a guard
// against hangs, never a measured threshold.
const failsafe = 10 * time.Second

var (
	local4  = netip.MustParseAddrPort("192.0.2.1:3478")
	remote4 = netip.MustParseAddrPort("198.51.100.7:40001")
	remote6 = netip.MustParseAddrPort("[2001:db8::7]:40002")
)

// request builds a STUN message with pion.
func request(t testing.TB, setters ...stun.Setter) []byte {
	t.Helper()
	m, err := stun.Build(append([]stun.Setter{stun.TransactionID}, setters...)...)
	if err != nil {
		t.Fatal(err)
	}
	return m.Raw
}

// decode parses an answer with pion, failing the test if it is not STUN.
func decode(t *testing.T, b []byte) *stun.Message {
	t.Helper()
	m := new(stun.Message)
	if err := stun.Decode(b, m); err != nil {
		t.Fatalf("answer %x does not decode: %v", b, err)
	}
	return m
}

// unknownAttr is a comprehension-required attribute no RFC defines.
const unknownAttr stun.AttrType = 0x7F01

func TestAnswer(t *testing.T) {
	mapped4 := netip.MustParseAddrPort("[::ffff:198.51.100.7]:40001")
	tests := []struct {
		name    string
		req     []byte
		remote  netip.AddrPort
		want    Result
		unknown []stun.AttrType // in the 420
		fp      bool            // FINGERPRINT expected in the answer
	}{
		{name: "RFC8489_6.3.1.2/IPv4", req: request(t, stun.BindingRequest), remote: remote4, want: Answered},
		{name: "RFC8489_6.3.1.2/IPv6", req: request(t, stun.BindingRequest), remote: remote6, want: Answered},
		{name: "RFC8489_6.3.1.2/IPv4-mapped source answered as IPv4", req: request(t, stun.BindingRequest), remote: mapped4, want: Answered},
		{name: "RFC8489_14.7/FINGERPRINT echoed", req: request(t, stun.BindingRequest, stun.Fingerprint), remote: remote4, want: Answered, fp: true},
		{name: "RFC8489_14.14/SOFTWARE of the client ignored", req: request(t, stun.BindingRequest, stun.NewSoftware("client 1.0")), remote: remote4, want: Answered},
		{name: "RFC8489_15/unknown comprehension-optional ignored", req: request(t, stun.BindingRequest, stun.RawAttribute{Type: 0xC001, Value: []byte{1}}), remote: remote4, want: Answered},
		{name: "RFC8489_9/credentials ignored", req: request(t, stun.BindingRequest, stun.NewUsername("alice"),
			stun.NewShortTermIntegrity("secret"), stun.Fingerprint), remote: remote4, want: Answered, fp: true},
		{name: "RFC8489_6.3.1.1/unknown comprehension-required", req: request(t, stun.BindingRequest,
			stun.RawAttribute{Type: unknownAttr, Value: []byte{1, 2, 3, 4}}), remote: remote4, want: UnknownAttribute, unknown: []stun.AttrType{unknownAttr}},
		{name: "RFC5780_7.2/CHANGE-REQUEST not supported", req: request(t, stun.BindingRequest,
			stun.RawAttribute{Type: stun.AttrChangeRequest, Value: []byte{0, 0, 0, 6}}, stun.Fingerprint), remote: remote4,
			want: UnknownAttribute, unknown: []stun.AttrType{stun.AttrChangeRequest}, fp: true},
		{name: "RFC8489_6.3.1.1/several unknown", req: request(t, stun.BindingRequest,
			stun.RawAttribute{Type: stun.AttrChangeRequest, Value: []byte{0, 0, 0, 0}},
			stun.RawAttribute{Type: 0xC001, Value: []byte{1}},
			stun.RawAttribute{Type: unknownAttr, Value: nil}), remote: remote6,
			want: UnknownAttribute, unknown: []stun.AttrType{stun.AttrChangeRequest, unknownAttr}},
		{name: "RFC8489_6.3.2/Binding indication absorbed", req: request(t, stun.NewType(stun.MethodBinding, stun.ClassIndication)), remote: remote4, want: Indication},
		{name: "RFC8489_6.3.2/indication with FINGERPRINT absorbed", req: request(t, stun.NewType(stun.MethodBinding, stun.ClassIndication), stun.Fingerprint), remote: remote4, want: Indication},
		{name: "response dropped", req: request(t, stun.BindingSuccess, &stun.XORMappedAddress{IP: net.IPv4(1, 2, 3, 4), Port: 5}), remote: remote4, want: Unsupported},
		{name: "error response dropped", req: request(t, stun.BindingError, stun.CodeBadRequest), remote: remote4, want: Unsupported},
		{name: "TURN Allocate dropped", req: request(t, stun.NewType(stun.MethodAllocate, stun.ClassRequest)), remote: remote4, want: Unsupported},
		{name: "RFC3489 request without magic cookie dropped", req: classic(), remote: remote4, want: Malformed},
		{name: "RFC8489_7.3/wrong FINGERPRINT dropped", req: corruptFingerprint(request(t, stun.BindingRequest, stun.Fingerprint)), remote: remote4, want: Malformed},
		{name: "RFC8489_14.7/FINGERPRINT not last dropped", req: fingerprintNotLast(t), remote: remote4, want: Malformed},
		{name: "RFC8489_5/length beyond the datagram", req: request(t, stun.BindingRequest, stun.NewSoftware("abcd"))[:24], remote: remote4, want: Malformed},
		{name: "RFC8489_14/attribute beyond the message", req: attrOverrun(t), remote: remote4, want: Malformed},
		{name: "RFC8489_5/leading bits set", req: withFirstByte(request(t, stun.BindingRequest), 0x40), remote: remote4, want: Malformed},
		{name: "header only, truncated", req: request(t, stun.BindingRequest)[:19], remote: remote4, want: Malformed},
		{name: "SIP", req: []byte("OPTIONS sip:a@b SIP/2.0\r\n\r\n"), remote: remote4, want: Malformed},
		{name: "invalid source", req: request(t, stun.BindingRequest), remote: netip.AddrPort{}, want: Malformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(Config{})
			prefix := []byte("prefix")
			out := s.Answer(prefix, tt.req, local4, tt.remote)
			if !bytes.HasPrefix(out, prefix) {
				t.Fatalf("Answer did not append to dst: %x", out)
			}
			out = out[len(prefix):]
			st := s.Stats()
			for r, n := range st {
				want := uint64(0)
				if Result(r) == tt.want {
					want = 1
				}
				if n != want {
					t.Errorf("Stats[%s] = %d, want %d", Result(r), n, want)
				}
			}
			if tt.want != Answered && tt.want != UnknownAttribute {
				if len(out) != 0 {
					t.Fatalf("answer %x to a datagram that must be dropped", out)
				}
				return
			}
			m := decode(t, out)
			req := decode(t, tt.req)
			if m.TransactionID != req.TransactionID {
				t.Errorf("transaction ID %x, want the request's %x", m.TransactionID, req.TransactionID)
			}
			var sw stun.Software
			if err := sw.GetFrom(m); err != nil || sw.String() != "hlas" {
				t.Errorf("SOFTWARE %q (%v), want hlas", sw, err)
			}
			if got := m.Contains(stun.AttrFingerprint); got != tt.fp {
				t.Errorf("FINGERPRINT present %v, want %v", got, tt.fp)
			} else if got {
				if err := stun.Fingerprint.Check(m); err != nil {
					t.Errorf("FINGERPRINT: %v", err)
				}
				if last := m.Attributes[len(m.Attributes)-1].Type; last != stun.AttrFingerprint {
					t.Errorf("last attribute %s, want FINGERPRINT", last)
				}
			}
			if tt.want == UnknownAttribute {
				if m.Type != stun.BindingError {
					t.Fatalf("type %s, want a Binding error response", m.Type)
				}
				var ec stun.ErrorCodeAttribute
				if err := ec.GetFrom(m); err != nil || ec.Code != stun.CodeUnknownAttribute {
					t.Errorf("ERROR-CODE %v (%v), want 420", ec, err)
				}
				var ua stun.UnknownAttributes
				if err := ua.GetFrom(m); err != nil {
					t.Fatalf("UNKNOWN-ATTRIBUTES: %v", err)
				}
				if got, want := ua.String(), stun.UnknownAttributes(tt.unknown).String(); got != want {
					t.Errorf("UNKNOWN-ATTRIBUTES %s, want %s", got, want)
				}
				if m.Contains(stun.AttrXORMappedAddress) {
					t.Errorf("420 carries XOR-MAPPED-ADDRESS")
				}
				return
			}
			if m.Type != stun.BindingSuccess {
				t.Fatalf("type %s, want a Binding success response", m.Type)
			}
			var xa stun.XORMappedAddress
			if err := xa.GetFrom(m); err != nil {
				t.Fatalf("XOR-MAPPED-ADDRESS: %v", err)
			}
			got, _ := netip.AddrFromSlice(xa.IP)
			want := netip.AddrPortFrom(tt.remote.Addr().Unmap(), tt.remote.Port())
			if netip.AddrPortFrom(got, uint16(xa.Port)) != want {
				t.Errorf("XOR-MAPPED-ADDRESS %s, want %s", xa, want)
			}
			if want.Addr().Is4() && len(m.Raw) != 20+12+8+map[bool]int{true: 8}[tt.fp] {
				t.Errorf("answer of %d bytes, want header, XOR-MAPPED-ADDRESS, SOFTWARE and FINGERPRINT only", len(m.Raw))
			}
		})
	}
}

// classic is an RFC 3489 Binding request: a 16-byte transaction ID and no
// magic cookie.
func classic() []byte {
	b := make([]byte, 20)
	b[1] = 0x01
	copy(b[4:], "0123456789abcdef")
	return b
}

func corruptFingerprint(b []byte) []byte {
	b = append([]byte(nil), b...)
	b[len(b)-1] ^= 0xFF
	return b
}

// fingerprintNotLast has a correct FINGERPRINT followed by another
// attribute, which RFC 8489 §14.7 does not allow.
func fingerprintNotLast(t *testing.T) []byte {
	b := request(t, stun.BindingRequest, stun.Fingerprint)
	b = append(b, 0x80, 0x22, 0, 4, 'x', 'y', 'z', 'w')
	binary.BigEndian.PutUint16(b[2:4], uint16(len(b)-20))
	return b
}

// attrOverrun has an attribute whose length runs past the message end.
func attrOverrun(t *testing.T) []byte {
	b := request(t, stun.BindingRequest, stun.NewSoftware("abcd"))
	binary.BigEndian.PutUint16(b[22:24], 40)
	return b
}

func withFirstByte(b []byte, v byte) []byte {
	b = append([]byte(nil), b...)
	b[0] |= v
	return b
}

func TestAnswerListsAtMostMaxUnknown(t *testing.T) {
	var setters []stun.Setter
	for i := range 20 {
		setters = append(setters, stun.RawAttribute{Type: stun.AttrType(0x7000 + i), Value: []byte{1, 2, 3, 4}})
	}
	s := New(Config{})
	out := s.Answer(nil, request(t, append([]stun.Setter{stun.BindingRequest}, setters...)...), local4, remote4)
	var ua stun.UnknownAttributes
	if err := ua.GetFrom(decode(t, out)); err != nil {
		t.Fatal(err)
	}
	if len(ua) != maxUnknown || ua[0] != 0x7000 {
		t.Fatalf("UNKNOWN-ATTRIBUTES %s, want the first %d", ua, maxUnknown)
	}
}

func TestSoftwareConfig(t *testing.T) {
	s := New(Config{Software: "hlas/9.9"})
	var sw stun.Software
	if err := sw.GetFrom(decode(t, s.Answer(nil, request(t, stun.BindingRequest), local4, remote4))); err != nil || sw.String() != "hlas/9.9" {
		t.Fatalf("SOFTWARE %q (%v)", sw, err)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []Config{{Rate: -1}, {Burst: -1}, {MaxSources: -1}, {Software: strings.Repeat("x", 764)}} {
		if err := c.Validate(); err == nil {
			t.Errorf("Validate(%+v) accepted it", c)
		}
	}
	if err := (Config{}).Validate(); err != nil {
		t.Errorf("zero Config: %v", err)
	}
	c := Config{Rate: 5}.withDefaults()
	if c.Burst != 10 || c.MaxSources != DefaultMaxSources || c.Software != "hlas" {
		t.Errorf("defaults %+v", c)
	}
}

// clock is a fake monotonic clock for the rate limiter.
type clock struct{ t time.Duration }

func (c *clock) now() time.Duration { return c.t }

func TestRateLimit(t *testing.T) {
	s := New(Config{Rate: 2, Burst: 3})
	c := &clock{t: time.Hour}
	s.now = c.now
	req := request(t, stun.BindingRequest)
	answered := func(remote netip.AddrPort) bool { return len(s.Answer(nil, req, local4, remote)) > 0 }

	// A burst of 3, then nothing until tokens come back at 2 per second.
	for i := range 5 {
		if got, want := answered(remote4), i < 3; got != want {
			t.Fatalf("request %d answered %v, want %v", i+1, got, want)
		}
	}
	if st := s.Stats(); st[Answered] != 3 || st[RateLimited] != 2 {
		t.Fatalf("stats %v, want 3 answered and 2 rate limited", st)
	}
	// Another port of the same host shares the limit; another host does not.
	if answered(netip.AddrPortFrom(remote4.Addr(), 9)) {
		t.Fatal("another port of a limited source was answered")
	}
	if !answered(netip.MustParseAddrPort("198.51.100.8:40001")) {
		t.Fatal("another source was limited")
	}
	c.t += 500 * time.Millisecond // one token
	if !answered(remote4) || answered(remote4) {
		t.Fatal("after half a second at 2/s, want exactly one more answer")
	}
	c.t += time.Hour // refilled to the burst, not beyond
	for i := range 4 {
		if got, want := answered(remote4), i < 3; got != want {
			t.Fatalf("after an hour, request %d answered %v, want %v", i+1, got, want)
		}
	}

	// IPv6: the /64 is the source.
	for i := range 3 {
		if !answered(netip.MustParseAddrPort("[2001:db8:0:1::1]:5060")) {
			t.Fatalf("IPv6 request %d not answered", i+1)
		}
	}
	if answered(netip.MustParseAddrPort("[2001:db8:0:1::2]:5060")) {
		t.Fatal("another address of a limited /64 was answered")
	}
	if !answered(netip.MustParseAddrPort("[2001:db8:0:2::1]:5060")) {
		t.Fatal("another /64 was limited")
	}
	// Malformed datagrams do not spend tokens: they cost no answer.
	s2 := New(Config{Rate: 1, Burst: 1})
	s2.now = c.now
	for range 3 {
		s2.Answer(nil, classic(), local4, remote4)
	}
	if len(s2.Answer(nil, req, local4, remote4)) == 0 {
		t.Fatal("malformed datagrams used up the source's tokens")
	}
	// Indications do: they are traffic the source sends us all the same.
	s2.Answer(nil, request(t, stun.NewType(stun.MethodBinding, stun.ClassIndication)), local4, remote6)
	if len(s2.Answer(nil, req, local4, remote6)) != 0 {
		t.Fatal("an indication did not count against the rate")
	}
	if st := s2.Stats(); st[RateLimited] != 1 || st[Indication] != 1 || st[Malformed] != 3 {
		t.Fatalf("stats %v", st)
	}
}

// TestRateLimitTableBound checks that the limiter remembers at most
// MaxSources sources: beyond, new ones share the overflow bucket, and a
// sweep forgets sources that have been quiet long enough to refill.
func TestRateLimitTableBound(t *testing.T) {
	s := New(Config{Rate: 1, Burst: 2, MaxSources: 2})
	c := &clock{t: time.Hour}
	s.now = c.now
	req := request(t, stun.BindingRequest)
	src := func(i int) netip.AddrPort {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}), 1000)
	}
	answered := func(i int) bool { return len(s.Answer(nil, req, local4, src(i))) > 0 }
	if !answered(1) || !answered(2) {
		t.Fatal("first sources limited")
	}
	// Sources 3 to 6 share the overflow bucket: 2 answers between them.
	n := 0
	for i := 3; i <= 6; i++ {
		if answered(i) {
			n++
		}
	}
	if n != 2 || s.limit.sources() != 2 {
		t.Fatalf("%d overflow answers with %d sources remembered, want 2 and 2", n, s.limit.sources())
	}
	// Source 1 stays busy, source 2 goes quiet and is forgotten.
	c.t += time.Second
	answered(1)
	c.t += time.Second
	answered(1)
	if !answered(7) {
		t.Fatal("a new source was not answered after a sweep made room")
	}
	if got := s.limit.sources(); got != 2 {
		t.Fatalf("%d sources remembered, want 2 (1 and 7)", got)
	}
	// Source 1 kept its (spent) bucket through the sweep.
	answered(1)
	if answered(1) {
		t.Fatal("a busy source got a fresh bucket from the sweep")
	}
}

func TestMetrics(t *testing.T) {
	s := New(Config{Rate: 1, Burst: 1})
	req := request(t, stun.BindingRequest)
	s.Answer(nil, req, local4, remote4)
	s.Answer(nil, req, local4, remote4)
	s.Answer(nil, classic(), local4, remote4)
	want := `
# HELP hlas_stun_requests_total STUN datagrams received, by outcome: answered, unknown_attribute (420 sent), indication, rate_limited, malformed, unsupported.
# TYPE hlas_stun_requests_total counter
hlas_stun_requests_total{result="answered"} 1
hlas_stun_requests_total{result="indication"} 0
hlas_stun_requests_total{result="malformed"} 1
hlas_stun_requests_total{result="rate_limited"} 1
hlas_stun_requests_total{result="unknown_attribute"} 0
hlas_stun_requests_total{result="unsupported"} 0
`
	if err := testutil.CollectAndCompare(s, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
}

// TestListenPionClient answers a real STUN client (pion's) over loopback
// sockets, IPv4 and IPv6.
func TestListenPionClient(t *testing.T) {
	for _, host := range []string{"127.0.0.1", "::1"} {
		t.Run(host, func(t *testing.T) {
			if host == "::1" {
				if c, err := net.ListenPacket("udp6", "[::1]:0"); err != nil {
					t.Skipf("no IPv6 loopback: %v", err)
				} else {
					c.Close()
				}
			}
			s := New(Config{})
			defer s.Close()
			addr, err := s.Listen(net.JoinHostPort(host, "0"))
			if err != nil {
				t.Fatal(err)
			}
			if got := s.Addrs(); len(got) != 1 || got[0] != addr || addr.Port() == 0 {
				t.Fatalf("Addrs %v, Listen returned %s", got, addr)
			}
			conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(addr))
			if err != nil {
				t.Fatal(err)
			}
			client, err := stun.NewClient(conn)
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			for _, fp := range []bool{false, true} {
				setters := []stun.Setter{stun.TransactionID, stun.BindingRequest}
				if fp {
					setters = append(setters, stun.Fingerprint)
				}
				res := new(stun.Message)
				var resErr error
				done := make(chan struct{})
				if err := client.Start(stun.MustBuild(setters...), func(e stun.Event) {
					// The event's message is the client's read buffer,
					// valid only until the handler returns.
					resErr = e.Error
					if resErr == nil {
						resErr = e.Message.CloneTo(res)
					}
					close(done)
				}); err != nil {
					t.Fatal(err)
				}
				select {
				case <-done:
				case <-time.After(failsafe):
					t.Fatal("no answer")
				}
				if resErr != nil {
					t.Fatal(resErr)
				}
				var xa stun.XORMappedAddress
				if err := xa.GetFrom(res); err != nil {
					t.Fatal(err)
				}
				mapped, _ := netip.AddrFromSlice(xa.IP)
				local := conn.LocalAddr().(*net.UDPAddr).AddrPort()
				if mapped.Unmap() != local.Addr().Unmap() || uint16(xa.Port) != local.Port() {
					t.Fatalf("XOR-MAPPED-ADDRESS %s, want the client's %s", xa, local)
				}
				if res.Contains(stun.AttrFingerprint) != fp {
					t.Fatalf("FINGERPRINT present %v, want %v", !fp, fp)
				}
			}
			if st := s.Stats(); st[Answered] != 2 {
				t.Fatalf("stats %v, want 2 answered", st)
			}
		})
	}
}

func TestListenDualStackSamePortAndClose(t *testing.T) {
	s := New(Config{})
	a4, err := s.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if c, err := net.ListenPacket("udp6", "[::1]:0"); err == nil {
		c.Close()
		if _, err := s.Listen(net.JoinHostPort("::1", itoa(a4.Port()))); err != nil {
			t.Errorf("IPv6 on the IPv4 socket's port: %v", err)
		}
	}
	if _, err := s.Listen(a4.String()); err == nil {
		t.Error("a second socket on a bound address was opened")
	}
	if _, err := s.Listen("no port"); err == nil {
		t.Error("an address without a port was accepted")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := s.Listen("127.0.0.1:0"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Listen after Close: %v, want ErrClosed", err)
	}
	// The port is free again: the socket was closed.
	c, err := net.ListenPacket("udp4", a4.String())
	if err != nil {
		t.Fatalf("port still bound after Close: %v", err)
	}
	c.Close()
}

func itoa(p uint16) string { return strconv.Itoa(int(p)) }

// FuzzAnswer feeds arbitrary datagrams to Answer: it must never panic, and
// whatever it sends must be a well-formed Binding response to the request,
// mapping the source.
func FuzzAnswer(f *testing.F) {
	f.Add(request(f, stun.BindingRequest), false, false)
	f.Add(request(f, stun.BindingRequest, stun.Fingerprint), true, false)
	f.Add(request(f, stun.BindingRequest, stun.RawAttribute{Type: stun.AttrChangeRequest, Value: []byte{0, 0, 0, 0}}), false, true)
	f.Add(request(f, stun.BindingRequest, stun.NewUsername("u"), stun.NewShortTermIntegrity("p"), stun.Fingerprint), true, true)
	f.Add(request(f, stun.NewType(stun.MethodBinding, stun.ClassIndication)), false, false)
	f.Add(classic(), false, true)
	s := New(Config{Rate: 1e9, Burst: 1 << 30})
	f.Fuzz(func(t *testing.T, b []byte, v6, frame bool) {
		if frame && len(b) >= headerSize {
			// The fuzzer cannot guess the magic cookie and the length:
			// make the framing right so that it explores the rest.
			b = b[:headerSize+(len(b)-headerSize)&^3]
			b[0] &= 0x3F
			binary.BigEndian.PutUint16(b[2:4], uint16(len(b)-headerSize))
			binary.BigEndian.PutUint32(b[4:8], magicCookie)
		}
		remote := remote4
		if v6 {
			remote = remote6
		}
		out := s.Answer(nil, b, local4, remote)
		if len(out) == 0 {
			return
		}
		m := decode(t, out)
		if !bytes.Equal(m.Raw[8:20], b[8:20]) {
			t.Fatalf("answer's transaction ID %x, request's %x", m.Raw[8:20], b[8:20])
		}
		switch m.Type {
		case stun.BindingSuccess:
			var xa stun.XORMappedAddress
			if err := xa.GetFrom(m); err != nil {
				t.Fatalf("success without XOR-MAPPED-ADDRESS: %v", err)
			}
			if got, _ := netip.AddrFromSlice(xa.IP); netip.AddrPortFrom(got, uint16(xa.Port)) != remote {
				t.Fatalf("XOR-MAPPED-ADDRESS %s, want %s", xa, remote)
			}
		case stun.BindingError:
			var ec stun.ErrorCodeAttribute
			if err := ec.GetFrom(m); err != nil || ec.Code != stun.CodeUnknownAttribute {
				t.Fatalf("error response with ERROR-CODE %v (%v)", ec, err)
			}
		default:
			t.Fatalf("answer of type %s", m.Type)
		}
		if m.Contains(stun.AttrFingerprint) {
			if err := stun.Fingerprint.Check(m); err != nil {
				t.Fatalf("answer's FINGERPRINT: %v", err)
			}
		}
	})
}

// BenchmarkAnswer measures one Binding answer, the work per keep-alive.
func BenchmarkAnswer(b *testing.B) {
	for _, tc := range []struct {
		name   string
		remote netip.AddrPort
		req    []byte
	}{
		{"IPv4", remote4, request(b, stun.BindingRequest)},
		{"IPv4/fingerprint", remote4, request(b, stun.BindingRequest, stun.Fingerprint)},
		{"IPv6/fingerprint", remote6, request(b, stun.BindingRequest, stun.Fingerprint)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			s := New(Config{Rate: 1e12, Burst: 1 << 40})
			out := make([]byte, 0, 512)
			b.ReportAllocs()
			for b.Loop() {
				out = s.Answer(out[:0], tc.req, local4, tc.remote)
			}
			if len(out) == 0 {
				b.Fatal("no answer")
			}
		})
	}
}

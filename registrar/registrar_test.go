package registrar

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/store"
)

// fakeTx is a recording server transaction: no sockets. Responses may
// arrive from the store writer's goroutine, so it is safe for concurrent
// use and lets a test wait.
type fakeTx struct {
	src   netip.AddrPort
	local netip.AddrPort
	proto string

	mu   sync.Mutex
	res  []*sip.Response
	sent chan struct{}
}

func newTx() *fakeTx {
	return &fakeTx{
		src:   netip.MustParseAddrPort("198.51.100.7:40000"),
		local: netip.MustParseAddrPort("192.0.2.10:5060"),
		proto: "UDP",
		sent:  make(chan struct{}, 16),
	}
}

func (t *fakeTx) Respond(res *sip.Response) error {
	t.mu.Lock()
	t.res = append(t.res, res)
	t.mu.Unlock()
	t.sent <- struct{}{}
	return nil
}
func (t *fakeTx) Source() netip.AddrPort    { return t.src }
func (t *fakeTx) Transport() string         { return t.proto }
func (t *fakeTx) LocalAddr() netip.AddrPort { return t.local }

// wait returns the response, waiting for an asynchronous one.
func (t *fakeTx) wait(tb testing.TB) *sip.Response {
	tb.Helper()
	select {
	case <-t.sent:
	case <-time.After(5 * time.Second):
		tb.Fatal("no response within 5s")
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.res) != 1 {
		tb.Fatalf("%d responses, want 1", len(t.res))
	}
	return t.res[0]
}

// testClock is a settable clock.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

var t0 = time.Unix(1_800_000_000, 0)

// domains is the test registrar's Domain function: example.test and
// lab.test are served; 192.0.2.10 is the server's own address, whose AORs
// belong to the default domain example.test.
func domains(u *sip.URI) (string, bool) {
	switch h := strings.ToLower(u.Hostname()); h {
	case "example.test", "lab.test":
		return h, true
	case "192.0.2.10":
		return "example.test", true
	}
	return "", false
}

type fixture struct {
	r     *Registrar
	clock *testClock
	reg   *prometheus.Registry
}

func newFixture(t *testing.T, st store.Bindings, mod func(*Config, *Env)) *fixture {
	t.Helper()
	f := &fixture{clock: &testClock{now: t0}, reg: prometheus.NewRegistry()}
	var cfg Config
	env := Env{Domain: domains, Store: st, Now: f.clock.Now, Registerer: f.reg}
	if mod != nil {
		mod(&cfg, &env)
	}
	r, err := New(context.Background(), cfg, env)
	if err != nil {
		t.Fatal(err)
	}
	r.Start()
	t.Cleanup(func() { r.Close() })
	f.r = r
	return f
}

// reg describes one REGISTER of a test sequence.
type reg struct {
	to       string   // To URI; default sip:alice@example.test
	callID   string   // default "call-1"
	cseq     uint32   // default: one more than the previous step
	contacts []string // Contact header values
	expires  string   // Expires header; "" for none
	extra    []string // more header lines
	vias     int      // Via headers; default 1
	via      string   // sent-by of the top Via; default 192.0.2.<vias>:5060
}

func (f *fixture) request(t testing.TB, g reg, cseq uint32) *sip.Request {
	t.Helper()
	to := g.to
	if to == "" {
		to = "sip:alice@example.test"
	}
	callID := g.callID
	if callID == "" {
		callID = "call-1"
	}
	var b strings.Builder
	b.WriteString("REGISTER sip:example.test SIP/2.0\r\n")
	for i := max(g.vias, 1); i > 0; i-- {
		sentBy := fmt.Sprintf("192.0.2.%d:5060", i)
		if g.via != "" && i == max(g.vias, 1) {
			sentBy = g.via
		}
		fmt.Fprintf(&b, "Via: SIP/2.0/UDP %s;branch=z9hG4bK%d-%d\r\n", sentBy, cseq, i)
	}
	fmt.Fprintf(&b, "Max-Forwards: 70\r\nFrom: <%s>;tag=f\r\nTo: <%s>\r\nCall-ID: %s\r\nCSeq: %d REGISTER\r\n", to, to, callID, cseq)
	for _, c := range g.contacts {
		b.WriteString("Contact: " + c + "\r\n")
	}
	if g.expires != "" {
		b.WriteString("Expires: " + g.expires + "\r\n")
	}
	for _, e := range g.extra {
		b.WriteString(e + "\r\n")
	}
	b.WriteString("User-Agent: test-phone/1.0\r\nContent-Length: 0\r\n\r\n")
	m, err := sip.ParseString(b.String())
	if err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	return m.(*sip.Request)
}

// send runs one REGISTER and returns the response.
func (f *fixture) send(t testing.TB, g reg, cseq uint32) *sip.Response {
	t.Helper()
	tx := newTx()
	f.r.ServeRegister(context.Background(), tx, f.request(t, g, cseq))
	return tx.wait(t)
}

// contactsOf renders the response's Contact values.
func contactsOf(res *sip.Response) []string {
	var out []string
	for _, c := range res.Contact {
		out = append(out, c.String())
	}
	return out
}

// TestRegister runs the registrar rules, each a sequence of REGISTERs; the
// last one's response must have the wanted code, the wanted Contact values
// (in order) and headers.
func TestRegister(t *testing.T) {
	tests := []struct {
		name     string
		steps    []reg
		mod      func(*Config, *Env)
		code     int
		contacts []string // exact Contact values of the final response; nil: not checked
		headers  []string // "Name: value" substrings the final response must have
		absent   []string // header names it must not have
		lookup   []string // contact URIs Lookup("alice@example.test") returns, in order; nil: not checked
	}{
		{
			name:     "RFC3261 10.3 step 8 a new binding is listed with the default expiry",
			steps:    []reg{{contacts: []string{"<sip:alice@198.51.100.7:5060>"}}},
			code:     200,
			contacts: []string{"<sip:alice@198.51.100.7:5060>;expires=3600"},
			headers:  []string{"Date: Fri, 15 Jan 2027 08:00:00 GMT"},
			lookup:   []string{"sip:alice@198.51.100.7:5060"},
		},
		{
			name:     "RFC3261 10.2.1.1 the Expires header applies to contacts without expires",
			steps:    []reg{{contacts: []string{"<sip:alice@198.51.100.7>"}, expires: "600"}},
			code:     200,
			contacts: []string{"<sip:alice@198.51.100.7>;expires=600"},
		},
		{
			name:     "RFC3261 10.2.1.1 the contact's expires parameter overrides the header",
			steps:    []reg{{contacts: []string{"<sip:alice@198.51.100.7>;expires=120", "<sip:alice@198.51.100.8>"}, expires: "600"}},
			code:     200,
			contacts: []string{"<sip:alice@198.51.100.7>;expires=120", "<sip:alice@198.51.100.8>;expires=600"},
		},
		{
			name:     "RFC3261 10.3 step 7 the expiry is clamped to max_expires",
			steps:    []reg{{contacts: []string{"<sip:alice@198.51.100.7>;expires=99999"}}},
			code:     200,
			contacts: []string{"<sip:alice@198.51.100.7>;expires=3600"},
		},
		{
			name:     "RFC3261 20.19 an unparsable Expires falls back to the default",
			steps:    []reg{{contacts: []string{"<sip:alice@198.51.100.7>"}, expires: "soon"}},
			code:     200,
			contacts: []string{"<sip:alice@198.51.100.7>;expires=3600"},
		},
		{
			name:    "RFC3261 10.3 step 7 an expiry below the minimum gets 423 with Min-Expires",
			steps:   []reg{{contacts: []string{"<sip:alice@198.51.100.7>;expires=9"}}},
			code:    423,
			headers: []string{"Min-Expires: 10"},
			lookup:  []string{},
		},
		{
			name:    "RFC3261 10.3 step 7 Min-Expires follows the configured minimum",
			mod:     func(c *Config, _ *Env) { c.MinExpires = 300 },
			steps:   []reg{{contacts: []string{"<sip:alice@198.51.100.7>"}, expires: "299"}},
			code:    423,
			headers: []string{"Min-Expires: 300"},
		},
		{
			name: "RFC3261 10.2.2 expires=0 removes one binding and keeps the others",
			steps: []reg{
				{contacts: []string{"<sip:a@198.51.100.7>", "<sip:b@198.51.100.7>"}},
				{contacts: []string{"<sip:a@198.51.100.7>;expires=0"}},
			},
			code:     200,
			contacts: []string{"<sip:b@198.51.100.7>;expires=3600"},
			lookup:   []string{"sip:b@198.51.100.7"},
		},
		{
			name: "RFC3261 10.2.2 Contact * with Expires 0 removes every binding",
			steps: []reg{
				{contacts: []string{"<sip:a@198.51.100.7>", "<sip:b@198.51.100.7>"}},
				{contacts: []string{"*"}, expires: "0"},
			},
			code:     200,
			contacts: []string{},
			lookup:   []string{},
		},
		{
			name: "RFC3261 10.3 step 6 Contact * with another contact: 400",
			steps: []reg{
				{contacts: []string{"<sip:a@198.51.100.7>"}},
				{contacts: []string{"*", "<sip:b@198.51.100.7>"}, expires: "0"},
			},
			code:   400,
			lookup: []string{"sip:a@198.51.100.7"},
		},
		{
			name:  "RFC3261 10.3 step 6 Contact * with a non-zero Expires: 400",
			steps: []reg{{contacts: []string{"*"}, expires: "1"}},
			code:  400,
		},
		{
			name:  "RFC3261 10.3 step 6 Contact * without Expires: 400",
			steps: []reg{{contacts: []string{"*"}}},
			code:  400,
		},
		{
			name: "RFC3261 10.3 step 6 Contact * of an older CSeq does not remove newer bindings",
			steps: []reg{
				{contacts: []string{"<sip:a@198.51.100.7>"}, cseq: 5},
				{contacts: []string{"*"}, expires: "0", cseq: 4},
			},
			code:   500,
			lookup: []string{"sip:a@198.51.100.7"},
		},
		{
			name: "RFC3261 10.3 step 7 several contacts ordered by q-value",
			steps: []reg{{contacts: []string{
				"<sip:low@198.51.100.7>;q=0.1", "<sip:high@198.51.100.7>;q=1.0", "<sip:mid@198.51.100.7>;q=0.5"}}},
			code: 200,
			contacts: []string{"<sip:high@198.51.100.7>;q=1.0;expires=3600", "<sip:mid@198.51.100.7>;q=0.5;expires=3600",
				"<sip:low@198.51.100.7>;q=0.1;expires=3600"},
			lookup: []string{"sip:high@198.51.100.7", "sip:mid@198.51.100.7", "sip:low@198.51.100.7"},
		},
		{
			name:  "RFC3261 20.10 a q-value above 1: 400",
			steps: []reg{{contacts: []string{"<sip:a@198.51.100.7>;q=1.5"}}},
			code:  400,
		},
		{
			name: "RFC3261 10.3 step 7 an older CSeq of the same Call-ID does not overwrite a newer binding",
			steps: []reg{
				{contacts: []string{"<sip:a@198.51.100.7>"}, expires: "600", cseq: 10},
				{contacts: []string{"<sip:a@198.51.100.7>"}, expires: "0", cseq: 9},
			},
			code:   500,
			lookup: []string{"sip:a@198.51.100.7"},
		},
		{
			name: "RFC3261 10.3 step 7 the same CSeq again fails too",
			steps: []reg{
				{contacts: []string{"<sip:a@198.51.100.7>"}, cseq: 10},
				{contacts: []string{"<sip:a@198.51.100.7>"}, expires: "0", cseq: 10},
			},
			code: 500,
		},
		{
			name: "RFC3261 10.3 step 7 another Call-ID updates whatever its CSeq",
			steps: []reg{
				{contacts: []string{"<sip:a@198.51.100.7>"}, cseq: 10},
				{contacts: []string{"<sip:a@198.51.100.7>"}, expires: "900", cseq: 1, callID: "reboot"},
			},
			code:     200,
			contacts: []string{"<sip:a@198.51.100.7>;expires=900"},
		},
		{
			name: "RFC3261 19.1.4 an equal URI updates the binding instead of adding one",
			steps: []reg{
				{contacts: []string{"<sip:a@198.51.100.7:5060;transport=udp>"}},
				{contacts: []string{"<sip:a@198.51.100.7:5060;TRANSPORT=UDP>"}, expires: "120"},
			},
			code:     200,
			contacts: []string{"<sip:a@198.51.100.7:5060;TRANSPORT=UDP>;expires=120"},
		},
		{
			name: "RFC3261 10.2.3 a REGISTER without Contact lists the bindings and changes nothing",
			steps: []reg{
				{contacts: []string{"<sip:a@198.51.100.7>"}},
				{},
			},
			code:     200,
			contacts: []string{"<sip:a@198.51.100.7>;expires=3600"},
		},
		{
			name:  "RFC3261 10.3 step 5 RFC4475 3.3.4 a To that is not a SIP URI: 400",
			steps: []reg{{to: "isbn:2983792873", contacts: []string{"<sip:a@198.51.100.7>"}}},
			code:  400,
		},
		{
			name:  "RFC3261 10.3 step 5 an AOR of a domain that is not ours: 404",
			steps: []reg{{to: "sip:alice@elsewhere.test", contacts: []string{"<sip:a@198.51.100.7>"}}},
			code:  404,
		},
		{
			name:  "RFC3261 10.3 step 5 a To without a user part: 404",
			steps: []reg{{to: "sip:example.test", contacts: []string{"<sip:a@198.51.100.7>"}}},
			code:  404,
		},
		{
			name:   "RFC3261 10.3 step 5 an AOR at the server's address belongs to the default domain",
			steps:  []reg{{to: "sip:alice@192.0.2.10", contacts: []string{"<sip:a@198.51.100.7>"}}},
			code:   200,
			lookup: []string{"sip:a@198.51.100.7"},
		},
		{
			name: "RFC3327 5.3 Path is echoed to a UA that supports it",
			steps: []reg{{contacts: []string{"<sip:a@198.51.100.7>"}, vias: 2,
				extra: []string{"Path: <sip:edge1.test;lr>", "Path: <sip:edge2.test;lr>", "Supported: path"}}},
			code:    200,
			headers: []string{"Path: <sip:edge1.test;lr>, <sip:edge2.test;lr>"},
		},
		{
			name: "RFC3327 5.3 Path is stored but not echoed without Supported: path",
			steps: []reg{{contacts: []string{"<sip:a@198.51.100.7>"}, vias: 2,
				extra: []string{"Path: <sip:edge1.test;lr>"}}},
			code:   200,
			absent: []string{"Path"},
		},
		{
			name: "RFC5626 6 a first-hop registration with +sip.instance and reg-id gets Require: outbound",
			steps: []reg{{contacts: []string{`<sip:a@198.51.100.7;transport=tcp;ob>;+sip.instance="<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>";reg-id=1`},
				extra: []string{"Supported: path, outbound"}}},
			code:    200,
			headers: []string{"Require: outbound"},
		},
		{
			name: "RFC5626 6 re-registering from a new address replaces the binding of the same instance and reg-id",
			steps: []reg{
				{contacts: []string{`<sip:a@198.51.100.7:5060>;+sip.instance="<urn:uuid:1>";reg-id=1`}},
				{contacts: []string{`<sip:a@203.0.113.9:6000>;+sip.instance="<urn:uuid:1>";reg-id=1`}, callID: "new-call"},
			},
			code:     200,
			contacts: []string{`<sip:a@203.0.113.9:6000>;+sip.instance="<urn:uuid:1>";reg-id=1;expires=3600`},
			lookup:   []string{"sip:a@203.0.113.9:6000"},
		},
		{
			name: "RFC5626 6 another reg-id of the same instance is a second flow",
			steps: []reg{
				{contacts: []string{`<sip:a@198.51.100.7:5060>;+sip.instance="<urn:uuid:1>";reg-id=1`}},
				{contacts: []string{`<sip:a@198.51.100.8:5060>;+sip.instance="<urn:uuid:1>";reg-id=2`}},
			},
			code:   200,
			lookup: []string{"sip:a@198.51.100.7:5060", "sip:a@198.51.100.8:5060"},
		},
		{
			name: "RFC5627 an instance without reg-id also replaces its old address",
			steps: []reg{
				{contacts: []string{`<sip:a@198.51.100.7:5060>;+sip.instance="<urn:uuid:2>"`}},
				{contacts: []string{`<sip:a@203.0.113.9:5060>;+sip.instance="<urn:uuid:2>"`}},
			},
			code:   200,
			lookup: []string{"sip:a@203.0.113.9:5060"},
		},
		{
			name: "RFC5626 6 reg-id behind a proxy without an ob Path, from an outbound UA: 439",
			steps: []reg{{contacts: []string{`<sip:a@198.51.100.7>;+sip.instance="<urn:uuid:1>";reg-id=1`}, vias: 2,
				extra: []string{"Supported: outbound"}}},
			code: 439,
		},
		{
			name: "RFC5626 6 reg-id behind a proxy without an ob Path is otherwise ignored",
			steps: []reg{{contacts: []string{`<sip:a@198.51.100.7>;+sip.instance="<urn:uuid:1>";reg-id=1`}, vias: 2,
				extra: []string{"Path: <sip:edge.test;lr>"}}},
			code:   200,
			absent: []string{"Require"},
		},
		{
			name: "RFC5626 6 reg-id behind an edge proxy whose Path URI has ob",
			steps: []reg{{contacts: []string{`<sip:a@198.51.100.7>;+sip.instance="<urn:uuid:1>";reg-id=1`}, vias: 2,
				extra: []string{"Path: <sip:edge.test;lr;ob>", "Supported: outbound, path"}}},
			code:    200,
			headers: []string{"Require: outbound", "Path: <sip:edge.test;lr;ob>"},
		},
		{
			name: "per-AOR contact limit: 403",
			mod:  func(c *Config, _ *Env) { c.MaxContacts = 2 },
			steps: []reg{
				{contacts: []string{"<sip:a@198.51.100.7>", "<sip:b@198.51.100.7>"}},
				{contacts: []string{"<sip:c@198.51.100.7>"}},
			},
			code:   403,
			lookup: []string{"sip:a@198.51.100.7", "sip:b@198.51.100.7"},
		},
		{
			name: "per-AOR contact limit: refreshing existing bindings is fine",
			mod:  func(c *Config, _ *Env) { c.MaxContacts = 2 },
			steps: []reg{
				{contacts: []string{"<sip:a@198.51.100.7>", "<sip:b@198.51.100.7>"}},
				{contacts: []string{"<sip:a@198.51.100.7>", "<sip:b@198.51.100.7>"}},
			},
			code: 200,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, nil, tt.mod)
			var res *sip.Response
			cseq := uint32(0)
			for i, g := range tt.steps {
				cseq++
				if g.cseq != 0 {
					cseq = g.cseq
				}
				res = f.send(t, g, cseq)
				if i < len(tt.steps)-1 && res.StatusCode != 200 {
					t.Fatalf("step %d: %d %s (%s)", i, res.StatusCode, res.Reason, res.Get("Warning"))
				}
			}
			if res.StatusCode != tt.code {
				t.Fatalf("got %d %s (%s), want %d\n%s", res.StatusCode, res.Reason, res.Get("Warning"), tt.code, res)
			}
			if res.To.Tag() == "" {
				t.Error("response without a To tag (RFC 3261 8.2.6.2)")
			}
			if tt.contacts != nil {
				if got := contactsOf(res); strings.Join(got, "\n") != strings.Join(tt.contacts, "\n") {
					t.Errorf("Contact:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.contacts, "\n"))
				}
			}
			text := res.String()
			for _, h := range tt.headers {
				if !strings.Contains(text, h) {
					t.Errorf("response lacks %q:\n%s", h, text)
				}
			}
			for _, h := range tt.absent {
				if res.Has(h) {
					t.Errorf("response has %s:\n%s", h, text)
				}
			}
			if tt.lookup != nil {
				var got []string
				for _, b := range f.r.Lookup("alice@example.test") {
					got = append(got, b.Contact.URI.String())
				}
				if strings.Join(got, " ") != strings.Join(tt.lookup, " ") {
					t.Errorf("Lookup = %v, want %v", got, tt.lookup)
				}
			}
		})
	}
}

// TestBindingRecordsTheFlow checks what a binding keeps about how the
// REGISTER arrived (RFC 5626 §6: the flow; RFC 3327: the Path).
func TestBindingRecordsTheFlow(t *testing.T) {
	f := newFixture(t, nil, nil)
	tx := newTx()
	tx.proto = "TCP"
	req := f.request(t, reg{contacts: []string{`<sip:a@10.0.0.5:5060;transport=tcp>;+sip.instance="<urn:uuid:7>";reg-id=1;q=0.7`},
		extra: []string{"Path: <sip:edge.test;lr;ob>"}}, 1)
	f.r.ServeRegister(context.Background(), tx, req)
	if res := tx.wait(t); res.StatusCode != 200 {
		t.Fatalf("got %d", res.StatusCode)
	}
	bs := f.r.Lookup("alice@example.test")
	if len(bs) != 1 {
		t.Fatalf("%d bindings", len(bs))
	}
	b := bs[0]
	want := Binding{
		AOR: "alice@example.test", Q: 700, CallID: "call-1", CSeq: 1, Path: "<sip:edge.test;lr;ob>",
		Instance: `"<urn:uuid:7>"`, RegID: 1, Source: tx.src, Local: tx.local, Transport: "TCP",
		UserAgent: "test-phone/1.0", Updated: t0, Expires: t0.Add(time.Hour),
		NAT: true, // the Via's 192.0.2.1 is not the source 198.51.100.7
	}
	b.ID, b.Contact = "", sip.Address{}
	if b != want {
		t.Errorf("binding\n%+v\nwant\n%+v", b, want)
	}
	if !bs[0].Outbound() {
		t.Error("Outbound() = false")
	}
	if got := bs[0].Contact.String(); got != `<sip:a@10.0.0.5:5060;transport=tcp>;+sip.instance="<urn:uuid:7>";reg-id=1;q=0.7` {
		t.Errorf("Contact = %s", got)
	}
}

// TestExpiry turns the wheel: lapsed bindings leave memory on the tick,
// and Lookup never returns one even before the tick.
func TestExpiry(t *testing.T) {
	f := newFixture(t, nil, func(c *Config, _ *Env) { c.MaxExpires = 20000; c.DefaultExpires = 3600 })
	if res := f.send(t, reg{contacts: []string{"<sip:short@198.51.100.7>;expires=60", "<sip:long@198.51.100.7>;expires=9000"}}, 1); res.StatusCode != 200 {
		t.Fatal(res.StatusCode)
	}
	if res := f.send(t, reg{to: "sip:bob@example.test", contacts: []string{"<sip:bob@198.51.100.9>;expires=61"}}, 1); res.StatusCode != 200 {
		t.Fatal(res.StatusCode)
	}
	f.clock.Add(60 * time.Second)
	if got := f.r.Lookup("alice@example.test"); len(got) != 1 || got[0].Contact.URI.User != "long" {
		t.Fatalf("Lookup at expiry = %v", got)
	}
	if n := f.r.loc.expire(f.clock.Now(), nil); n != 1 {
		t.Fatalf("expired %d, want 1", n)
	}
	if aors, n := f.r.loc.stats(); aors != 2 || n != 2 {
		t.Fatalf("stats %d AORs, %d bindings", aors, n)
	}
	f.clock.Add(time.Second)
	if n := f.r.loc.expire(f.clock.Now(), nil); n != 1 {
		t.Fatalf("expired %d, want bob's", n)
	}
	// 9000 s is more than one turn of the wheel (4096 slots).
	f.clock.Add(8000 * time.Second)
	if n := f.r.loc.expire(f.clock.Now(), nil); n != 0 {
		t.Fatalf("expired %d before its time", n)
	}
	f.clock.Add(940 * time.Second)
	if n := f.r.loc.expire(f.clock.Now(), nil); n != 1 {
		t.Fatalf("expired %d, want the long one", n)
	}
	if aors, n := f.r.loc.stats(); aors != 0 || n != 0 {
		t.Fatalf("after expiry: %d AORs, %d bindings", aors, n)
	}
	for i := range f.r.loc.wheel {
		if len(f.r.loc.wheel[i]) != 0 {
			t.Fatalf("wheel slot %d still holds %v", i, f.r.loc.wheel[i])
		}
	}
}

// TestExpiryTicker proves the real ticker runs the wheel.
func TestExpiryTicker(t *testing.T) {
	f := newFixture(t, nil, func(c *Config, e *Env) { e.Now = time.Now; c.MinExpires = 1 })
	if res := f.send(t, reg{contacts: []string{"<sip:a@198.51.100.7>;expires=1"}}, 1); res.StatusCode != 200 {
		t.Fatal(res.StatusCode)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, n := f.r.loc.stats(); n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the binding was not expired by the ticker")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := testutil.ToFloat64(f.r.met.expired); got != 1 {
		t.Errorf("bindings_expired_total = %v", got)
	}
}

func openSQLite(t *testing.T, dir string) store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), store.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestBindingsSurviveRestart registers through a SQLite-backed registrar,
// closes it, and opens another on the same file: the bindings are back
// with their expiry, flow and Path; lapsed ones are purged.
func TestBindingsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	clock := &testClock{now: t0}
	open := func(st store.Store) *Registrar {
		r, err := New(context.Background(), Config{}, Env{Domain: domains, Store: st, Now: clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		r.Start()
		return r
	}
	st := openSQLite(t, dir)
	r := open(st)
	f := &fixture{r: r, clock: clock}
	if res := f.send(t, reg{contacts: []string{`<sip:a@198.51.100.7;transport=tcp>;q=0.5;+sip.instance="<urn:uuid:9>";reg-id=1`, "<sip:b@198.51.100.7>;expires=60"},
		extra: []string{"Path: <sip:edge.test;lr;ob>"}}, 1); res.StatusCode != 200 {
		t.Fatalf("got %d %s", res.StatusCode, res.Get("Warning"))
	}
	if res := f.send(t, reg{to: "sip:bob@example.test", contacts: []string{"<sip:bob@198.51.100.9>"}}, 1); res.StatusCode != 200 {
		t.Fatal(res.StatusCode)
	}
	if res := f.send(t, reg{to: "sip:carol@example.test", contacts: []string{"<sip:carol@198.51.100.9>"}}, 1); res.StatusCode != 200 {
		t.Fatal(res.StatusCode)
	}
	if res := f.send(t, reg{to: "sip:carol@example.test", contacts: []string{"*"}, expires: "0"}, 2); res.StatusCode != 200 {
		t.Fatal(res.StatusCode)
	}
	before := r.loc.all()
	r.Close()
	st.Close()

	clock.Add(2 * time.Minute) // b (60 s) lapses while the server is down
	st = openSQLite(t, dir)
	defer st.Close()
	r = open(st)
	defer r.Close()
	alice := r.Lookup("alice@example.test")
	if len(alice) != 1 {
		t.Fatalf("alice has %d bindings after the restart, want 1: %+v", len(alice), alice)
	}
	var a Binding
	for _, b := range before {
		if b.Contact.URI.User == "a" {
			a = b
		}
	}
	got := alice[0]
	if got.ID != a.ID || got.Contact.String() != a.Contact.String() || !got.Expires.Equal(a.Expires) || got.Q != 500 ||
		got.Path != "<sip:edge.test;lr;ob>" || got.Instance != `"<urn:uuid:9>"` || got.RegID != 1 ||
		got.Source != a.Source || got.Local != a.Local || got.Transport != "UDP" || got.CallID != "call-1" || got.CSeq != 1 ||
		!got.NAT { // the Via's evidence, which only the stored flag keeps
		t.Errorf("after restart\n%+v\nbefore\n%+v", got, a)
	}
	if len(r.Lookup("bob@example.test")) != 1 || len(r.Lookup("carol@example.test")) != 0 {
		t.Errorf("bob %v, carol %v", r.Lookup("bob@example.test"), r.Lookup("carol@example.test"))
	}
	// The CSeq rule holds across the restart.
	f.r = r
	if res := f.send(t, reg{to: "sip:bob@example.test", contacts: []string{"<sip:bob@198.51.100.9>"}, expires: "0"}, 1); res.StatusCode != 500 {
		t.Errorf("an old CSeq after the restart: %d, want 500", res.StatusCode)
	}
	if rows, _ := st.Bindings(context.Background(), "", time.Unix(0, 0)); len(rows) != 2 {
		t.Errorf("%d rows in the store, want 2 (the lapsed one purged)", len(rows))
	}
}

// failingStore fails every write.
type failingStore struct{}

func (failingStore) WriteBindings(context.Context, []store.Binding, []store.BindingKey) error {
	return errors.New("disk full")
}
func (failingStore) PurgeBindings(context.Context, time.Time) (int64, error) { return 0, nil }
func (failingStore) Bindings(context.Context, string, time.Time) ([]store.Binding, error) {
	return nil, nil
}

func TestStoreFailureAnswers500(t *testing.T) {
	f := newFixture(t, failingStore{}, nil)
	res := f.send(t, reg{contacts: []string{"<sip:a@198.51.100.7>"}}, 1)
	if res.StatusCode != 500 || res.Get("Retry-After") == "" {
		t.Fatalf("got %d, want 500 with Retry-After:\n%s", res.StatusCode, res)
	}
	if got := testutil.ToFloat64(f.r.met.storeErrors); got != 1 {
		t.Errorf("store_errors_total = %v", got)
	}
}

// blockingStore holds every write until released.
type blockingStore struct {
	failingStore
	release chan struct{}
}

func (s blockingStore) WriteBindings(context.Context, []store.Binding, []store.BindingKey) error {
	<-s.release
	return nil
}

func TestFullWriteQueueAnswers503(t *testing.T) {
	st := blockingStore{release: make(chan struct{})}
	f := newFixture(t, st, func(c *Config, _ *Env) { c.QueueSize = 2 })
	var txs []*fakeTx
	// At most two can be queued, and the writer takes at most what was
	// queued (two) into the batch it is stuck on: of six, two or more are
	// refused.
	for i := range 6 {
		tx := newTx()
		f.r.ServeRegister(context.Background(), tx, f.request(t, reg{to: fmt.Sprintf("sip:u%d@example.test", i), contacts: []string{"<sip:a@198.51.100.7>"}}, 1))
		txs = append(txs, tx)
	}
	deadline := time.After(5 * time.Second)
	refused := 0
	for refused == 0 {
		for _, tx := range txs {
			tx.mu.Lock()
			if len(tx.res) == 1 && tx.res[0].StatusCode == 503 {
				refused++
			}
			tx.mu.Unlock()
		}
		select {
		case <-deadline:
			close(st.release)
			t.Fatal("no 503 from a full queue")
		case <-time.After(10 * time.Millisecond):
		}
	}
	close(st.release)
	ok := 0
	for _, tx := range txs {
		if res := tx.wait(t); res.StatusCode == 200 {
			ok++
		} else if res.StatusCode != 503 || res.Get("Retry-After") == "" {
			t.Errorf("got %d", res.StatusCode)
		}
	}
	if ok < 2 {
		t.Errorf("%d REGISTERs succeeded, want at least 2", ok)
	}
}

func TestMerge(t *testing.T) {
	b := func(id, contact string) store.Binding { return store.Binding{AOR: "a@x", ID: id, Contact: contact} }
	k := func(id string) store.BindingKey { return store.BindingKey{AOR: "a@x", ID: id} }
	put, del := merge([]writeOp{
		{put: []store.Binding{b("1", "first"), b("2", "x")}},
		{del: []store.BindingKey{k("2")}, put: []store.Binding{b("1", "second")}},
		{del: []store.BindingKey{k("3")}},
		{put: []store.Binding{b("3", "back")}},
	})
	if len(put) != 2 || put[0].Contact != "second" || put[1].Contact != "back" {
		t.Errorf("put = %+v", put)
	}
	if len(del) != 1 || del[0].ID != "2" {
		t.Errorf("del = %+v", del)
	}
}

func TestParseQ(t *testing.T) {
	for s, want := range map[string]int{"0": 0, "1": 1000, "0.5": 500, "0.123": 123, "1.000": 1000, "0.": 0, ".5": -1, "1.5": -1,
		"0.1234": -1, "2": -1, "": -1, "0,5": -1} {
		got, ok := parseQ(s)
		if (want < 0) != !ok || (ok && got != want) {
			t.Errorf("parseQ(%q) = %d, %v", s, got, ok)
		}
	}
}

func TestConfigValidation(t *testing.T) {
	if _, err := New(context.Background(), Config{}, Env{}); err == nil {
		t.Error("New without a Domain function succeeded")
	}
	for name, cfg := range map[string]Config{
		"min above max":     {MinExpires: 100, MaxExpires: 50},
		"default below min": {MinExpires: 100, DefaultExpires: 50},
		"negative":          {MaxContacts: -1},
		"max below min":     {MaxExpires: 5},
		"min above an hour": {MinExpires: 3601, MaxExpires: 7200, DefaultExpires: 3601},
	} {
		if err := cfg.Validate(); err == nil {
			t.Errorf("%s: Validate succeeded", name)
		}
		if _, err := New(context.Background(), cfg, Env{Domain: domains}); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
}

func TestMetrics(t *testing.T) {
	f := newFixture(t, nil, nil)
	f.send(t, reg{contacts: []string{"<sip:a@198.51.100.7>"}}, 1)
	f.send(t, reg{contacts: []string{"<sip:a@198.51.100.7>;expires=5"}}, 2)
	if got := testutil.ToFloat64(f.r.met.registers.WithLabelValues("200")); got != 1 {
		t.Errorf("registers_total{200} = %v", got)
	}
	if got := testutil.ToFloat64(f.r.met.registers.WithLabelValues("423")); got != 1 {
		t.Errorf("registers_total{423} = %v", got)
	}
	for _, name := range []string{"hlas_registrar_bindings", "hlas_registrar_aors"} {
		if n, err := testutil.GatherAndCount(f.reg, name); err != nil || n != 1 {
			t.Errorf("%s: %d, %v", name, n, err)
		}
	}
}

// BenchmarkRegister measures one REGISTER refresh in memory (no store).
func BenchmarkRegister(b *testing.B) {
	r, err := New(context.Background(), Config{}, Env{Domain: domains})
	if err != nil {
		b.Fatal(err)
	}
	f := &fixture{r: r}
	reqs := make([]*sip.Request, 1000)
	for i := range reqs {
		reqs[i] = f.request(b, reg{to: fmt.Sprintf("sip:u%d@example.test", i), contacts: []string{fmt.Sprintf("<sip:u%d@198.51.100.7:5060>", i)}}, 1)
	}
	tx := &nopTx{}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req := reqs[i%len(reqs)]
		req.CSeq.Seq++
		r.ServeRegister(context.Background(), tx, req)
	}
}

type nopTx struct{}

func (nopTx) Respond(*sip.Response) error { return nil }
func (nopTx) Source() netip.AddrPort      { return netip.AddrPort{} }
func (nopTx) Transport() string           { return "UDP" }

package registrar

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/store"
)

// The Contact texts and 200 OKs are built in buffers rather than with
// Params.Del, Params.Set, Address.String and time.Format; the bytes must
// be theirs.

var paramCases = []string{
	"<sip:a@198.51.100.7>",
	"<sip:a@198.51.100.7>;expires=60",
	"<sip:a@198.51.100.7;transport=tcp>;q=0.5;expires=60;+sip.instance=\"<urn:uuid:1;expires=2>\";reg-id=1",
	"<sip:a@198.51.100.7>;EXPIRES=10;expires=20;lr",
	"<sip:a@198.51.100.7>;expires",
	"\"Alice \\\"A\\\"\" <sip:a@198.51.100.7>;flag;expires=3;ob",
	"Alice Smith <sip:a@198.51.100.7> ; q = 0.5 ; expires = 7",
	"sip:a@198.51.100.7;expires=9;x=y",
	"<tel:+15551234567;ext=1>;expires=5",
}

func TestContactTextAsDelString(t *testing.T) {
	for _, s := range paramCases {
		a, err := sip.ParseAddress(s)
		if err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		got := string(appendContactText(nil, &a))
		want := a
		want.Params = a.Params.Del("expires")
		if got != want.String() {
			t.Errorf("%q: got %q, want %q", s, got, want.String())
		}
	}
}

func TestExpiresParamAsSet(t *testing.T) {
	for _, s := range paramCases {
		a, err := sip.ParseAddress(s)
		if err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		for _, n := range []int{1, 59, 600, 3600, 1<<32 - 1} {
			if got, want := string(appendExpires(nil, a.Params, n)), string(a.Params.Set("expires", strconv.Itoa(n))); got != want {
				t.Errorf("%q, %d: got %q, want %q", s, n, got, want)
			}
		}
	}
}

func TestHTTPDateCache(t *testing.T) {
	f := newFixture(t, nil, nil)
	for _, now := range []time.Time{
		t0, t0.Add(999 * time.Millisecond), t0.Add(time.Second), t0.Add(time.Second + 1), t0,
		t0.Add(-time.Nanosecond), time.Unix(-1, 500), time.Unix(0, 0).In(time.FixedZone("x", 3600)),
	} {
		if got, want := f.r.httpDate(now), now.UTC().Format("Mon, 02 Jan 2006 15:04:05 GMT"); got != want {
			t.Errorf("%v: %q, want %q", now, got, want)
		}
	}
}

// oldOKResponse is okResponse as it was written with Params.Set, one
// Header.Add after another and time.Format: the reference for the bytes.
func oldOKResponse(r *Registrar, req *sip.Request, bs []binding, now time.Time, outbound bool, path string) *sip.Response {
	res := r.env.NewResponse(req, 200, "")
	sorted := append([]binding(nil), bs...)
	sortBindings(sorted)
	for i := range sorted {
		b := &sorted[i]
		left := int((time.Duration(b.expires-now.UnixNano()) + time.Second - 1) / time.Second)
		a := b.contact()
		a.Params = a.Params.Set("expires", strconv.Itoa(max(left, 1)))
		res.Contact = append(res.Contact, a)
	}
	if path != "" && hasOption(req, "Supported", "path") {
		res.Add("Path", path)
	}
	if outbound {
		res.Add("Require", "outbound")
	}
	res.Add("Date", now.UTC().Format("Mon, 02 Jan 2006 15:04:05 GMT"))
	return res
}

func TestOKResponseAsBefore(t *testing.T) {
	// A row from the store whose Contact kept an expires parameter (the
	// registrar writes none): the response replaces it, as Set did.
	st := &loadedStore{rows: []store.Binding{{
		AOR: "alice@example.test", ID: "0123456789abcdef", Contact: "<sip:alice@203.0.113.9>;expires=30;q=0.2",
		Q: 200, Expires: t0.Add(30 * time.Second), CallID: "old", CSeq: 1, Updated: t0.Add(-time.Minute),
	}}}
	f := newFixture(t, st, func(_ *Config, env *Env) { env.NewResponse = sip.NewResponse })
	first := reg{
		contacts: []string{
			"\"Alice\" <sip:alice@198.51.100.7:5060;transport=tcp>;q=0.7;expires=600",
			"<sip:alice@198.51.100.8>;+sip.instance=\"<urn:uuid:f81d4fae>\";reg-id=1;expires=120",
			"<sip:alice@[2001:db8::7]:5062>;x;y=\"a;b\"",
		},
		extra: []string{"Path: <sip:edge.test;lr;ob>", "Supported: path, outbound"},
	}
	res := f.send(t, first, 1)
	if res.StatusCode != 200 || len(res.Contact) != 4 {
		t.Fatalf("%d with %d contacts, want 200 with 4:\n%s", res.StatusCode, len(res.Contact), res)
	}
	req := f.request(t, reg{extra: []string{"Supported: path"}}, 2)
	f.clock.Add(1500 * time.Millisecond)
	now := f.clock.Now()
	f.r.loc.mu.Lock()
	bs := f.r.loc.records["alice@example.test"].appendLive(nil, now.UnixNano())
	f.r.loc.mu.Unlock()
	// With the contacts of the REGISTER that made the bindings, whose
	// parses stand in for the bindings', and without.
	cs, rerr := f.r.parseContacts(nil, f.request(t, first, 1), 0, false)
	if rerr != nil || len(cs) != 3 {
		t.Fatalf("parseContacts: %d contacts, %v", len(cs), rerr)
	}
	for _, c := range []struct {
		outbound bool
		path     string
		contacts []contact
	}{{false, "", nil}, {true, "<sip:edge.test;lr;ob>", cs}, {false, "<sip:edge.test;lr>", nil}, {true, "", cs[1:]}} {
		got := f.r.okResponse(req, bs, c.contacts, now, c.outbound, c.path).String()
		if want := oldOKResponse(f.r, req, bs, now, c.outbound, c.path).String(); got != want {
			t.Errorf("outbound %v, path %q, %d contacts:\n%s\nwant\n%s", c.outbound, c.path, len(c.contacts), got, want)
		}
	}
}

// loadedStore is a binding store holding rows to load; writes succeed.
type loadedStore struct{ rows []store.Binding }

func (s *loadedStore) WriteBindings(context.Context, []store.Binding, []store.BindingKey) error {
	return nil
}
func (s *loadedStore) Bindings(context.Context, string, time.Time) ([]store.Binding, error) {
	return s.rows, nil
}
func (s *loadedStore) PurgeBindings(context.Context, time.Time) (int64, error) { return 0, nil }

// TestRefreshAllocs bounds the allocations of a REGISTER refreshing its
// binding, beyond those of building the response itself: the contact's
// text, the response's Contact slice, the room for its Date and the
// contacts' parameters.
func TestRefreshAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	r, err := New(context.Background(), Config{}, Env{Domain: domains, NewResponse: sip.NewResponse})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{r: r}
	req := f.request(t, reg{contacts: []string{"<sip:alice@198.51.100.7:5060>;expires=600"}}, 1)
	tx := &nopTx{}
	r.ServeRegister(context.Background(), tx, req)
	response := testing.AllocsPerRun(100, func() { _ = sip.NewResponse(req, 200, "") })
	got := testing.AllocsPerRun(100, func() {
		req.CSeq.Seq++
		r.ServeRegister(context.Background(), tx, req)
	})
	t.Logf("%.0f allocations per refresh, %.0f of them the response's", got, response)
	if own := got - response; own > 4 {
		t.Errorf("%.0f allocations per refresh besides the response's %.0f, want at most 4", own, response)
	}
}

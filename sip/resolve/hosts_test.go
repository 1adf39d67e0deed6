package resolve

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/hlas-voip/hlas/sip/resolve/resolvetest"
)

func TestParseHosts(t *testing.T) {
	m := parseHosts(strings.NewReader(`# comment
127.0.0.1	localhost
192.0.2.7   pbx1.example.test pbx1   # trailing comment
2001:db8::7 PBX1.example.test
::ffff:192.0.2.8 mapped.test
fe80::1%eth0 zoned.test
not-an-address bogus.test
192.0.2.9
192.0.2.7 pbx1.example.test
`))
	want := map[string][]string{
		"localhost.":         {"127.0.0.1"},
		"pbx1.example.test.": {"192.0.2.7", "2001:db8::7"},
		"pbx1.":              {"192.0.2.7"},
		"mapped.test.":       {"192.0.2.8"},
	}
	if len(m) != len(want) {
		t.Errorf("names %v, want %v", m, want)
	}
	for name, addrs := range want {
		var got []string
		for _, a := range m[name] {
			got = append(got, a.String())
		}
		if !slices.Equal(got, addrs) {
			t.Errorf("%s: %v, want %v", name, got, addrs)
		}
	}
}

// TestHostsFile: a name the hosts file lists is answered from it (A/AAAA
// only; NAPTR and SRV still go to the DNS), the file is read again when it
// changes, and "none" reads no file.
func TestHostsFile(t *testing.T) {
	srv := resolvetest.Start(t, `
$ORIGIN example.test.
@        3600 IN SOA ns hostmaster 1 3600 600 86400 300
pbx      3600 IN A   192.0.2.1
_sip._udp 3600 IN SRV 0 5 5060 pbx
`)
	path := filepath.Join(t.TempDir(), "hosts")
	write := func(s string, mtime time.Time) {
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	write("192.0.2.50 pbx.example.test\n2001:db8::50 pbx.example.test\n192.0.2.60 pinned.test\n", time.Unix(1e9, 0))
	r, clk := newResolver(t, srv, Config{HostsFile: path})
	resolveAll := func(uri string) []string {
		t.Helper()
		ts, err := r.Resolve(context.Background(), mustURI(t, uri))
		if err != nil {
			t.Fatalf("Resolve(%s): %v", uri, err)
		}
		return lines(ts.All())
	}
	// The SRV comes from the DNS, its target's addresses from the file.
	if got, want := resolveAll("sip:alice@example.test"), []string{"udp 192.0.2.50:5060", "udp [2001:db8::50]:5060"}; !slices.Equal(got, want) {
		t.Errorf("example.test = %v, want %v", got, want)
	}
	if n := srv.Queries("pbx.example.test.", dns.TypeA) + srv.Queries("pbx.example.test.", dns.TypeAAAA); n != 0 {
		t.Errorf("a name in the hosts file was asked of the DNS %d times", n)
	}
	if got, want := resolveAll("sip:alice@pinned.test:5070"), []string{"udp 192.0.2.60:5070"}; !slices.Equal(got, want) {
		t.Errorf("pinned.test = %v, want %v", got, want)
	}
	if n := srv.Queries("pinned.test.", dns.TypeAAAA); n != 0 {
		t.Errorf("AAAA of a name the file knows asked of the DNS %d times", n)
	}

	// The file changes; the change is seen once the recheck interval has
	// passed.
	write("192.0.2.61 pinned.test\n", time.Unix(2e9, 0))
	clk.Advance(hostsRecheck)
	if got, want := resolveAll("sip:alice@pinned.test:5070"), []string{"udp 192.0.2.61:5070"}; !slices.Equal(got, want) {
		t.Errorf("after the change pinned.test = %v, want %v", got, want)
	}
	if got, want := resolveAll("sip:alice@pbx.example.test:5060"), []string{"udp 192.0.2.1:5060"}; !slices.Equal(got, want) {
		t.Errorf("after the change pbx.example.test = %v, want the DNS's %v", got, want)
	}

	// A file that disappears counts as empty.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	clk.Advance(hostsRecheck)
	if _, err := r.Resolve(context.Background(), mustURI(t, "sip:alice@pinned.test:5070")); !errors.Is(err, ErrNoRecord) {
		t.Errorf("pinned.test after removal: %v, want ErrNoRecord", err)
	}

	// "none" reads no file.
	write("192.0.2.62 pinned.test\n", time.Unix(3e9, 0))
	rn, _ := newResolver(t, srv, Config{HostsFile: HostsNone})
	if _, err := rn.Resolve(context.Background(), mustURI(t, "sip:alice@pinned.test:5070")); !errors.Is(err, ErrNoRecord) {
		t.Errorf("with hosts_file none: %v, want ErrNoRecord", err)
	}
}

// TestInvalidNames: RFC 6761 §6.4, names under .invalid are answered
// negatively without a query.
func TestInvalidNames(t *testing.T) {
	srv := resolvetest.Start(t, `
$ORIGIN invalid.
@        3600 IN SOA ns hostmaster 1 3600 600 86400 300
host     3600 IN A   192.0.2.1
`)
	r, _ := newResolver(t, srv, Config{HostsFile: HostsNone})
	for _, uri := range []string{"sip:alice@host.invalid", "sip:alice@host.invalid:5060", "sip:alice@INVALID"} {
		if _, err := r.Resolve(context.Background(), mustURI(t, uri)); !errors.Is(err, ErrNoRecord) {
			t.Errorf("Resolve(%s) = %v, want ErrNoRecord", uri, err)
		}
	}
	if st := r.Stats(); st.Queries != 0 {
		t.Errorf("%d queries sent for .invalid names", st.Queries)
	}
}

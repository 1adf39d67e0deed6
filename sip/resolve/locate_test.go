package resolve

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestResolveRFC3263(t *testing.T) {
	srv := startZones(t, "rfc3263.zone")
	tests := []struct {
		name       string
		uri        string
		transports []string
		want       []string
		err        error
	}{
		{name: "§4.1 numeric host, sip: UDP, default port", uri: "sip:alice@192.0.2.1",
			want: []string{"udp 192.0.2.1:5060"}},
		{name: "§4.1 numeric host, sips: TLS, port 5061", uri: "sips:alice@192.0.2.1",
			want: []string{"tls 192.0.2.1:5061"}},
		{name: "§4.2 numeric IPv6 host with port and transport", uri: "sip:alice@[2001:db8::1]:5070;transport=tcp",
			want: []string{"tcp [2001:db8::1]:5070"}},
		{name: "§4.1 numeric host, transport not configured", uri: "sips:alice@192.0.2.1",
			transports: []string{"udp"}, err: ErrTransport},
		{name: "§4.2 explicit port: A and AAAA, UDP", uri: "sip:alice@host.test:5070",
			want: []string{"udp 192.0.2.40:5070", "udp [2001:db8::40]:5070"}},
		{name: "§4.2 explicit port, sips: TLS", uri: "sips:alice@host.test:5071",
			want: []string{"tls 192.0.2.40:5071", "tls [2001:db8::40]:5071"}},
		{name: "§4.2 explicit port and transport", uri: "sip:alice@host.test:5070;transport=tcp",
			want: []string{"tcp 192.0.2.40:5070", "tcp [2001:db8::40]:5070"}},
		{name: "§4.2 explicit port skips NAPTR and SRV", uri: "sip:alice@sip2.example.test:5099",
			want: []string{"udp 192.0.2.20:5099"}},
		{name: "§4.1 transport=tcp: SRV _sip._tcp", uri: "sip:alice@example.test;transport=tcp",
			want: []string{"tcp 192.0.2.10:5060", "tcp [2001:db8::10]:5060"}},
		{name: "§4.1 transport=tls: SRV _sips._tcp", uri: "sip:alice@example.test;transport=TLS",
			want: []string{"tls 192.0.2.10:5061", "tls [2001:db8::10]:5061"}},
		{name: "§4.1 sips with transport=tcp is TLS", uri: "sips:alice@example.test;transport=tcp",
			want: []string{"tls 192.0.2.10:5061", "tls [2001:db8::10]:5061"}},
		{name: "§4.2 transport without SRV: A/AAAA, default port", uri: "sip:alice@host.test;transport=tcp",
			want: []string{"tcp 192.0.2.40:5060", "tcp [2001:db8::40]:5060"}},
		{name: "§4.1 sips never over UDP", uri: "sips:alice@example.test;transport=udp", err: ErrTransport},
		{name: "§4.1 unknown transport", uri: "sip:alice@example.test;transport=sctp", err: ErrTransport},
		{name: "§4.1 NAPTR by order then preference, each to SRV to A/AAAA", uri: "sip:alice@example.test",
			want: []string{
				"udp 192.0.2.10:5060", "udp [2001:db8::10]:5060", "udp 192.0.2.20:5060", // order 10 pref 50
				"tls 192.0.2.10:5061", "tls [2001:db8::10]:5061", // order 10 pref 60
				"tcp 192.0.2.10:5060", "tcp [2001:db8::10]:5060", // order 20
				"ws 192.0.2.80:80", // order 30
			}},
		{name: "§4.1 NAPTR of unconfigured transports skipped", uri: "sip:alice@example.test",
			transports: []string{"udp", "tcp"},
			want: []string{
				"udp 192.0.2.10:5060", "udp [2001:db8::10]:5060", "udp 192.0.2.20:5060",
				"tcp 192.0.2.10:5060", "tcp [2001:db8::10]:5060",
			}},
		{name: "§4.1 sips: only SIPS+D2T NAPTR", uri: "sips:alice@example.test",
			want: []string{"tls 192.0.2.10:5061", "tls [2001:db8::10]:5061"}},
		{name: "§4.1 sip: every NAPTR", uri: "sip:alice@sips.test",
			want: []string{"udp 192.0.2.61:5060", "tls 192.0.2.62:5061"}},
		{name: "§4.1 sips: SIPS+D2T only", uri: "sips:alice@sips.test",
			want: []string{"tls 192.0.2.62:5061"}},
		{name: "§4.1 no NAPTR: SRV _sip._udp, _sip._tcp, _sips._tcp", uri: "sip:alice@srv.test",
			want: []string{"udp 192.0.2.31:5060", "tcp 192.0.2.32:5060", "tls 192.0.2.33:5061"}},
		{name: "§4.1 no NAPTR, sips: SRV _sips._tcp only", uri: "sips:alice@srv.test",
			want: []string{"tls 192.0.2.33:5061"}},
		{name: "§4.2 no NAPTR or SRV: A/AAAA, UDP 5060", uri: "sip:alice@host.test",
			want: []string{"udp 192.0.2.40:5060", "udp [2001:db8::40]:5060"}},
		{name: "§4.2 no NAPTR or SRV, sips: TLS 5061", uri: "sips:alice@host.test",
			want: []string{"tls 192.0.2.40:5061", "tls [2001:db8::40]:5061"}},
		{name: "§4 maddr overrides the host", uri: "sip:alice@example.test;maddr=192.0.2.99",
			want: []string{"udp 192.0.2.99:5060"}},
		{name: "§4 maddr name with transport", uri: "sip:alice@example.test;maddr=maddr.test;transport=tcp",
			want: []string{"tcp 192.0.2.95:5080"}},
		{name: "§4.2 SRV target behind a CNAME", uri: "sip:alice@cname.test",
			want: []string{"udp 192.0.2.50:5070"}},
		{name: "§4.2 SRV priorities, lowest first (RFC 2782)", uri: "sip:alice@prio.test",
			want: []string{"udp 192.0.2.71:5060", "udp 192.0.2.72:5060", "udp 192.0.2.73:5060"}},
		{name: "RFC 6761 §6.3 localhost is loopback, asked of no server", uri: "sip:alice@localhost",
			want: []string{"udp 127.0.0.1:5060", "udp [::1]:5060"}},
		{name: "§4.2 explicit port, transport not configured", uri: "sips:alice@host.test:5071",
			transports: []string{"udp"}, err: ErrTransport},
		{name: "RFC 2782 SRV target \".\": not offered", uri: "sip:alice@none.test", err: ErrNoRecord},
		{name: "§4 no such domain", uri: "sip:alice@nowhere.test", err: ErrNoRecord},
		{name: "§4 tel: URI is not located", uri: "tel:+420224357628", err: ErrScheme},
	}
	defer func() {
		if n := srv.Queries("localhost.", dns.TypeA) + srv.Queries("_sip._udp.localhost.", dns.TypeSRV); n != 0 {
			t.Errorf("localhost asked of the server %d times", n)
		}
	}()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := newResolver(t, srv, Config{Transports: tc.transports})
			ts, err := r.Resolve(context.Background(), mustURI(t, tc.uri))
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("Resolve(%s) = %v, want %v", tc.uri, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Resolve(%s): %v", tc.uri, err)
			}
			if got := lines(ts.All()); !slices.Equal(got, tc.want) {
				t.Errorf("Resolve(%s) =\n  %s\nwant\n  %s", tc.uri, strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
		})
	}
}

func TestResolveWhy(t *testing.T) {
	srv := startZones(t, "rfc3263.zone")
	r, _ := newResolver(t, srv, Config{})
	tests := []struct {
		uri  string
		want []string // Explain of each target, in order; only the first few
	}{
		{"sip:alice@example.test", []string{
			`NAPTR 10 50 "s" SIP+D2U → SRV 0 5 5060 sip1.example.test. → A 192.0.2.10`,
			`NAPTR 10 50 "s" SIP+D2U → SRV 0 5 5060 sip1.example.test. → AAAA 2001:db8::10`,
			`NAPTR 10 50 "s" SIP+D2U → SRV 10 5 5060 sip2.example.test. → A 192.0.2.20`,
			`NAPTR 10 60 "s" SIPS+D2T → SRV 0 5 5061 sip1.example.test. → A 192.0.2.10`,
		}},
		{"sip:alice@srv.test", []string{`SRV 0 0 5060 udp.srv.test. → A 192.0.2.31`}},
		{"sip:alice@host.test", []string{`no NAPTR or SRV, udp port 5060 → A 192.0.2.40`}},
		{"sip:alice@host.test:5070", []string{`port 5070 from the URI → A 192.0.2.40`}},
		{"sip:alice@host.test;transport=tcp", []string{`transport=tcp → no SRV, port 5060 → A 192.0.2.40`}},
		{"sip:alice@192.0.2.1", []string{`numeric host → port 5060`}},
	}
	for _, tc := range tests {
		ts, err := r.Resolve(context.Background(), mustURI(t, tc.uri))
		if err != nil {
			t.Fatalf("Resolve(%s): %v", tc.uri, err)
		}
		all := ts.All()
		for i, want := range tc.want {
			if i >= len(all) {
				t.Fatalf("Resolve(%s): %d targets, want at least %d", tc.uri, len(all), len(tc.want))
			}
			if got := all[i].Explain(); got != want {
				t.Errorf("Resolve(%s)[%d].Explain() =\n  %s\nwant\n  %s", tc.uri, i, got, want)
			}
		}
	}
	// The chain keeps the owner names for programs.
	ts, _ := r.Resolve(context.Background(), mustURI(t, "sip:alice@example.test"))
	first, _ := ts.Next()
	if first.Host != "sip1.example.test" || first.Why[0].Name != "example.test." || first.Why[1].Name != "_sip._udp.example.test." {
		t.Errorf("first target %+v", first)
	}
}

func TestResolveServerFailure(t *testing.T) {
	srv := startZones(t, "rfc3263.zone")
	srv.Rcode("broken.test", dns.RcodeServerFailure)
	srv.Rcode("_sip._udp.broken.test", dns.RcodeServerFailure)
	srv.Rcode("_sip._tcp.broken.test", dns.RcodeServerFailure)
	srv.Rcode("_sips._tcp.broken.test", dns.RcodeServerFailure)
	r, _ := newResolver(t, srv, Config{Attempts: 1})
	_, err := r.Resolve(context.Background(), mustURI(t, "sip:alice@broken.test"))
	var rc *RcodeError
	if !errors.As(err, &rc) || rc.Rcode != dns.RcodeServerFailure || errors.Is(err, ErrNoRecord) {
		t.Fatalf("Resolve of a SERVFAIL domain: %v, want a RcodeError that is not ErrNoRecord", err)
	}
	if st := r.Stats(); st.Failures == 0 {
		t.Errorf("Stats().Failures = 0 after SERVFAIL")
	}
}

// A dead first DNS server (nothing listening) costs an error or a
// timeout; the second answers.
func TestResolveServerFailover(t *testing.T) {
	srv := startZones(t, "rfc3263.zone")
	r, _ := newResolver(t, srv, Config{
		Servers: []string{deadUDP(t), srv.Addr},
		Timeout: 200 * time.Millisecond,
	})
	ts, err := r.Resolve(context.Background(), mustURI(t, "sip:alice@srv.test"))
	if err != nil {
		t.Fatal(err)
	}
	if got := lines(ts.All()); len(got) != 3 || got[0] != "udp 192.0.2.31:5060" {
		t.Errorf("targets %v", got)
	}
	if st := r.Stats(); st.Failures == 0 {
		t.Errorf("Stats().Failures = 0, want the dead server's failures counted")
	}
}

// A server that never answers, and a caller's context that ends first.
func TestResolveContext(t *testing.T) {
	srv := startZones(t, "rfc3263.zone")
	srv.Drop("host.test")
	r, _ := newResolver(t, srv, Config{Timeout: 10 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := r.Resolve(ctx, mustURI(t, "sip:alice@host.test:5060"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Resolve with a silent server = %v, want the context's deadline", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Resolve took %v, want it cut at the context's deadline", d)
	}
}

func TestConfigDefaults(t *testing.T) {
	dir := t.TempDir()
	conf := dir + "/resolv.conf"
	if err := os.WriteFile(conf, []byte("# test\nnameserver 192.0.2.53\nnameserver 2001:db8::53\noptions timeout:1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := New(Config{ResolvConf: conf})
	if err != nil {
		t.Fatal(err)
	}
	c := r.Config()
	if !slices.Equal(c.Servers, []string{"192.0.2.53:53", "[2001:db8::53]:53"}) {
		t.Errorf("Servers from resolv.conf = %v", c.Servers)
	}
	if c.Timeout != DefaultTimeout || c.Attempts != DefaultAttempts || c.CacheSize != DefaultCacheSize ||
		c.BlocklistSize != DefaultBlocklistSize || c.BlocklistFor != DefaultBlocklistFor ||
		!slices.Equal(c.ENUMSuffixes, []string{"e164.arpa."}) || len(c.Transports) != 5 {
		t.Errorf("defaults %+v", c)
	}
	r, err = New(Config{ResolvConf: dir + "/missing"})
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Config().Servers; !slices.Equal(got, []string{"127.0.0.1:53", "[::1]:53"}) {
		t.Errorf("Servers without resolv.conf = %v", got)
	}
	r, err = New(Config{Servers: []string{"192.0.2.1", "[2001:db8::1]", "192.0.2.2:5353"}, ENUMSuffixes: []string{"E164.example."}})
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Config().Servers; !slices.Equal(got, []string{"192.0.2.1:53", "[2001:db8::1]:53", "192.0.2.2:5353"}) {
		t.Errorf("Servers = %v", got)
	}
	if got := r.Config().ENUMSuffixes; !slices.Equal(got, []string{"e164.example."}) {
		t.Errorf("ENUMSuffixes = %v", got)
	}
	for name, cfg := range map[string]Config{
		"servers":       {Servers: []string{"192.0.2.1:"}},
		"timeout":       {Servers: []string{"192.0.2.1"}, Timeout: -1},
		"attempts":      {Servers: []string{"192.0.2.1"}, Attempts: -1},
		"blocklist_for": {Servers: []string{"192.0.2.1"}, BlocklistFor: -time.Second},
		"enum_suffixes": {Servers: []string{"192.0.2.1"}, ENUMSuffixes: []string{"bad..name"}},
		"transports":    {Servers: []string{"192.0.2.1"}, Transports: []string{"sctp"}},
	} {
		if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("New with a bad %s: %v, want an error naming it", name, err)
		}
	}
}

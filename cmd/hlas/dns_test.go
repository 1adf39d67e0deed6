package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/hlas-voip/hlas/sip/resolve/resolvetest"
)

const dnsTestZone = `
$ORIGIN example.test.
@          3600 IN SOA   ns hostmaster 1 3600 600 86400 300
@          3600 IN NAPTR 10 50 "s" "SIP+D2U" "" _sip._udp
@          3600 IN NAPTR 20 50 "s" "SIP+D2T" "" _sip._tcp
_sip._udp  3600 IN SRV   0 5 5060 sip1
_sip._tcp  3600 IN SRV   0 5 5060 sip1
sip1       3600 IN A     192.0.2.10
sip1       3600 IN AAAA  2001:db8::10
plain      3600 IN A     192.0.2.20

$ORIGIN e164.arpa.
@          3600 IN SOA   ns.e164.arpa. hostmaster.e164.arpa. 1 3600 600 86400 300
8.2.6.7.5.3.4.2.2.0.2.4 IN NAPTR 100 10 "u" "E2U+sip" "!^\\+420(.*)$!sip:420\\1@cesnet.cz!" .
`

func TestDNSCommand(t *testing.T) {
	srv := resolvetest.Start(t, dnsTestZone)
	tests := []struct {
		name      string
		args      []string
		code      int
		stdout    string
		stderrHas string
	}{
		{"resolve: targets and why", []string{"dns", "resolve", "--server", srv.Addr, "sip:alice@example.test"}, 0,
			`1. udp 192.0.2.10:5060  (NAPTR 10 50 "s" SIP+D2U → SRV 0 5 5060 sip1.example.test. → A 192.0.2.10)
2. udp [2001:db8::10]:5060  (NAPTR 10 50 "s" SIP+D2U → SRV 0 5 5060 sip1.example.test. → AAAA 2001:db8::10)
3. tcp 192.0.2.10:5060  (NAPTR 20 50 "s" SIP+D2T → SRV 0 5 5060 sip1.example.test. → A 192.0.2.10)
4. tcp [2001:db8::10]:5060  (NAPTR 20 50 "s" SIP+D2T → SRV 0 5 5060 sip1.example.test. → AAAA 2001:db8::10)
`, ""},
		{"resolve: flags after the argument, no scheme", []string{"dns", "resolve", "plain.example.test:5070", "--server=" + srv.Addr, "--timeout", "1s"}, 0,
			"1. udp 192.0.2.20:5070  (port 5070 from the URI → A 192.0.2.20)\n", ""},
		{"resolve: transport parameter", []string{"dns", "resolve", "--server", srv.Addr, "sip:example.test;transport=tcp"}, 0,
			`1. tcp 192.0.2.10:5060  (transport=tcp → SRV 0 5 5060 sip1.example.test. → A 192.0.2.10)
2. tcp [2001:db8::10]:5060  (transport=tcp → SRV 0 5 5060 sip1.example.test. → AAAA 2001:db8::10)
`, ""},
		{"resolve: nothing found", []string{"dns", "resolve", "--server", srv.Addr, "sip:alice@nowhere.test"}, 1,
			"", "no record"},
		{"resolve: tel URI", []string{"dns", "resolve", "--server", srv.Addr, "tel:+420224357628"}, 2,
			"", "hlas dns enum"},
		{"enum: the seed's number", []string{"dns", "enum", "--server", srv.Addr, "+420224357628"}, 0,
			"sip:420224357628@cesnet.cz\n", ""},
		{"enum: tel URI", []string{"dns", "enum", "--server", srv.Addr, "tel:+420-224-357-628"}, 0,
			"sip:420224357628@cesnet.cz\n", ""},
		{"enum: no record", []string{"dns", "enum", "--server", srv.Addr, "+12025550100"}, 1,
			"", "no record"},
		{"enum: other suffix", []string{"dns", "enum", "--server", srv.Addr, "--enum-suffix", "e164.example.test", "+420224357628"}, 1,
			"", "no record"},
		{"enum: not a number", []string{"dns", "enum", "--server", srv.Addr, "alice"}, 2,
			"", "not an E.164 number"},
		{"usage: no command", []string{"dns"}, 2, "", "usage: hlas dns"},
		{"usage: unknown command", []string{"dns", "axfr"}, 2, "", "unknown command"},
		{"usage: two arguments", []string{"dns", "resolve", "--server", srv.Addr, "a.test", "b.test"}, 2, "", "want one argument"},
		{"usage: bad flag", []string{"dns", "enum", "--bogus", "+1"}, 2, "", "flag provided but not defined"},
		{"usage: bad server", []string{"dns", "resolve", "--server", "192.0.2.1:", "a.test"}, 2, "", "servers"},
		{"usage: help", []string{"dns", "-h"}, 0, dnsUsage, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tc.args, &stdout, &stderr)
			if code != tc.code {
				t.Errorf("exit %d, want %d; stderr: %s", code, tc.code, stderr.String())
			}
			if stdout.String() != tc.stdout {
				t.Errorf("stdout:\n%s\nwant:\n%s", stdout.String(), tc.stdout)
			}
			if tc.stderrHas != "" && !strings.Contains(stderr.String(), tc.stderrHas) {
				t.Errorf("stderr %q, want it to contain %q", stderr.String(), tc.stderrHas)
			}
		})
	}
}

package resolve

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/miekg/dns"
)

func TestENUMDomain(t *testing.T) {
	tests := []struct {
		name, number, suffix, want string
	}{
		{"seed: CESNET", "+420224357628", "e164.arpa", "8.2.6.7.5.3.4.2.2.0.2.4.e164.arpa."},
		{"RFC 3761 §2.4 visual separators", "+44-207-946-0148", "e164.arpa.", "8.4.1.0.6.4.9.7.0.2.4.4.e164.arpa."},
		{"RFC 3966 tel URI", "tel:+1-202-555-0100", "e164.arpa", "0.0.1.0.5.5.5.2.0.2.1.e164.arpa."},
		{"sip URI with a global number", "sip:+420224357628;isub=1@example.com;user=phone", "e164.example.", "8.2.6.7.5.3.4.2.2.0.2.4.e164.example."},
		{"spaces and brackets", " +46 (8) 976 1234 ", "e164.arpa", "4.3.2.1.6.7.9.8.6.4.e164.arpa."},
	}
	for _, tc := range tests {
		got, err := ENUMDomain(tc.number, tc.suffix)
		if err != nil || got != tc.want {
			t.Errorf("%s: ENUMDomain(%q, %q) = %q, %v; want %q", tc.name, tc.number, tc.suffix, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "+", "420224357628", "+42022435762a", "+1234567890123456", "tel:5550100;phone-context=example.com", "sip:alice@example.com", "mailto:x@y"} {
		if got, err := ENUMDomain(bad, "e164.arpa"); !errors.Is(err, ErrNumber) {
			t.Errorf("ENUMDomain(%q) = %q, %v; want ErrNumber", bad, got, err)
		}
	}
}

func TestENUM(t *testing.T) {
	srv := startZones(t, "enum.zone")
	r, _ := newResolver(t, srv, Config{ENUMSuffixes: []string{"e164.arpa", "e164.example.test"}})
	tests := []struct {
		name   string
		number string
		want   []string
		err    error
	}{
		{"seed: +420224357628 at CESNET, back-reference", "+420224357628",
			[]string{"sip:420224357628@cesnet.cz"}, nil},
		{"seed, as a tel: URI", "tel:+420-224-357-628",
			[]string{"sip:420224357628@cesnet.cz"}, nil},
		{"RFC 3761 §3.2: only the sip enumservice", "+441632960083",
			[]string{"sip:info@example.com"}, nil},
		{"RFC 2916 §3.2.3: legacy sip+E2U", "+46-8-9761234",
			[]string{"sip:info@tele2.se"}, nil},
		{"RFC 3403 §4.1 order then preference; skipped records", "+12025550100",
			[]string{"sips:5550100@202.example.com", "sip:second@example.com", "sip:third@example.com"}, nil},
		{"RFC 3761 §2.4.1 non-terminal record", "+12025551111",
			[]string{"sip:ext1111@pbx.example.test"}, nil},
		{"RFC 6116 §3.2 second suffix", "+12025550199",
			[]string{"sip:12025550199@private.example.test;user=phone"}, nil},
		{"no record: ErrNoRecord", "+12025550142", nil, ErrNoRecord},
		{"not a number", "alice", nil, ErrNumber},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			uris, err := r.ENUM(context.Background(), tc.number)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("ENUM(%s) = %v, %v; want %v", tc.number, uris, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ENUM(%s): %v", tc.number, err)
			}
			got := make([]string, len(uris))
			for i, u := range uris {
				got[i] = u.String()
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("ENUM(%s) = %q, want %q", tc.number, got, tc.want)
			}
		})
	}
	// The second suffix is not asked when the first has the number.
	if n := srv.Queries("8.2.6.7.5.3.4.2.2.0.2.4.e164.example.test.", dns.TypeNAPTR); n != 0 {
		t.Errorf("second suffix asked %d times", n)
	}
}

// A failure to ask is not ErrNoRecord: a routing rule must not take it for
// "no such number".
func TestENUMServerFailure(t *testing.T) {
	srv := startZones(t, "enum.zone")
	srv.Rcode("8.2.6.7.5.3.4.2.2.0.2.4.e164.arpa", dns.RcodeServerFailure)
	r, _ := newResolver(t, srv, Config{Attempts: 1})
	_, err := r.ENUM(context.Background(), "+420224357628")
	var rc *RcodeError
	if err == nil || errors.Is(err, ErrNoRecord) || !errors.As(err, &rc) {
		t.Fatalf("ENUM with SERVFAIL = %v, want a RcodeError", err)
	}
}

func TestIsSIPService(t *testing.T) {
	for s, want := range map[string]bool{
		"E2U+sip":        true,
		"e2u+SIP":        true,
		"E2U+sip:x":      true,
		"E2U+mailto+sip": true,
		"sip+E2U":        true,
		"SIP+e2u":        true,
		"E2U+h323":       false,
		"E2U+sips":       false,
		"E2U":            false,
		"sip":            false,
		"SIP+D2U":        false,
		"E2U+msg:mailto": false,
		"mailto+E2U":     false,
		"":               false,
		"x-E2U+sip":      false,
		"E2U+voice:tel":  false,
		"E2U+pstn:sip":   false,
		"E2U+sip+pstn:x": true,
	} {
		if got := IsSIPService(s); got != want {
			t.Errorf("IsSIPService(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestParseSubst(t *testing.T) {
	tests := []struct {
		name, expr, in, want string
		noMatch              bool
	}{
		{"seed: back-reference", `!^\+420(.*)$!sip:420\1@cesnet.cz!`, "+420224357628", "sip:420224357628@cesnet.cz", false},
		{"RFC 3761: whole number", `!^.*$!sip:info@example.com!`, "+441632960083", "sip:info@example.com", false},
		{"RFC 3402 §3.2: other delimiter", `/^\+1(...)(.*)$/sip:\2@\1.example.com/`, "+12025550100", "sip:5550100@202.example.com", false},
		{"escaped delimiter in ERE and replacement", `!^\+(4\!?4)(.*)$!sip:\2\!@x.example!`, "+441632960083", "sip:1632960083!@x.example", false},
		{"nine back-references", `!^\+(.)(.)(.)(.)(.)(.)(.)(.)(.)(.*)$!\9\8\7\6\5\4\3\2\1!`, "+123456789", "987654321", false},
		{"unmatched group is empty", `!^\+(1)?(4.*)$!sip:[\1]\2@x!`, "+44", "sip:[]44@x", false},
		{"flag i", `!^\+44(.*)$!SIP:\1@X!i`, "+441", "SIP:1@X", false},
		{"escaped backslash in replacement", `!^.*$!a\\b!`, "+1", `a\b`, false},
		{"leftmost-longest (POSIX), not first alternative", `!(\+4|\+44)!\1!`, "+441", "+44", false},
		{"no match", `!^\+420(.*)$!sip:\1@x!`, "+441632960083", "", true},
	}
	for _, tc := range tests {
		x, err := parseSubst(tc.expr)
		if err != nil {
			t.Errorf("%s: parseSubst(%q): %v", tc.name, tc.expr, err)
			continue
		}
		got, ok := x.apply(tc.in)
		if ok == tc.noMatch || got != tc.want {
			t.Errorf("%s: %q on %q = %q, %v; want %q", tc.name, tc.expr, tc.in, got, ok, tc.want)
		}
	}
	for _, bad := range []string{
		``, `!!`, `!a!b`, `!a!b!c!`, `!a!b!x`, `!!b!`, `\a\b\`, `1a1b1`, `iaibi`,
		`!(!x!`, `!a!\1!`, `!(a)!\2!`, `!(a)!\0!`, `!a!b\!`,
		"!" + string(make([]byte, 300)) + "!x!",
	} {
		if x, err := parseSubst(bad); err == nil {
			t.Errorf("parseSubst(%q) = %+v, want an error", bad, x)
		}
	}
}

func TestApplyNAPTR(t *testing.T) {
	naptr := func(flags, service, regexp, repl string) *dns.NAPTR {
		return &dns.NAPTR{Hdr: dns.RR_Header{Name: "x.e164.arpa.", Rrtype: dns.TypeNAPTR, Class: dns.ClassINET},
			Order: 10, Preference: 10, Flags: flags, Service: service, Regexp: regexp, Replacement: repl}
	}
	tests := []struct {
		name     string
		n        *dns.NAPTR
		want     string
		terminal bool
		err      bool
	}{
		// miekg/dns presents character-strings with backslashes escaped.
		{"terminal u", naptr("u", "E2U+sip", `!^\\+420(.*)$!sip:420\\1@cesnet.cz!`, "."), "sip:420224357628@cesnet.cz", true, false},
		{"terminal U", naptr("U", "E2U+sip", `!^.*$!sip:a@b!`, "."), "sip:a@b", true, false},
		{"non-terminal by replacement", naptr("", "E2U+sip", "", "next.example."), "next.example.", false, false},
		{"non-terminal by regexp", naptr("", "E2U+sip", `!^\\+420.*$!cz.example!`, "."), "cz.example.", false, false},
		{"both regexp and replacement", naptr("u", "E2U+sip", `!^.*$!sip:a@b!`, "x.example."), "", false, true},
		{"neither", naptr("u", "E2U+sip", "", "."), "", false, true},
		{"terminal by replacement", naptr("u", "E2U+sip", "", "x.example."), "", false, true},
		{"other service", naptr("u", "E2U+h323", `!^.*$!h323:a@b!`, "."), "", false, true},
		{"unknown flag", naptr("p", "E2U+sip", `!^.*$!sip:a@b!`, "."), "", false, true},
		{"no match", naptr("u", "E2U+sip", `!^\\+1.*$!sip:a@b!`, "."), "", false, true},
		{"\\DDD escape", naptr("u", "E2U+sip", `!^.*$!sip:a\035@b!`, "."), "sip:a#@b", true, false},
	}
	for _, tc := range tests {
		got, terminal, err := applyNAPTR(tc.n, "+420224357628")
		if (err != nil) != tc.err || got != tc.want || terminal != tc.terminal {
			t.Errorf("%s: applyNAPTR = %q, %v, %v; want %q, %v, error %v", tc.name, got, terminal, err, tc.want, tc.terminal, tc.err)
		}
	}
}

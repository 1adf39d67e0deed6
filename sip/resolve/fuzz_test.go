package resolve

import (
	"strings"
	"testing"

	"github.com/hlas-voip/hlas/sip"
	"github.com/miekg/dns"
)

// FuzzENUMRegexp feeds NAPTR records of any content, as they come off the
// wire, through the ENUM path: the substitution expression parser
// (RFC 3402 §3.2), its application to a number, the service and flag
// checks. Nothing may panic; a parsed expression applies to any string; a
// terminal result is what the expression yields; a number accepted is "+"
// and 1 to 15 digits.
func FuzzENUMRegexp(f *testing.F) {
	for _, seed := range []struct{ flags, service, regexp, repl, number string }{
		{"u", "E2U+sip", `!^\+420(.*)$!sip:420\1@cesnet.cz!`, ".", "+420224357628"},
		{"u", "E2U+sip", `!^.*$!sip:info@example.com!`, ".", "+441632960083"},
		{"u", "sip+E2U", `!^.*$!sip:info@tele2.se!`, ".", "+4689761234"},
		{"u", "E2U+sip", `/^\+1(...)(.*)$/sip:\2@\1.example.com/i`, ".", "tel:+1-202-555-0100"},
		{"u", "e2u+SIP:x+mailto", `#^\+(4\#?4)(.*)$#sip:\2\#@x#`, ".", "+44 20 7946 0148"},
		{"", "E2U+sip", "", "next.example.", "+12025551111"},
		{"", "", `!^\+420.*$!cz.example!`, ".", "+420"},
		{"U", "E2U+sip", `!(a|b)*c{1,3}[[:digit:]]\9!\0\\!`, ".", "+1"},
		{"u", "E2U+sip", "!\\\\!\\\\!", ".", "sip:+1@x;user=phone"},
	} {
		f.Add(seed.flags, seed.service, seed.regexp, seed.repl, seed.number)
	}
	f.Fuzz(func(t *testing.T, flags, service, regexp, repl, number string) {
		// Wire limits: character-strings of at most 255 octets (RFC 1035
		// §3.3); the replacement is a domain name.
		if len(flags) > 255 || len(service) > 255 || len(regexp) > 255 || len(number) > 255 {
			return
		}
		if _, ok := dns.IsDomainName(repl); !ok && repl != "." {
			repl = "."
		}
		aus, err := enumNumber(number)
		if err == nil {
			if aus[0] != '+' || len(aus) < 2 || len(aus) > 16 || strings.Trim(aus[1:], "0123456789") != "" {
				t.Fatalf("enumNumber(%q) = %q", number, aus)
			}
			if _, err := ENUMDomain(aus, "e164.arpa"); err != nil {
				t.Fatalf("ENUMDomain(%q): %v", aus, err)
			}
		} else {
			aus = "+420224357628"
		}
		x, perr := parseSubst(regexp)
		if perr == nil {
			x.apply(aus)
			x.apply(number)
			x.apply("")
		}
		// The record as miekg/dns presents it after unpacking.
		n := &dns.NAPTR{
			Hdr:   dns.RR_Header{Name: "x.e164.arpa.", Rrtype: dns.TypeNAPTR, Class: dns.ClassINET},
			Order: 10, Preference: 10,
			Flags: escapeText(flags), Service: escapeText(service), Regexp: escapeText(regexp), Replacement: repl,
		}
		res, terminal, err := applyNAPTR(n, aus)
		if err != nil {
			return
		}
		if terminal {
			if !strings.EqualFold(flags, "u") || !IsSIPService(service) || perr != nil {
				t.Fatalf("terminal result %q from flags %q service %q regexp %q (%v)", res, flags, service, regexp, perr)
			}
			if want, _ := x.apply(aus); want != res {
				t.Fatalf("applyNAPTR = %q, parseSubst/apply = %q", res, want)
			}
			_, _ = sip.ParseURI(res)
		} else if _, ok := dns.IsDomainName(res); !ok {
			t.Fatalf("non-terminal result %q is not a domain name", res)
		}
	})
}

// escapeText escapes a string as miekg/dns presents a character-string:
// backslash and quote with a backslash, other unprintables as \DDD.
func escapeText(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < ' ' || c > '~':
			b.WriteString(`\`)
			b.WriteByte('0' + c/100)
			b.WriteByte('0' + c/10%10)
			b.WriteByte('0' + c%10)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// unescapeText undoes what miekg/dns does to a character-string.
func TestUnescapeText(t *testing.T) {
	for _, s := range []string{"", "plain", `!^\+420(.*)$!sip:420\1@cesnet.cz!`, "a\"b\\c\x00\xff\x7f", `\`, `\\\`} {
		if got := unescapeText(escapeText(s)); got != s {
			t.Errorf("unescapeText(escapeText(%q)) = %q", s, got)
		}
	}
	// And it does so for a record that went over the wire.
	rr, err := dns.NewRR(`x.e164.arpa. 60 IN NAPTR 100 10 "u" "E2U+sip" "!^\\+420(.*)$!sip:420\\1@cesnet.cz!" .`)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 512)
	off, err := dns.PackRR(rr, buf, 0, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	back, _, err := dns.UnpackRR(buf[:off], 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := unescapeText(back.(*dns.NAPTR).Regexp); got != `!^\+420(.*)$!sip:420\1@cesnet.cz!` {
		t.Errorf("regexp off the wire = %q", got)
	}
}

// FuzzParseHosts: any hosts file parses without a panic into lower-case
// fully qualified names with unzoned, unmapped addresses.
func FuzzParseHosts(f *testing.F) {
	f.Add("127.0.0.1 localhost\n::1 localhost ip6-localhost # c\n")
	f.Add("192.0.2.7 pbx1.example.test pbx1\nfe80::1%eth0 z\n::ffff:1.2.3.4 m\n")
	f.Add("#\n\t\n1.2.3.4\n")
	f.Fuzz(func(t *testing.T, s string) {
		for name, addrs := range parseHosts(strings.NewReader(s)) {
			if name != strings.ToLower(name) || !dns.IsFqdn(name) || len(addrs) == 0 {
				t.Fatalf("name %q → %v", name, addrs)
			}
			for _, a := range addrs {
				if !a.IsValid() || a.Zone() != "" || a.Is4In6() {
					t.Fatalf("name %q: address %v", name, a)
				}
			}
		}
	})
}

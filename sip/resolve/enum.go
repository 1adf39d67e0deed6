package resolve

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/hlas-voip/hlas/sip"
	"github.com/miekg/dns"
)

// maxENUMDepth bounds the chain of non-terminal NAPTR records followed
// (RFC 3761 §2.4.1), so that a loop ends.
const maxENUMDepth = 5

// maxE164Digits is the longest E.164 number, country code included
// (ITU-T E.164 §6).
const maxE164Digits = 15

// ENUM maps an E.164 number to SIP URIs (RFC 6116 §3, RFC 3761 §2): the
// number is turned into a domain under each of Config.ENUMSuffixes in turn
// (ENUMDomain), and the NAPTR records found there with an enumservice of
// type sip ("E2U+sip", any case; also the RFC 2916 form "sip+E2U") are
// taken by order, then preference (RFC 3403 §4.1). A terminal record (flag
// "u") has its regular expression applied to the number, "+" and digits
// only (RFC 3761 §2.4, RFC 3402 §3.2); the result must be a sip: or sips:
// URI, the new Request-URI. A non-terminal record (no flag) leads to
// another domain, its replacement, where the search goes on (RFC 3761
// §2.4.1). The first suffix with a result wins.
//
// number is "+420224357628" (visual separators "-", ".", "(", ")" and
// spaces are ignored), a tel: URI with a global number, or a sip: URI
// whose user part is one. When no suffix has a record the error wraps
// ErrNoRecord, so that a routing rule can fall through; any other error is
// a failure to ask the DNS.
func (r *Resolver) ENUM(ctx context.Context, number string) ([]sip.URI, error) {
	aus, err := enumNumber(number)
	if err != nil {
		return nil, err
	}
	ctx, _ = cacheOnly(ctx)
	var lastErr error
	for _, suffix := range r.cfg.ENUMSuffixes {
		domain, _ := ENUMDomain(aus, suffix)
		uris, err := r.enumAt(ctx, domain, aus, 0)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, ErrNotCached) {
				return nil, fmt.Errorf("resolve: enum %s: %w", aus, err)
			}
			lastErr = err
			continue
		}
		if len(uris) > 0 {
			return uris, nil
		}
	}
	if lastErr == nil {
		lastErr = ErrNoRecord
	}
	return nil, fmt.Errorf("resolve: enum %s: %w", aus, lastErr)
}

// enumAt follows the NAPTR records at domain.
func (r *Resolver) enumAt(ctx context.Context, domain, aus string, depth int) ([]sip.URI, error) {
	rrs, err := r.lookup(ctx, domain, dns.TypeNAPTR)
	if err != nil {
		return nil, err
	}
	var naptrs []*dns.NAPTR
	for _, rr := range rrs {
		if n, ok := rr.(*dns.NAPTR); ok {
			naptrs = append(naptrs, n)
		}
	}
	slices.SortStableFunc(naptrs, func(a, b *dns.NAPTR) int {
		return cmp.Or(cmp.Compare(a.Order, b.Order), cmp.Compare(a.Preference, b.Preference))
	})
	var out []sip.URI
	seen := make(map[string]bool)
	for _, n := range naptrs {
		res, terminal, err := applyNAPTR(n, aus)
		if err != nil {
			continue
		}
		if !terminal {
			if depth+1 >= maxENUMDepth {
				continue
			}
			more, err := r.enumAt(ctx, res, aus, depth+1)
			if err != nil && ctx.Err() != nil {
				return out, err
			}
			for _, u := range more {
				if s := u.String(); !seen[s] {
					seen[s] = true
					out = append(out, u)
				}
			}
			continue
		}
		u, err := sip.ParseURI(res)
		if err != nil || !u.IsSIP() || seen[res] {
			continue
		}
		seen[res] = true
		out = append(out, u)
	}
	return out, nil
}

// Errors of a NAPTR record that ENUM skips.
var (
	errNAPTRService = errors.New("not an E2U+sip service")
	errNAPTRFlags   = errors.New("unknown NAPTR flag")
	errNAPTRFields  = errors.New("NAPTR with both regexp and replacement, or neither")
	errNAPTRNoMatch = errors.New("NAPTR regexp does not match")
	errRegexp       = errors.New("bad NAPTR regexp")
)

// applyNAPTR applies one ENUM NAPTR record to aus, the number as "+"
// and digits. A terminal record (flag "u", RFC 3761 §2.4) of an E2U+sip
// service yields a URI; a non-terminal one (no flag, RFC 3761 §2.4.1)
// yields the next domain to look at. Records that do not apply return an
// error.
func applyNAPTR(n *dns.NAPTR, aus string) (result string, terminal bool, err error) {
	flags := strings.ToLower(unescapeText(n.Flags))
	re := unescapeText(n.Regexp)
	repl := n.Replacement
	if repl == "." {
		repl = ""
	}
	if (re == "") == (repl == "") {
		return "", false, errNAPTRFields
	}
	switch flags {
	case "u":
		if !IsSIPService(unescapeText(n.Service)) {
			return "", false, errNAPTRService
		}
		if re == "" {
			return "", false, errNAPTRFields
		}
		x, err := parseSubst(re)
		if err != nil {
			return "", false, err
		}
		res, ok := x.apply(aus)
		if !ok {
			return "", false, errNAPTRNoMatch
		}
		return res, true, nil
	case "":
		if repl != "" {
			return repl, false, nil
		}
		x, err := parseSubst(re)
		if err != nil {
			return "", false, err
		}
		res, ok := x.apply(aus)
		if !ok {
			return "", false, errNAPTRNoMatch
		}
		if _, ok := dns.IsDomainName(res); !ok || res == "" || res == "." {
			return "", false, errRegexp
		}
		res = dns.Fqdn(res)
		if _, ok := dns.IsDomainName(res); !ok {
			return "", false, errRegexp
		}
		return res, false, nil
	}
	return "", false, errNAPTRFlags
}

// IsSIPService reports whether a NAPTR service field names the sip
// enumservice: "E2U+sip" (RFC 3761 §2.4.2, RFC 6116 §3.4.3), with other
// enumservices or a subtype beside it ("E2U+sip:x+mailto"), in any case;
// or the RFC 2916 form "sip+E2U".
func IsSIPService(service string) bool {
	fields := strings.Split(strings.ToLower(service), "+")
	if len(fields) < 2 {
		return false
	}
	if fields[0] == "e2u" {
		for _, f := range fields[1:] {
			if typ, _, _ := strings.Cut(f, ":"); typ == "sip" {
				return true
			}
		}
		return false
	}
	return fields[len(fields)-1] == "e2u" && slices.Contains(fields[:len(fields)-1], "sip")
}

// subst is a parsed NAPTR substitution expression (RFC 3402 §3.2):
// delim ERE delim replacement delim flags.
type subst struct {
	re   *regexp.Regexp
	repl []replPart
}

// replPart is a literal, or a back-reference \1 to \9 when group > 0.
type replPart struct {
	lit   string
	group int
}

// maxSubstLen is the longest NAPTR regexp field: one character-string
// (RFC 1035 §3.3).
const maxSubstLen = 255

// parseSubst parses a substitution expression such as
// `!^\+420(.*)$!sip:420\1@cesnet.cz!` (RFC 3402 §3.2). The delimiter is the
// first character (not a backslash, a digit 1-9 or the flag "i"); inside
// the expression it is written escaped with a backslash. The ERE is
// compiled with Go's regexp package, which accepts POSIX extended syntax
// (and Perl's classes besides), and matched leftmost-longest as POSIX asks
// (sub-expressions within the longest match are chosen as a backtracking
// search would); the flag "i" makes it case-insensitive. In the replacement \1 to \9 are back-references and a
// backslash makes the next character literal.
func parseSubst(s string) (*subst, error) {
	if len(s) < 3 || len(s) > maxSubstLen {
		return nil, fmt.Errorf("%w: length %d", errRegexp, len(s))
	}
	d := s[0]
	if d == '\\' || d >= '1' && d <= '9' || d == 'i' {
		return nil, fmt.Errorf("%w: delimiter %q", errRegexp, d)
	}
	var fields [2]strings.Builder
	field := 0
	end := -1
	for i := 1; i < len(s) && end < 0; i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s) && s[i+1] == d:
			// An escaped delimiter is the delimiter, literally.
			if field == 0 {
				fields[0].WriteString(regexp.QuoteMeta(string(d)))
			} else {
				fields[1].WriteByte('\\')
				fields[1].WriteByte(d)
			}
			i++
		case c == '\\' && i+1 < len(s):
			fields[field].WriteByte(c)
			fields[field].WriteByte(s[i+1])
			i++
		case c == d:
			if field == 1 {
				end = i
			}
			field++
		default:
			fields[field].WriteByte(c)
		}
	}
	if end < 0 {
		return nil, fmt.Errorf("%w: want three delimiters", errRegexp)
	}
	ere, repl := fields[0].String(), fields[1].String()
	if ere == "" {
		return nil, fmt.Errorf("%w: empty expression", errRegexp)
	}
	switch flags := s[end+1:]; flags {
	case "":
	case "i":
		ere = "(?i)" + ere
	default:
		return nil, fmt.Errorf("%w: flags %q", errRegexp, flags)
	}
	re, err := regexp.Compile(ere)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errRegexp, err)
	}
	re.Longest()
	x := &subst{re: re}
	var lit strings.Builder
	for i := 0; i < len(repl); i++ {
		c := repl[i]
		if c != '\\' {
			lit.WriteByte(c)
			continue
		}
		if i+1 == len(repl) {
			return nil, fmt.Errorf("%w: trailing backslash", errRegexp)
		}
		i++
		c = repl[i]
		if c < '0' || c > '9' {
			lit.WriteByte(c)
			continue
		}
		g := int(c - '0')
		if g == 0 || g > re.NumSubexp() {
			return nil, fmt.Errorf("%w: no sub-expression \\%c", errRegexp, c)
		}
		if lit.Len() > 0 {
			x.repl = append(x.repl, replPart{lit: lit.String()})
			lit.Reset()
		}
		x.repl = append(x.repl, replPart{group: g})
	}
	if lit.Len() > 0 {
		x.repl = append(x.repl, replPart{lit: lit.String()})
	}
	return x, nil
}

// apply matches the expression against s and returns the replacement with
// its back-references filled in; a sub-expression that took no part in the
// match is empty. ok is false when the expression does not match.
func (x *subst) apply(s string) (string, bool) {
	m := x.re.FindStringSubmatchIndex(s)
	if m == nil {
		return "", false
	}
	var b strings.Builder
	for _, p := range x.repl {
		if p.group == 0 {
			b.WriteString(p.lit)
			continue
		}
		if lo, hi := m[2*p.group], m[2*p.group+1]; lo >= 0 {
			b.WriteString(s[lo:hi])
		}
	}
	return b.String(), true
}

// ENUMDomain returns the domain of an E.164 number under an ENUM suffix
// (RFC 6116 §3.2, RFC 3761 §2.4): the digits reversed, each a label:
// ENUMDomain("+420224357628", "e164.arpa") is
// "8.2.6.7.5.3.4.2.2.0.2.4.e164.arpa.". number is as ENUM takes it.
func ENUMDomain(number, suffix string) (string, error) {
	aus, err := enumNumber(number)
	if err != nil {
		return "", err
	}
	digits := aus[1:]
	var b strings.Builder
	b.Grow(2*len(digits) + len(suffix) + 1)
	for i := len(digits) - 1; i >= 0; i-- {
		b.WriteByte(digits[i])
		b.WriteByte('.')
	}
	b.WriteString(strings.Trim(suffix, "."))
	return dns.Fqdn(b.String()), nil
}

// E164 returns the E.164 number of a tel: URI with a global number
// (RFC 3966 §5.1.4) or of a sip: or sips: URI whose user part is one
// (RFC 3261 §19.1.6, user=phone or not), as "+" and digits:
// tel:+420-224-357-628 gives "+420224357628". ok is false for a local
// number or another URI.
func E164(u sip.URI) (number string, ok bool) {
	var user string
	switch {
	case u.Scheme == sip.SchemeTel:
		user = u.User
	case u.IsSIP():
		user = sip.Unescape(u.User)
		if i := strings.IndexByte(user, ';'); i >= 0 {
			user = user[:i] // telephone-subscriber parameters
		}
	default:
		return "", false
	}
	n, err := normalizeE164(user)
	return n, err == nil
}

// enumNumber accepts a number as ENUM takes it and returns the
// Application Unique String: "+" and the digits (RFC 3761 §2.4).
func enumNumber(number string) (string, error) {
	s := strings.TrimSpace(number)
	if i := strings.IndexByte(s, ':'); i > 0 {
		u, err := sip.ParseURI(s)
		if err != nil {
			return "", fmt.Errorf("resolve: %q: %w: %v", number, ErrNumber, err)
		}
		n, ok := E164(u)
		if !ok {
			return "", fmt.Errorf("resolve: %q: %w", number, ErrNumber)
		}
		return n, nil
	}
	n, err := normalizeE164(s)
	if err != nil {
		return "", fmt.Errorf("resolve: %q: %w", number, ErrNumber)
	}
	return n, nil
}

// normalizeE164 drops the visual separators of RFC 3966 §5.1.1 from
// "+420 224-357.628" and checks what remains is "+" and 1 to 15 digits.
func normalizeE164(s string) (string, error) {
	if !strings.HasPrefix(s, "+") {
		return "", ErrNumber
	}
	b := make([]byte, 1, len(s))
	b[0] = '+'
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case isDigit(c):
			b = append(b, c)
		case c == '-' || c == '.' || c == '(' || c == ')' || c == ' ':
		default:
			return "", ErrNumber
		}
	}
	if len(b) < 2 || len(b)-1 > maxE164Digits {
		return "", ErrNumber
	}
	return string(b), nil
}

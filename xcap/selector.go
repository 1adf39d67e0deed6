package xcap

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/hlas-voip/hlas/internal/xmltext"
)

// Bounds of what a node selector and its namespace bindings may hold.
const (
	maxSelectorLen = 8 << 10
	// maxSteps: a step more than the deepest document can never match.
	maxSteps       = maxDepth + 1
	maxPosition    = 1 << 20
	maxBindings    = 32
	maxBindingsLen = 8 << 10
)

// qname is a name of a node selector as written.
type qname struct{ prefix, local string }

func (q qname) String() string {
	if q.prefix == "" {
		return q.local
	}
	return q.prefix + ":" + q.local
}

// step is one step of an element selector (RFC 4825 §6.3): by-name,
// by-pos, by-attr or by-pos-attr.
type step struct {
	any  bool  // "*"
	name qname // unless any
	pos  int   // 0: no position
	// attr and value are the attribute test, when hasAttr.
	hasAttr bool
	attr    qname
	value   string
	// text is the step as written, for the URI of an ancestor.
	text string
}

// terminal is what a node selector ends with after its element selector.
type terminal uint8

const (
	termNone      terminal = iota
	termAttribute          // "@name": an attribute of the selected element
	termNamespace          // "namespace::*": its namespace bindings
)

// selector is a parsed node selector.
type selector struct {
	steps []step
	term  terminal
	attr  qname // the attribute of termAttribute
}

func selectorErrorf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrSelector, fmt.Sprintf(format, args...))
}

// parseSelector parses a node selector, already percent-decoded (RFC 4825
// §6.3). One leading "/" is tolerated.
func parseSelector(s string) (*selector, error) {
	if len(s) > maxSelectorLen {
		return nil, selectorErrorf("longer than %d bytes", maxSelectorLen)
	}
	s = strings.TrimPrefix(s, "/")
	if s == "" {
		return nil, selectorErrorf("empty")
	}
	parts, err := splitSteps(s)
	if err != nil {
		return nil, err
	}
	sel := &selector{}
	for i, p := range parts {
		last := i == len(parts)-1
		switch {
		case last && i > 0 && p == "namespace::*":
			sel.term = termNamespace
			continue
		case last && i > 0 && strings.HasPrefix(p, "@"):
			q, rest, err := parseQName(p[1:])
			if err != nil || rest != "" {
				return nil, selectorErrorf("bad attribute selector %q", xmltext.Clip(p))
			}
			sel.term, sel.attr = termAttribute, q
			continue
		}
		st, err := parseStep(p)
		if err != nil {
			return nil, err
		}
		sel.steps = append(sel.steps, st)
	}
	if len(sel.steps) > maxSteps {
		return nil, selectorErrorf("more than %d steps", maxSteps)
	}
	return sel, nil
}

// splitSteps cuts a selector at the slashes outside brackets and quotes.
func splitSteps(s string) ([]string, error) {
	var parts []string
	start, depth := 0, 0
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '[':
			depth++
		case c == ']':
			depth--
		case c == '/' && depth == 0:
			if i == start {
				return nil, selectorErrorf("empty step")
			}
			parts = append(parts, s[start:i])
			if len(parts) > maxSteps+1 {
				return nil, selectorErrorf("more than %d steps", maxSteps)
			}
			start = i + 1
		}
	}
	if quote != 0 || depth != 0 {
		return nil, selectorErrorf("unbalanced quote or bracket")
	}
	if start == len(s) {
		return nil, selectorErrorf("empty step")
	}
	return append(parts, s[start:]), nil
}

// parseStep parses NameorAny ["[" position "]"] ["[" "@" att-name "="
// att-value "]"].
func parseStep(p string) (step, error) {
	st := step{text: p}
	rest := p
	if strings.HasPrefix(rest, "*") {
		st.any, rest = true, rest[1:]
	} else {
		q, r, err := parseQName(rest)
		if err != nil {
			return step{}, selectorErrorf("bad step %q", xmltext.Clip(p))
		}
		st.name, rest = q, r
	}
	if strings.HasPrefix(rest, "[") && len(rest) > 1 && rest[1] >= '0' && rest[1] <= '9' {
		end := strings.IndexByte(rest, ']')
		if end < 0 {
			return step{}, selectorErrorf("bad position in %q", xmltext.Clip(p))
		}
		digits := rest[1:end]
		n, err := strconv.Atoi(digits)
		if err != nil || n < 1 || n > maxPosition || strings.TrimLeft(digits, "0123456789") != "" {
			return step{}, selectorErrorf("bad position in %q", xmltext.Clip(p))
		}
		st.pos, rest = n, rest[end+1:]
	}
	if strings.HasPrefix(rest, "[@") {
		q, r, err := parseQName(rest[2:])
		if err != nil || !strings.HasPrefix(r, "=") || len(r) < 2 || (r[1] != '"' && r[1] != '\'') {
			return step{}, selectorErrorf("bad attribute test in %q", xmltext.Clip(p))
		}
		quote := r[1]
		end := strings.IndexByte(r[2:], quote)
		if end < 0 {
			return step{}, selectorErrorf("unterminated value in %q", xmltext.Clip(p))
		}
		v, err := decodeAttValue(r[2 : 2+end])
		if err != nil {
			return step{}, selectorErrorf("bad value in %q: %v", xmltext.Clip(p), err)
		}
		st.hasAttr, st.attr, st.value = true, q, v
		rest = r[2+end+1:]
		if !strings.HasPrefix(rest, "]") {
			return step{}, selectorErrorf("bad attribute test in %q", xmltext.Clip(p))
		}
		rest = rest[1:]
	}
	if rest != "" {
		return step{}, selectorErrorf("bad step %q", xmltext.Clip(p))
	}
	return st, nil
}

// parseQName reads a QName (Namespaces in XML §4) at the start of s.
func parseQName(s string) (qname, string, error) {
	n := ncNameLen(s)
	if n == 0 {
		return qname{}, "", fmt.Errorf("no name")
	}
	q := qname{local: s[:n]}
	s = s[n:]
	if strings.HasPrefix(s, ":") {
		m := ncNameLen(s[1:])
		if m == 0 {
			return qname{}, "", fmt.Errorf("no local name after prefix")
		}
		q = qname{prefix: q.local, local: s[1 : 1+m]}
		s = s[1+m:]
	}
	return q, s, nil
}

// ncNameLen returns the length of the NCName at the start of s.
func ncNameLen(s string) int {
	i := 0
	for i < len(s) {
		r, w := utf8.DecodeRuneInString(s[i:])
		ok := r == '_' || unicode.IsLetter(r)
		if i > 0 {
			ok = ok || r == '-' || r == '.' || unicode.IsDigit(r) || unicode.Is(unicode.M, r) || r == 0xB7
		}
		if !ok || (r == utf8.RuneError && w == 1) {
			break
		}
		i += w
	}
	return i
}

func isNCName(s string) bool { return s != "" && ncNameLen(s) == len(s) }

// decodeAttValue resolves the references of the content of an XML AttValue
// (XML 1.0 §2.3, without its quotes): the five predefined entities and
// character references. A "<", a bare "&" or a character XML does not allow
// is an error. Line ends become LF, as an XML parser would make them.
func decodeAttValue(s string) (string, error) {
	if !strings.ContainsAny(s, "&<\r") {
		if err := checkChars(s); err != nil {
			return "", err
		}
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		c := s[i]
		switch c {
		case '<':
			return "", fmt.Errorf("'<' in a value")
		case '\r':
			b.WriteByte('\n')
			i++
			if i < len(s) && s[i] == '\n' {
				i++
			}
			continue
		case '&':
			end := strings.IndexByte(s[i:], ';')
			if end < 0 {
				return "", fmt.Errorf("'&' without reference")
			}
			ref := s[i+1 : i+end]
			r, ok := resolveRef(ref)
			if !ok {
				return "", fmt.Errorf("bad reference &%s;", xmltext.Clip(ref))
			}
			b.WriteRune(r)
			i += end + 1
			continue
		}
		b.WriteByte(c)
		i++
	}
	out := b.String()
	if err := checkChars(out); err != nil {
		return "", err
	}
	return out, nil
}

// resolveRef returns the character of an entity or character reference
// (without & and ;).
func resolveRef(ref string) (rune, bool) {
	switch ref {
	case "lt":
		return '<', true
	case "gt":
		return '>', true
	case "amp":
		return '&', true
	case "quot":
		return '"', true
	case "apos":
		return '\'', true
	}
	if !strings.HasPrefix(ref, "#") || len(ref) < 2 || len(ref) > 10 {
		return 0, false
	}
	var n uint64
	var err error
	if ref[1] == 'x' {
		if len(ref) < 3 {
			return 0, false
		}
		n, err = strconv.ParseUint(ref[2:], 16, 32)
	} else {
		n, err = strconv.ParseUint(ref[1:], 10, 32)
	}
	if err != nil {
		return 0, false
	}
	r := rune(n)
	if r == '\t' || r == '\n' || r == '\r' || (r >= 0x20 && r < utf8.RuneSelf) || xmltext.IsXMLChar(r) {
		return r, true
	}
	return 0, false
}

// checkChars refuses invalid UTF-8 and characters XML does not allow.
func checkChars(s string) error {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c < 0x20 && c != '\t' && c != '\n' && c != '\r' {
				return fmt.Errorf("control character %#02x", c)
			}
			i++
			continue
		}
		r, w := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && w == 1) || !xmltext.IsXMLChar(r) {
			return fmt.Errorf("invalid UTF-8 or character")
		}
		i += w
	}
	return nil
}

// parseBindings reads the namespace bindings of an XCAP URI's query
// component, percent-decoded: XPointer xmlns() parts (RFC 4825 §6.4,
// XPointer xmlns() scheme), "xmlns(p=urn:x)xmlns(q=urn:y)". Parts of other
// schemes are skipped, as XPointer does with schemes it does not know.
func parseBindings(q string) (map[string]string, error) {
	if q == "" {
		return nil, nil
	}
	if len(q) > maxBindingsLen {
		return nil, selectorErrorf("namespace bindings longer than %d bytes", maxBindingsLen)
	}
	ns := map[string]string{}
	rest := q
	for {
		rest = strings.TrimLeft(rest, " \t\r\n")
		if rest == "" {
			break
		}
		open := strings.IndexByte(rest, '(')
		if open <= 0 {
			return nil, selectorErrorf("bad namespace binding %q", xmltext.Clip(rest))
		}
		scheme := rest[:open]
		data, n, err := schemeData(rest[open+1:])
		if err != nil {
			return nil, err
		}
		rest = rest[open+1+n:]
		if scheme != "xmlns" {
			if ncNameLen(scheme) == 0 {
				return nil, selectorErrorf("bad scheme %q", xmltext.Clip(scheme))
			}
			continue
		}
		prefix, uri, ok := strings.Cut(data, "=")
		prefix = strings.TrimSpace(prefix)
		uri = strings.TrimSpace(uri)
		if !ok || !isNCName(prefix) || prefix == "xmlns" || uri == "" {
			return nil, selectorErrorf("bad xmlns(%s)", xmltext.Clip(data))
		}
		if len(ns) == maxBindings {
			return nil, selectorErrorf("more than %d namespace bindings", maxBindings)
		}
		ns[prefix] = uri
	}
	return ns, nil
}

// schemeData reads XPointer scheme data up to its closing parenthesis:
// parentheses nest, "^" escapes "(", ")" and "^". It returns the data
// unescaped and how many bytes it took, the ")" included.
func schemeData(s string) (string, int, error) {
	var b strings.Builder
	depth := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '^':
			if i+1 == len(s) || (s[i+1] != '(' && s[i+1] != ')' && s[i+1] != '^') {
				return "", 0, selectorErrorf("bad escape in namespace binding")
			}
			i++
			b.WriteByte(s[i])
			continue
		case '(':
			depth++
		case ')':
			if depth == 0 {
				return b.String(), i + 1, nil
			}
			depth--
		}
		b.WriteByte(c)
	}
	return "", 0, selectorErrorf("unterminated namespace binding")
}

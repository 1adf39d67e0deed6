// Package presrules translates between presence authorization documents
// (pres-rules, RFC 5025, on the common-policy framework of RFC 4745) and
// the rules hlas stores: one action per watcher, where a watcher is an
// address "user@domain", a whole domain "*@domain", or everyone "*".
//
// The two models differ. In common-policy every rule that matches a
// watcher counts and the highest sub-handling wins; hlas looks up the
// most specific rule only (the watcher, else its domain, else "*").
// Parse therefore folds wider rules into narrower ones, so that the most
// specific lookup gives what RFC 4745 would, and Marshal writes <except>
// elements where a narrower rule must not be raised by a wider one.
package presrules

import (
	"encoding/xml"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/hlas-voip/hlas/internal/xmltext"
)

// NS is the common-policy namespace, that of the document's root, and
// PresRulesNS the namespace of the presence actions and transformations;
// ContentType is the media type of the pres-rules usage (RFC 5025).
const (
	NS          = "urn:ietf:params:xml:ns:common-policy"
	PresRulesNS = "urn:ietf:params:xml:ns:pres-rules"
	ContentType = "application/auth-policy+xml"
)

// Rule is the decision about one watcher, as hlas stores it.
type Rule struct {
	// Watcher is "user@domain", "*@domain" or "*", in lower case.
	Watcher string
	// Action is the sub-handling (RFC 5025 §3.2.1): "block", "confirm",
	// "polite-block" or "allow".
	Action string
}

// actions returns the sub-handling values from lowest to highest: when
// several rules match, the highest wins (RFC 5025 §3.2.1). A function, so
// that the table cannot be changed.
func actions() [4]string {
	return [4]string{"block", "confirm", "polite-block", "allow"}
}

// rank is the position of action in actions(), -1 for an unknown one.
func rank(action string) int {
	for i, a := range actions() {
		if a == action {
			return i
		}
	}
	return -1
}

// Unsupported is the error for a valid document with a rule hlas cannot
// honour: a condition other than identity, an identity that is not a
// SIP address, a rule without sub-handling, or an exception that leaves
// a watcher under no rule while a wider rule covers it.
type Unsupported struct {
	// What names the construct and, where there is one, the rule.
	What string
}

// Error says that hlas cannot honour the construct, so that the XCAP
// server can hand the text to the client as is.
func (e *Unsupported) Error() string {
	return "presrules: hlas cannot honour " + e.What
}

func unsupported(format string, args ...any) error {
	return &Unsupported{What: fmt.Sprintf(format, args...)}
}

type xmlRuleset struct {
	Rules []xmlRule `xml:"urn:ietf:params:xml:ns:common-policy rule"`
}

type xmlRule struct {
	ID              *string              `xml:"id,attr"`
	Conditions      []xmlConditions      `xml:"urn:ietf:params:xml:ns:common-policy conditions"`
	Actions         []xmlActions         `xml:"urn:ietf:params:xml:ns:common-policy actions"`
	Transformations []xmlTransformations `xml:"urn:ietf:params:xml:ns:common-policy transformations"`
}

// xmlTransformations are a rule's permissions (RFC 5025 §3.3): hlas shows
// an allowed watcher the whole document, so it accepts only those that
// grant all of it.
type xmlTransformations struct {
	Items []xmlTransform `xml:",any"`
}

type xmlTransform struct {
	XMLName xml.Name
	Inner   []xmlAny `xml:",any"`
}

// fullView reports whether transformations grant every service, person,
// device and attribute, and names what they withhold otherwise.
func fullView(ts []xmlTransformations) (bool, string) {
	given := false
	for _, t := range ts {
		for _, it := range t.Items {
			given = given || it.XMLName.Space == PresRulesNS
		}
	}
	if !given {
		// None given (clients that only allow or block write an empty
		// element or none): hlas shows all, as it always did.
		return true, ""
	}
	need := map[string]string{"provide-services": "all-services", "provide-persons": "all-persons",
		"provide-devices": "all-devices", "provide-all-attributes": ""}
	for _, t := range ts {
		for _, it := range t.Items {
			if it.XMLName.Space != PresRulesNS {
				continue
			}
			want, ok := need[it.XMLName.Local]
			if !ok {
				continue
			}
			if want == "" {
				delete(need, it.XMLName.Local)
				continue
			}
			for _, in := range it.Inner {
				if in.XMLName.Space == PresRulesNS && in.XMLName.Local == want {
					delete(need, it.XMLName.Local)
				}
			}
		}
	}
	for _, k := range []string{"provide-services", "provide-persons", "provide-devices", "provide-all-attributes"} {
		if _, missing := need[k]; missing {
			return false, k
		}
	}
	return true, ""
}

type xmlConditions struct {
	Identity []xmlIdentity `xml:"urn:ietf:params:xml:ns:common-policy identity"`
	Other    []xmlAny      `xml:",any"`
}

type xmlIdentity struct {
	One   []xmlOne  `xml:"urn:ietf:params:xml:ns:common-policy one"`
	Many  []xmlMany `xml:"urn:ietf:params:xml:ns:common-policy many"`
	Other []xmlAny  `xml:",any"`
}

type xmlOne struct {
	ID *string `xml:"id,attr"`
}

type xmlMany struct {
	Domain *string     `xml:"domain,attr"`
	Except []xmlExcept `xml:"urn:ietf:params:xml:ns:common-policy except"`
	Other  []xmlAny    `xml:",any"`
}

type xmlExcept struct {
	ID     *string `xml:"id,attr"`
	Domain *string `xml:"domain,attr"`
}

type xmlActions struct {
	SubHandling []string `xml:"urn:ietf:params:xml:ns:pres-rules sub-handling"`
}

// xmlAny stands for an element a field does not name; only its name is
// kept, to say what is not supported.
type xmlAny struct {
	XMLName xml.Name
}

func (a xmlAny) String() string {
	if a.XMLName.Space == NS || a.XMLName.Space == "" {
		return "<" + a.XMLName.Local + ">"
	}
	return "<" + a.XMLName.Local + "> of " + xmltext.Clip(a.XMLName.Space)
}

// many is one <many> element, or a rule without identity condition (which
// matches everyone), with the action of its rule.
type many struct {
	domain        string // "" for every domain
	exceptIDs     map[string]struct{}
	exceptDomains map[string]struct{}
	action        int
}

// policy is a document reduced to what decides a watcher's action.
type policy struct {
	ones  map[string]int // watcher address → highest action naming it
	manys []many
	// literal holds the patterns the document names ("bob@h", "*@h",
	// "*"): they become rules even when a wider one gives the same.
	literal map[string]struct{}
	// users and domains are every address and domain the document
	// mentions, exceptions included: the watchers whose action may
	// differ from that of a wider pattern.
	users, domains map[string]struct{}
}

// Parse reads a pres-rules document and returns one rule per watcher
// pattern, sorted by watcher, such that looking up the most specific
// pattern gives the action RFC 4745 combines from all matching rules. It
// checks the limits (MaxSize, MaxDepth, MaxRules, MaxIdentities), that
// the root is <ruleset> in NS, that rule ids are present and distinct,
// and the values of <sub-handling>; a rule hlas cannot honour is an
// *Unsupported error naming it. Watchers are read in lower case, as
// `hlas presence` stores them; a SIP URI's parameters and port are
// dropped. Transformations and unknown actions are ignored: an allowed
// watcher sees the whole presence document.
func Parse(b []byte) ([]Rule, error) {
	var x xmlRuleset
	if err := rules().Decode(b, NS, "ruleset", &x); err != nil {
		return nil, err
	}
	if len(x.Rules) > MaxRules {
		return nil, fmt.Errorf("presrules: more than %d rules", MaxRules)
	}
	p := &policy{
		ones:    map[string]int{},
		literal: map[string]struct{}{},
		users:   map[string]struct{}{},
		domains: map[string]struct{}{},
	}
	ids := make(map[string]struct{}, len(x.Rules))
	identities := 0
	for i := range x.Rules {
		r := &x.Rules[i]
		if r.ID == nil || strings.TrimSpace(*r.ID) == "" {
			return nil, errors.New("presrules: <rule> without id")
		}
		id := strings.TrimSpace(*r.ID)
		if _, dup := ids[id]; dup {
			return nil, fmt.Errorf("presrules: two rules with id %q", xmltext.Clip(id))
		}
		ids[id] = struct{}{}
		for _, c := range r.Conditions {
			for _, idn := range c.Identity {
				identities += len(idn.One) + len(idn.Many)
				for _, m := range idn.Many {
					identities += len(m.Except)
				}
			}
		}
		if identities > MaxIdentities {
			return nil, fmt.Errorf("presrules: more than %d identities", MaxIdentities)
		}
		if err := p.add(r, xmltext.Clip(id)); err != nil {
			return nil, err
		}
	}
	return p.combine()
}

// add records one rule, named id in messages.
func (p *policy) add(r *xmlRule, id string) error {
	if len(r.Conditions) > 1 {
		return fmt.Errorf("presrules: rule %q has %d <conditions>", id, len(r.Conditions))
	}
	if len(r.Actions) > 1 {
		return fmt.Errorf("presrules: rule %q has %d <actions>", id, len(r.Actions))
	}
	if len(r.Actions) == 0 || len(r.Actions[0].SubHandling) == 0 {
		return unsupported("rule %q: it has no <sub-handling>", id)
	}
	if len(r.Actions[0].SubHandling) > 1 {
		return fmt.Errorf("presrules: rule %q has %d <sub-handling> actions", id, len(r.Actions[0].SubHandling))
	}
	sh := strings.TrimSpace(r.Actions[0].SubHandling[0])
	action := rank(sh)
	if action < 0 {
		return fmt.Errorf("presrules: rule %q: sub-handling %q, want block, confirm, polite-block or allow", id, xmltext.Clip(sh))
	}
	if sh == "allow" {
		if ok, what := fullView(r.Transformations); !ok {
			return unsupported("rule %q: transformations that withhold part of the presence (no full <%s>)", id, what)
		}
	}
	var identity *xmlIdentity
	if len(r.Conditions) == 1 {
		c := &r.Conditions[0]
		if len(c.Other) > 0 {
			return unsupported("rule %q: the condition %s", id, c.Other[0])
		}
		switch len(c.Identity) {
		case 0:
		case 1:
			identity = &c.Identity[0]
		default:
			return unsupported("rule %q: %d <identity> conditions", id, len(c.Identity))
		}
	}
	if identity == nil {
		// No identity condition: the rule matches every watcher.
		p.manys = append(p.manys, many{action: action})
		p.literal["*"] = struct{}{}
		return nil
	}
	if len(identity.Other) > 0 {
		return unsupported("rule %q: the identity %s", id, identity.Other[0])
	}
	if len(identity.One) == 0 && len(identity.Many) == 0 {
		return fmt.Errorf("presrules: rule %q: <identity> without <one> or <many>", id)
	}
	for _, o := range identity.One {
		if o.ID == nil {
			return fmt.Errorf("presrules: rule %q: <one> without id", id)
		}
		w, err := watcher(*o.ID)
		if err != nil {
			return wrapIdentity(err, id)
		}
		if cur, ok := p.ones[w]; !ok || action > cur {
			p.ones[w] = action
		}
		p.literal[w] = struct{}{}
		p.addUser(w)
	}
	for _, xm := range identity.Many {
		if len(xm.Other) > 0 {
			return unsupported("rule %q: %s inside <many>", id, xm.Other[0])
		}
		m := many{action: action}
		if xm.Domain != nil {
			d, err := domain(*xm.Domain)
			if err != nil {
				return wrapIdentity(err, id)
			}
			m.domain = d
			p.domains[d] = struct{}{}
			p.literal["*@"+d] = struct{}{}
		} else {
			p.literal["*"] = struct{}{}
		}
		for _, e := range xm.Except {
			switch {
			case e.ID != nil && e.Domain != nil, e.ID == nil && e.Domain == nil:
				return fmt.Errorf("presrules: rule %q: <except> needs either an id or a domain", id)
			case e.ID != nil:
				w, err := watcher(*e.ID)
				if err != nil {
					return wrapIdentity(err, id)
				}
				if m.exceptIDs == nil {
					m.exceptIDs = map[string]struct{}{}
				}
				m.exceptIDs[w] = struct{}{}
				p.addUser(w)
			default:
				d, err := domain(*e.Domain)
				if err != nil {
					return wrapIdentity(err, id)
				}
				if m.exceptDomains == nil {
					m.exceptDomains = map[string]struct{}{}
				}
				m.exceptDomains[d] = struct{}{}
				p.domains[d] = struct{}{}
			}
		}
		p.manys = append(p.manys, m)
	}
	return nil
}

func (p *policy) addUser(w string) {
	p.users[w] = struct{}{}
	_, d, _ := strings.Cut(w, "@")
	p.domains[d] = struct{}{}
}

// wrapIdentity adds the rule to an identity's error.
func wrapIdentity(err error, id string) error {
	var u *Unsupported
	if errors.As(err, &u) {
		return unsupported("rule %q: %s", id, u.What)
	}
	return fmt.Errorf("presrules: rule %q: %v", id, err)
}

// eval returns the highest action of the rules matching a watcher, or -1
// when none does. An empty user stands for any user not named in the
// document, an empty domain for any domain not named in it.
func (p *policy) eval(user, dom string) int {
	best := -1
	addr := ""
	if user != "" {
		addr = user + "@" + dom
		if a, ok := p.ones[addr]; ok {
			best = a
		}
	}
	for i := range p.manys {
		m := &p.manys[i]
		if m.action <= best || (m.domain != "" && m.domain != dom) {
			continue
		}
		if _, ex := m.exceptDomains[dom]; ex && dom != "" {
			continue
		}
		if _, ex := m.exceptIDs[addr]; ex && addr != "" {
			continue
		}
		best = m.action
	}
	return best
}

// combine turns the policy into one rule per pattern: "*", then each
// domain, then each address. A pattern becomes a rule when the document
// names it or when its action differs from what the lookup would find
// for it in the wider rules; a pattern left with no action under a wider
// rule cannot be expressed.
func (p *policy) combine() ([]Rule, error) {
	out := map[string]int{}
	if a := p.eval("", ""); a >= 0 {
		out["*"] = a
	}
	fallback := func(pattern string) (int, string) {
		if a, ok := out[pattern]; ok {
			return a, pattern
		}
		if a, ok := out["*"]; ok {
			return a, "*"
		}
		return -1, ""
	}
	emit := func(pattern string, a int, wider string) error {
		fb, by := fallback(wider)
		if a < 0 {
			if fb >= 0 {
				return unsupported("an <except> that leaves %s under no rule while %s is %s", pattern, by, actions()[fb])
			}
			return nil
		}
		if _, named := p.literal[pattern]; named || a != fb {
			out[pattern] = a
		}
		return nil
	}
	for _, d := range sortedKeys(p.domains) {
		if err := emit("*@"+d, p.eval("", d), "*"); err != nil {
			return nil, err
		}
	}
	for _, w := range sortedKeys(p.users) {
		user, dom, _ := strings.Cut(w, "@")
		if err := emit(w, p.eval(user, dom), "*@"+dom); err != nil {
			return nil, err
		}
	}
	rs := make([]Rule, 0, len(out))
	for _, w := range sortedKeys(out) {
		rs = append(rs, Rule{Watcher: w, Action: actions()[out[w]]})
	}
	return rs, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// watcher reads an identity (RFC 4745 §7.1), a SIP URI or a bare
// user@domain, as the address hlas compares watchers with.
func watcher(id string) (string, error) {
	s := strings.ToLower(strings.TrimSpace(id))
	switch {
	case strings.HasPrefix(s, "sip:"):
		s = s[len("sip:"):]
	case strings.HasPrefix(s, "sips:"):
		s = s[len("sips:"):]
	case strings.HasPrefix(s, "pres:"):
		s = s[len("pres:"):]
	default:
		if i := strings.IndexAny(s, ":@"); i >= 0 && s[i] == ':' {
			return "", unsupported("the identity %q, which is not a SIP URI", xmltext.Clip(id))
		}
	}
	user, rest, ok := strings.Cut(s, "@")
	if !ok || user == "" {
		return "", unsupported("the identity %q, which has no user@domain", xmltext.Clip(id))
	}
	if user == "*" {
		return "", unsupported("the identity %q: a user named * would read as the whole domain", xmltext.Clip(id))
	}
	host := hostOf(rest)
	if !validHost(host) {
		return "", unsupported("the identity %q, whose domain is not a host name", xmltext.Clip(id))
	}
	return user + "@" + host, nil
}

// domain reads the domain attribute of <many> or <except>.
func domain(s string) (string, error) {
	d := strings.ToLower(strings.TrimSpace(s))
	if d == "" {
		return "", errors.New("empty domain")
	}
	if hostOf(d) != d || !validHost(d) {
		return "", unsupported("the domain %q, which is not a host name", xmltext.Clip(s))
	}
	return d, nil
}

// hostOf returns the host at the start of the host part of a URI,
// without port, parameters or headers.
func hostOf(s string) string {
	if strings.HasPrefix(s, "[") {
		if i := strings.IndexByte(s, ']'); i >= 0 {
			return s[:i+1]
		}
		return s
	}
	if i := strings.IndexAny(s, ":;?"); i >= 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}

func validHost(h string) bool {
	return h != "" && !strings.ContainsAny(h, "@ \t\r\n")
}

// Marshal writes rules as a pres-rules document: one rule per action in
// use, named after it, with <one> for addresses, <many domain> for
// domains and <many> for "*". A wider pattern carries an <except> for
// every narrower one with a lower action, since common-policy would
// otherwise let the wider rule win; allowed watchers get every service,
// person, device and attribute. Watchers are written in lower case; a
// rule whose watcher or action Parse would not accept is left out, and of
// two rules for one watcher the higher action is kept. Parse reads the
// output back as the same rules.
func Marshal(rs []Rule) []byte {
	best := map[string]int{}
	for _, r := range rs {
		w := strings.ToLower(r.Watcher)
		a := rank(r.Action)
		if a < 0 || !validWatcher(w) {
			continue
		}
		if cur, ok := best[w]; !ok || a > cur {
			best[w] = a
		}
	}
	var users, domains []string
	for _, w := range sortedKeys(best) {
		switch {
		case w == "*":
		case strings.HasPrefix(w, "*@"):
			domains = append(domains, w[2:])
		default:
			users = append(users, w)
		}
	}
	below := func(w string, a int) bool {
		b, ok := best[w]
		return ok && b < a
	}

	b := make([]byte, 0, 512+64*len(best))
	b = append(b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<cr:ruleset xmlns:cr=\""+NS+"\" xmlns:pr=\""+PresRulesNS+"\">\n"...)
	for a, name := range actions() {
		used := false
		for _, v := range best {
			used = used || v == a
		}
		if !used {
			continue
		}
		b = append(b, "<cr:rule id=\""+name+"\">\n<cr:conditions>\n<cr:identity>\n"...)
		for _, u := range users {
			if best[u] == a {
				b = append(b, "<cr:one"...)
				b = xmltext.AppendAttr(b, "id", "sip:"+u)
				b = append(b, "/>\n"...)
			}
		}
		for _, d := range domains {
			if best["*@"+d] != a {
				continue
			}
			b = append(b, "<cr:many"...)
			b = xmltext.AppendAttr(b, "domain", d)
			b = append(b, ">\n"...)
			for _, u := range users {
				if _, ud, _ := strings.Cut(u, "@"); ud == d && below(u, a) {
					b = appendExcept(b, "id", "sip:"+u)
				}
			}
			b = append(b, "</cr:many>\n"...)
		}
		if v, ok := best["*"]; ok && v == a {
			b = append(b, "<cr:many>\n"...)
			for _, d := range domains {
				if below("*@"+d, a) {
					b = appendExcept(b, "domain", d)
				}
			}
			for _, u := range users {
				// A user whose domain is excepted already is out of this
				// rule.
				if _, ud, _ := strings.Cut(u, "@"); below(u, a) && !below("*@"+ud, a) {
					b = appendExcept(b, "id", "sip:"+u)
				}
			}
			b = append(b, "</cr:many>\n"...)
		}
		b = append(b, "</cr:identity>\n</cr:conditions>\n<cr:actions>\n<pr:sub-handling>"+name+"</pr:sub-handling>\n</cr:actions>\n"...)
		if name == "allow" {
			b = append(b, "<cr:transformations>\n"+
				"<pr:provide-services><pr:all-services/></pr:provide-services>\n"+
				"<pr:provide-persons><pr:all-persons/></pr:provide-persons>\n"+
				"<pr:provide-devices><pr:all-devices/></pr:provide-devices>\n"+
				"<pr:provide-all-attributes/>\n"+
				"</cr:transformations>\n"...)
		}
		b = append(b, "</cr:rule>\n"...)
	}
	return append(b, "</cr:ruleset>\n"...)
}

func appendExcept(b []byte, attr, value string) []byte {
	b = append(b, "<cr:except"...)
	b = xmltext.AppendAttr(b, attr, value)
	return append(b, "/>\n"...)
}

// validWatcher reports whether Parse reads w, in lower case, back from
// the identity Marshal writes for it.
func validWatcher(w string) bool {
	if w == "*" {
		return true
	}
	user, host, ok := strings.Cut(w, "@")
	if !ok || user == "" || hostOf(host) != host || !validHost(host) {
		return false
	}
	if user == "*" {
		return true
	}
	got, err := watcher("sip:" + w)
	return err == nil && got == w
}

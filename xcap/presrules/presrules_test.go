package presrules

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func readFile(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sorted(rs []Rule) []Rule {
	out := slices.Clone(rs)
	slices.SortFunc(out, func(a, b Rule) int { return strings.Compare(a.Watcher, b.Watcher) })
	return out
}

func TestParseExamples(t *testing.T) {
	cases := []struct {
		file string
		want []Rule
	}{
		// The example of RFC 5025: one allowed watcher; its transformations are not
		// something hlas filters by.
		// RFC 4745 §7.1's identity forms, exceptions included.
		{"rfc4745-identities.xml", []Rule{
			{"*", "confirm"},
			{"*@example.com", "allow"},
			{"*@example.org", "block"},
			{"alice@bad.example.net", "block"},
			{"alice@example.com", "allow"},
			{"bob@example.com", "block"},
		}},
		// A default rule with no conditions, block and allow lists, and
		// identities with parameters, ports, upper case and no scheme.
		{"oma-whitelist.xml", []Rule{
			{"*", "confirm"},
			{"*@spam.example", "polite-block"},
			{"bob@example.com", "allow"},
			{"carol@example.com", "allow"},
			{"dave@example.com", "allow"},
			{"spammer@example.net", "polite-block"},
		}},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			doc := readFile(t, c.file)
			got, err := Parse(doc)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("got  %v\nwant %v", got, c.want)
			}
			checkSemantics(t, doc, got)
			again, err := Parse(Marshal(got))
			if err != nil || !reflect.DeepEqual(again, got) {
				t.Errorf("Marshal round trip: %v\n%v\n%s", err, again, Marshal(got))
			}
		})
	}
}

func doc(rules ...string) string {
	return `<ruleset xmlns="urn:ietf:params:xml:ns:common-policy" xmlns:pr="urn:ietf:params:xml:ns:pres-rules">` +
		strings.Join(rules, "") + `</ruleset>`
}

// rule writes a rule with the given identity children ("" for a rule
// without conditions) and sub-handling.
func rule(id, identity, action string) string {
	cond := ""
	if identity != "" {
		cond = `<conditions><identity>` + identity + `</identity></conditions>`
	}
	return `<rule id="` + id + `">` + cond + `<actions><pr:sub-handling>` + action + `</pr:sub-handling></actions></rule>`
}

// RFC 4745 §10: all matching rules count and the highest sub-handling
// wins, which Parse folds into the most specific pattern.
func TestParseCombines(t *testing.T) {
	cases := []struct {
		name string
		in   string
		want []Rule
	}{
		{"one watcher in two rules", doc(rule("a", `<one id="sip:bob@h"/>`, "confirm"), rule("b", `<one id="sip:bob@h"/>`, "polite-block")),
			[]Rule{{"bob@h", "polite-block"}}},
		{"one watcher twice in a rule", doc(rule("a", `<one id="sip:bob@h"/><one id="sip:BOB@H"/>`, "block")),
			[]Rule{{"bob@h", "block"}}},
		{"domain allow raises a blocked user", doc(rule("a", `<many domain="h"/>`, "allow"), rule("b", `<one id="sip:bob@h"/>`, "block")),
			[]Rule{{"*@h", "allow"}, {"bob@h", "allow"}}},
		{"domain block keeps an allowed user", doc(rule("a", `<many domain="h"/>`, "block"), rule("b", `<one id="sip:bob@h"/>`, "allow")),
			[]Rule{{"*@h", "block"}, {"bob@h", "allow"}}},
		{"everyone confirm raises a domain block", doc(rule("a", `<many/>`, "confirm"), rule("b", `<many domain="h"/>`, "block")),
			[]Rule{{"*", "confirm"}, {"*@h", "confirm"}}},
		{"no conditions is everyone", doc(rule("a", "", "polite-block")),
			[]Rule{{"*", "polite-block"}}},
		{"empty conditions is everyone", doc(`<rule id="a"><conditions/><actions><pr:sub-handling>allow</pr:sub-handling></actions></rule>`),
			[]Rule{{"*", "allow"}}},
		{"except a user from a domain", doc(rule("a", `<many domain="h"><except id="sip:bob@h"/></many>`, "allow"), rule("b", `<one id="sip:bob@h"/>`, "block")),
			[]Rule{{"*@h", "allow"}, {"bob@h", "block"}}},
		{"except a user from everyone", doc(rule("a", `<many><except id="sip:bob@h"/></many>`, "allow"), rule("b", `<one id="sip:bob@h"/>`, "confirm")),
			[]Rule{{"*", "allow"}, {"bob@h", "confirm"}}},
		{"except a domain from everyone", doc(rule("a", `<many><except domain="H"/></many>`, "allow"), rule("b", `<many domain="h"/>`, "block")),
			[]Rule{{"*", "allow"}, {"*@h", "block"}}},
		{"a user of an excepted domain", doc(rule("a", `<many><except domain="h"/></many>`, "allow"), rule("b", `<many domain="h"/>`, "block"), rule("c", `<one id="sip:bob@h"/>`, "confirm")),
			[]Rule{{"*", "allow"}, {"*@h", "block"}, {"bob@h", "confirm"}}},
		{"a user the document need not name", doc(rule("a", `<many><except id="sip:bob@h"/></many>`, "allow"), rule("b", `<many domain="h"/>`, "allow")),
			[]Rule{{"*", "allow"}, {"*@h", "allow"}}},
		{"a domain rule the document implies", doc(rule("a", `<many><except domain="h"/></many>`, "allow"), rule("b", `<one id="sip:x@y"/><many/>`, "confirm")),
			[]Rule{{"*", "allow"}, {"*@h", "confirm"}, {"x@y", "allow"}}},
		{"blanks in the value", doc(rule("a", `<one id=" sip:bob@h "/>`, " allow\n")),
			[]Rule{{"bob@h", "allow"}}},
		{"identity forms", doc(rule("a", `<one id="SIPS:Alice@Example.COM:5061;transport=tls"/><one id="pres:carol@h"/><one id="sip:d@[2001:db8::1]:5060"/><one id="e@h?subject=x"/>`, "allow")),
			[]Rule{{"alice@example.com", "allow"}, {"carol@h", "allow"}, {"d@[2001:db8::1]", "allow"}, {"e@h", "allow"}}},
		{"empty ruleset", doc(), []Rule{}},
		{"unknown action beside sub-handling", doc(`<rule id="a"><conditions><identity><one id="sip:b@h"/></identity></conditions><actions><x:fwd xmlns:x="urn:x">y</x:fwd><pr:sub-handling>allow</pr:sub-handling></actions></rule>`),
			[]Rule{{"b@h", "allow"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Parse([]byte(c.in))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("got  %v\nwant %v", got, c.want)
			}
			checkSemantics(t, []byte(c.in), got)
		})
	}
}

func TestParseUnsupported(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"sphere", doc(`<rule id="r"><conditions><sphere value="work"/></conditions><actions><pr:sub-handling>allow</pr:sub-handling></actions></rule>`),
			`rule "r": the condition <sphere>`},
		{"validity", doc(`<rule id="r"><conditions><identity><one id="sip:a@h"/></identity><validity><from>2003-08-15T10:20:00.000-05:00</from><until>2003-09-15T10:20:00.000-05:00</until></validity></conditions><actions><pr:sub-handling>allow</pr:sub-handling></actions></rule>`),
			`rule "r": the condition <validity>`},
		{"extension condition", doc(`<rule id="r"><conditions><ocp:external-list xmlns:ocp="urn:oma:xml:xdm:common-policy"/></conditions><actions><pr:sub-handling>allow</pr:sub-handling></actions></rule>`),
			"the condition <external-list> of urn:oma:xml:xdm:common-policy"},
		{"extension identity", doc(rule("r", `<x:group xmlns:x="urn:x"/>`, "allow")), `the identity <group> of urn:x`},
		{"extension inside many", doc(rule("r", `<many><x:unless xmlns:x="urn:x"/></many>`, "allow")), `<unless> of urn:x inside <many>`},
		{"tel identity", doc(rule("r", `<one id="tel:+1-212-555-1234"/>`, "allow")), `the identity "tel:+1-212-555-1234", which is not a SIP URI`},
		{"mailto identity", doc(rule("r", `<one id="mailto:bob@example.net"/>`, "allow")), "not a SIP URI"},
		{"tel except", doc(rule("r", `<many><except id="tel:+1"/></many>`, "allow")), "not a SIP URI"},
		{"no user", doc(rule("r", `<one id="sip:example.com"/>`, "allow")), "no user@domain"},
		{"wildcard user", doc(rule("r", `<one id="sip:*@example.com"/>`, "allow")), "whole domain"},
		{"bad host", doc(rule("r", `<one id="sip:a@b@c"/>`, "allow")), "not a host name"},
		{"bad domain", doc(rule("r", `<many domain="example.com:5060"/>`, "allow")), "not a host name"},
		{"no sub-handling", doc(`<rule id="r"><conditions><identity><one id="sip:a@h"/></identity></conditions><actions/></rule>`), `rule "r": it has no <sub-handling>`},
		{"no actions", doc(`<rule id="r"><conditions><identity><one id="sip:a@h"/></identity></conditions></rule>`), "no <sub-handling>"},
		{"two identities", doc(`<rule id="r"><conditions><identity><one id="sip:a@h"/></identity><identity><many/></identity></conditions><actions><pr:sub-handling>allow</pr:sub-handling></actions></rule>`), "2 <identity> conditions"},
		{"user excepted with no rule", doc(rule("r", `<many domain="h"><except id="sip:bob@h"/></many>`, "allow")), "leaves bob@h under no rule while *@h is allow"},
		{"domain excepted with no rule", doc(rule("r", `<many><except domain="h"/></many>`, "confirm")), "leaves *@h under no rule while * is confirm"},
		{"user excepted from everyone", doc(rule("r", `<many><except id="sip:bob@h"/></many>`, "block")), "leaves bob@h under no rule while * is block"},
		// RFC 5025's own example shows some services and all persons:
		// hlas shows an allowed watcher everything, so it refuses rather
		// than widen what the presentity allowed.
		{"rfc5025 narrowed transformations", string(readFile(t, "rfc5025.xml")), "no full <provide-services>"},
		{"no devices", doc(`<rule id="r"><conditions><identity><one id="sip:a@h"/></identity></conditions><actions><pr:sub-handling>allow</pr:sub-handling></actions>` +
			`<transformations><pr:provide-services><pr:all-services/></pr:provide-services><pr:provide-persons><pr:all-persons/></pr:provide-persons><pr:provide-all-attributes/></transformations></rule>`),
			"no full <provide-devices>"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rs, err := Parse([]byte(c.in))
			var u *Unsupported
			if !errors.As(err, &u) {
				t.Fatalf("got %v, %v; want *Unsupported", rs, err)
			}
			if !strings.Contains(u.What, c.want) || !strings.HasPrefix(err.Error(), "presrules: hlas cannot honour ") {
				t.Errorf("error %q, want it to mention %q", err, c.want)
			}
		})
	}
}

// Transformations that grant everything, and none at all, are accepted.
func TestParseFullTransformations(t *testing.T) {
	full := `<transformations><pr:provide-services><pr:all-services/></pr:provide-services><pr:provide-persons><pr:all-persons/></pr:provide-persons>` +
		`<pr:provide-devices><pr:all-devices/></pr:provide-devices><pr:provide-all-attributes/></transformations>`
	for _, tr := range []string{full, `<transformations/>`, ``} {
		in := doc(`<rule id="r"><conditions><identity><one id="sip:a@h"/></identity></conditions><actions><pr:sub-handling>allow</pr:sub-handling></actions>` + tr + `</rule>`)
		if rs, err := Parse([]byte(in)); err != nil || len(rs) != 1 || rs[0].Action != "allow" {
			t.Errorf("%q: %v %v", tr, rs, err)
		}
	}
}

func TestParseErrors(t *testing.T) {
	many := func(n int, s string) string { return strings.Repeat(s, n) }
	cases := []struct{ name, in, want string }{
		{"empty", ``, "no root"},
		{"wrong root", `<ruleset xmlns="urn:ietf:params:xml:ns:pres-rules"/>`, "want <ruleset> in urn:ietf:params:xml:ns:common-policy"},
		{"rule without id", doc(`<rule><actions><pr:sub-handling>allow</pr:sub-handling></actions></rule>`), "<rule> without id"},
		{"duplicate id", doc(rule("a", "", "allow"), rule("a", `<one id="sip:x@h"/>`, "block")), `two rules with id "a"`},
		{"bad sub-handling", doc(rule("a", "", "deny")), `sub-handling "deny"`},
		{"sub-handling in wrong namespace", doc(`<rule id="a"><actions><sub-handling>allow</sub-handling></actions></rule>`), "no <sub-handling>"},
		{"two sub-handlings", doc(`<rule id="a"><actions><pr:sub-handling>allow</pr:sub-handling><pr:sub-handling>block</pr:sub-handling></actions></rule>`), "2 <sub-handling>"},
		{"two conditions", doc(`<rule id="a"><conditions/><conditions/><actions><pr:sub-handling>allow</pr:sub-handling></actions></rule>`), "2 <conditions>"},
		{"two actions", doc(`<rule id="a"><actions/><actions/></rule>`), "2 <actions>"},
		{"empty identity", doc(rule("a", ` `, "allow")), "without <one> or <many>"},
		{"one without id", doc(rule("a", `<one/>`, "allow")), "<one> without id"},
		{"empty domain", doc(rule("a", `<many domain=" "/>`, "allow")), "empty domain"},
		{"except with both", doc(rule("a", `<many><except id="sip:a@h" domain="h"/></many>`, "allow")), "either an id or a domain"},
		{"except with neither", doc(rule("a", `<many><except/></many>`, "allow")), "either an id or a domain"},
		{"DTD", `<!DOCTYPE ruleset>` + doc(), "DTD"},
		{"too deep", doc(strings.Repeat("<x>", MaxDepth) + strings.Repeat("</x>", MaxDepth)), "deeper"},
		{"malformed", doc(`<rule id="a">`), "malformed"},
		{"too many rules", doc(func() string {
			var b strings.Builder
			for i := range MaxRules + 1 {
				fmt.Fprintf(&b, `<rule id="r%d"/>`, i)
			}
			return b.String()
		}()), "more than 1024 rules"},
		{"too many identities", doc(rule("a", many(MaxIdentities+1, `<one id="sip:a@h"/>`), "allow")), "more than 4096 identities"},
		{"too many exceptions", doc(rule("a", `<many>`+many(MaxIdentities, `<except domain="h"/>`)+`</many>`, "allow")), "more than 4096 identities"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rs, err := Parse([]byte(c.in))
			if err == nil {
				t.Fatalf("accepted: %v", rs)
			}
			var u *Unsupported
			if errors.As(err, &u) && c.want != "no <sub-handling>" {
				t.Errorf("malformed document reported as unsupported: %v", err)
			}
			if !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "presrules: ") {
				t.Errorf("error %q, want it to mention %q", err, c.want)
			}
		})
	}
	if _, err := Parse([]byte(doc(strings.Repeat(" ", MaxSize)))); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized: %v", err)
	}
	// The limit is inclusive.
	if rs, err := Parse([]byte(doc(rule("a", many(MaxIdentities, `<one id="sip:a@h"/>`), "allow")))); err != nil || len(rs) != 1 {
		t.Errorf("at the identity limit: %v %v", rs, err)
	}
}

func TestMarshalExact(t *testing.T) {
	got := string(Marshal([]Rule{{"bob@example.com", "block"}, {"*@Example.com", "allow"}, {"carol@example.org", "allow"}}))
	want := `<?xml version="1.0" encoding="UTF-8"?>
<cr:ruleset xmlns:cr="urn:ietf:params:xml:ns:common-policy" xmlns:pr="urn:ietf:params:xml:ns:pres-rules">
<cr:rule id="block">
<cr:conditions>
<cr:identity>
<cr:one id="sip:bob@example.com"/>
</cr:identity>
</cr:conditions>
<cr:actions>
<pr:sub-handling>block</pr:sub-handling>
</cr:actions>
</cr:rule>
<cr:rule id="allow">
<cr:conditions>
<cr:identity>
<cr:one id="sip:carol@example.org"/>
<cr:many domain="example.com">
<cr:except id="sip:bob@example.com"/>
</cr:many>
</cr:identity>
</cr:conditions>
<cr:actions>
<pr:sub-handling>allow</pr:sub-handling>
</cr:actions>
<cr:transformations>
<pr:provide-services><pr:all-services/></pr:provide-services>
<pr:provide-persons><pr:all-persons/></pr:provide-persons>
<pr:provide-devices><pr:all-devices/></pr:provide-devices>
<pr:provide-all-attributes/>
</cr:transformations>
</cr:rule>
</cr:ruleset>
`
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if string(Marshal(nil)) != "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<cr:ruleset xmlns:cr=\"urn:ietf:params:xml:ns:common-policy\" xmlns:pr=\"urn:ietf:params:xml:ns:pres-rules\">\n</cr:ruleset>\n" {
		t.Errorf("empty: %s", Marshal(nil))
	}
}

// Whatever hlas stores, and only that, comes back from the document,
// including narrower rules with lower actions, which need <except>.
func TestMarshalRoundTrip(t *testing.T) {
	cases := [][]Rule{
		{{"alice@example.com", "allow"}},
		{{"bob@example.com", "block"}, {"*@example.com", "allow"}},
		{{"*", "allow"}, {"*@spam.example", "block"}, {"eve@spam.example", "confirm"}, {"bob@example.com", "polite-block"}},
		{{"*", "confirm"}, {"*@h", "block"}, {"a@h", "allow"}, {"b@h", "block"}, {"c@h", "polite-block"}},
		{{"*", "polite-block"}, {"*@h", "allow"}, {"a@h", "confirm"}, {"b@other", "block"}},
		{{"*", "block"}},
		{{`o'neil;x="y"@[2001:db8::1]`, "allow"}, {"*@[2001:db8::1]", "confirm"}},
		{},
	}
	for _, rs := range cases {
		out := Marshal(rs)
		got, err := Parse(out)
		if err != nil {
			t.Fatalf("%v: %v\n%s", rs, err, out)
		}
		if want := sorted(rs); !reflect.DeepEqual(got, want) && len(rs) > 0 {
			t.Errorf("got  %v\nwant %v\n%s", got, want, out)
		}
		checkSemantics(t, out, got)
	}
}

func TestMarshalNormalizes(t *testing.T) {
	got, err := Parse(Marshal([]Rule{
		{"Bob@Example.COM", "confirm"},
		{"bob@example.com", "allow"},
		{"bob@example.com", "block"},
		{"nobody", "allow"},
		{"x@h", "deny"},
		{"@h", "allow"},
		{"y@h:5060", "allow"},
		{"*@", "allow"},
		{"z@h ", "allow"},
		{"", "block"},
	}))
	if err != nil {
		t.Fatal(err)
	}
	if want := []Rule{{"bob@example.com", "allow"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

// Random rule sets over a few users and domains: the document Marshal
// writes decides every watcher as the most specific stored rule does,
// judged by an evaluator of RFC 4745 written independently of Parse.
func TestMarshalRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	patterns := []string{"*", "*@a.test", "*@b.test", "u1@a.test", "u2@a.test", "u1@b.test", "u3@c.test"}
	names := actions()
	for range 500 {
		var rs []Rule
		for _, p := range patterns {
			if r.IntN(2) == 0 {
				rs = append(rs, Rule{p, names[r.IntN(len(names))]})
			}
		}
		out := Marshal(rs)
		got, err := Parse(out)
		if err != nil {
			t.Fatalf("%v: %v\n%s", rs, err, out)
		}
		if want := sorted(rs); len(rs) > 0 && !reflect.DeepEqual(got, want) {
			t.Fatalf("got  %v\nwant %v\n%s", got, want, out)
		}
		checkSemantics(t, out, rs)
	}
}

// lookup is how hlas decides: the watcher's rule, else its domain's, else
// everyone's.
func lookup(rs []Rule, w string) string {
	find := func(p string) (string, bool) {
		for _, r := range rs {
			if r.Watcher == p {
				return r.Action, true
			}
		}
		return "", false
	}
	if a, ok := find(w); ok {
		return a
	}
	_, d, _ := strings.Cut(w, "@")
	if a, ok := find("*@" + d); ok {
		return a
	}
	a, _ := find("*")
	return a
}

// checkSemantics compares, for every watcher the document names and an
// unnamed one in each domain and outside them, the decision of RFC 4745
// on doc with lookup on rs.
func checkSemantics(t testing.TB, doc []byte, rs []Rule) {
	t.Helper()
	var x xmlRuleset
	if err := rules().Decode(doc, NS, "ruleset", &x); err != nil {
		t.Fatal(err)
	}
	probes := map[string]bool{"zz-unnamed@zz-unnamed.invalid": true}
	addDomain := func(d string) { probes["zz-unnamed@"+strings.ToLower(strings.TrimSpace(d))] = true }
	addID := func(id string) {
		if w, err := watcher(id); err == nil {
			probes[w] = true
			_, d, _ := strings.Cut(w, "@")
			addDomain(d)
		}
	}
	for _, r := range x.Rules {
		for _, c := range r.Conditions {
			for _, idn := range c.Identity {
				for _, o := range idn.One {
					addID(*o.ID)
				}
				for _, m := range idn.Many {
					if m.Domain != nil {
						addDomain(*m.Domain)
					}
					for _, e := range m.Except {
						if e.ID != nil {
							addID(*e.ID)
						} else {
							addDomain(*e.Domain)
						}
					}
				}
			}
		}
	}
	for _, r := range rs {
		if r.Watcher != "*" {
			probes[strings.Replace(r.Watcher, "*@", "zz-unnamed@", 1)] = true
		}
	}
	for w := range probes {
		if want, got := rfcDecide(&x, w), lookup(rs, w); want != got {
			t.Errorf("watcher %s: RFC 4745 gives %q, the rules %q\nrules %v\n%s", w, want, got, rs, doc)
		}
	}
}

// rfcDecide evaluates a ruleset for one watcher as RFC 4745 §10 says:
// every rule whose conditions all hold applies, the highest sub-handling
// wins; "" when no rule applies.
func rfcDecide(x *xmlRuleset, w string) string {
	_, dom, _ := strings.Cut(w, "@")
	norm := func(s string) string { return strings.ToLower(strings.TrimSpace(s)) }
	best := ""
	for _, r := range x.Rules {
		matches := true
		for _, c := range r.Conditions {
			for _, idn := range c.Identity {
				any := false
				for _, o := range idn.One {
					got, err := watcher(*o.ID)
					any = any || (err == nil && got == w)
				}
				for _, m := range idn.Many {
					if m.Domain != nil && norm(*m.Domain) != dom {
						continue
					}
					excepted := false
					for _, e := range m.Except {
						if e.Domain != nil && norm(*e.Domain) == dom {
							excepted = true
						}
						if e.ID != nil {
							got, err := watcher(*e.ID)
							excepted = excepted || (err == nil && got == w)
						}
					}
					any = any || !excepted
				}
				matches = matches && any
			}
		}
		if !matches {
			continue
		}
		for _, a := range r.Actions {
			for _, sh := range a.SubHandling {
				if rank(strings.TrimSpace(sh)) > rank(best) {
					best = strings.TrimSpace(sh)
				}
			}
		}
	}
	return best
}

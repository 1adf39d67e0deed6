package pidf

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/hlas-voip/hlas/internal/xmltext"
)

// ErrTooLarge is returned (wrapped) by Parse for a body above MaxSize; the
// caller answers it with 413 rather than 400.
var ErrTooLarge = errors.New("pidf: document larger than 64 KiB")

// rules are the limits and error prefix Parse applies; a function rather
// than a variable so that nothing can change them.
func rules() xmltext.Rules {
	return xmltext.Rules{Prefix: "pidf", MaxSize: MaxSize, MaxDepth: MaxDepth, TooLarge: ErrTooLarge}
}

const nsXML = "http://www.w3.org/XML/1998/namespace"

// element is a node of the small tree Parse builds. Names are kept as
// written (qname, attribute prefixes) so that raw copies can be rebuilt
// exactly; space/local are the resolved name.
type element struct {
	space, local string
	qname        string
	attrs        []xml.Attr // Name.Space is the prefix as written
	children     []*element
	text         []byte
	start        int  // offset of '<'
	inner        int  // offset just after the start tag
	end          int  // offset just after the end tag
	selfClosing  bool // written as <x/>
	usesDefault  bool // it or a descendant has an unprefixed name
}

func (e *element) attr(local string) (string, bool) {
	for _, a := range e.attrs {
		if a.Name.Space == "" && a.Name.Local == local {
			return a.Value, true
		}
	}
	return "", false
}

func (e *element) lang() string {
	for _, a := range e.attrs {
		if a.Name.Space == "xml" && a.Name.Local == "lang" {
			return a.Value
		}
	}
	return ""
}

func (e *element) is(space, local string) bool { return e.space == space && e.local == local }

func (e *element) trimmed() string { return string(bytes.TrimSpace(e.text)) }

func (e *element) describe() string {
	if e.space == "" {
		return "<" + e.local + ">"
	}
	return "<" + e.local + "> in " + e.space
}

type binding struct{ prefix, uri string }

// Parse reads and validates a PIDF document (RFC 3863): well-formed XML of
// at most MaxSize bytes and MaxDepth levels without a DTD, root <presence>
// in the PIDF namespace with an entity attribute, every tuple with a unique
// id and a status whose basic, if any, is open or closed. The error says
// what is wrong, fit for the Warning of a 400.
func Parse(b []byte) (*Document, error) {
	b, err := rules().Prepare(b)
	if err != nil {
		return nil, err
	}
	if err := rules().CheckChars(b); err != nil {
		return nil, err
	}
	root, rootDecls, err := buildTree(b)
	if err != nil {
		return nil, err
	}
	if !root.is(NS, "presence") {
		return nil, fmt.Errorf("pidf: root element is %s, want <presence> in %s", root.describe(), NS)
	}
	doc := &Document{}
	entity, _ := root.attr("entity")
	if doc.Entity = strings.TrimSpace(entity); doc.Entity == "" {
		return nil, errors.New("pidf: <presence> has no entity attribute")
	}
	seen := make(map[string]bool)
	for _, c := range root.children {
		id, _ := c.attr("id")
		switch {
		case c.is(NS, "tuple"):
			t, err := parseTuple(c)
			if err != nil {
				return nil, err
			}
			t.Raw = rawCopy(b, c, rootDecls)
			doc.Tuples = append(doc.Tuples, t)
		case c.is(NS, "note"):
			doc.Notes = append(doc.Notes, Note{Lang: c.lang(), Text: string(c.text)})
			continue
		case c.is(NSDataModel, "person"):
			p := parsePerson(c)
			p.Raw = rawCopy(b, c, rootDecls)
			doc.Persons = append(doc.Persons, p)
		default:
			doc.Extensions = append(doc.Extensions, Extension{
				Space: c.space, Local: c.local, ID: id, Raw: rawCopy(b, c, rootDecls),
			})
		}
		if id != "" {
			if seen[id] {
				return nil, fmt.Errorf("pidf: id %q used twice", id)
			}
			seen[id] = true
		}
	}
	return doc, nil
}

func parseTuple(e *element) (Tuple, error) {
	var t Tuple
	id, _ := e.attr("id")
	if t.ID = id; id == "" {
		return t, errors.New("pidf: <tuple> without id attribute")
	}
	var status *element
	for _, c := range e.children {
		switch {
		case c.is(NS, "status"):
			if status != nil {
				return t, fmt.Errorf("pidf: tuple %q has two <status> elements", id)
			}
			status = c
		case c.is(NS, "contact"):
			t.Contact = c.trimmed()
			t.Priority, _ = c.attr("priority")
		case c.is(NS, "note"):
			t.Notes = append(t.Notes, Note{Lang: c.lang(), Text: string(c.text)})
		case c.is(NS, "timestamp"):
			t.Timestamp = parseTime(c.trimmed())
		case c.is(NSRPID, "activities"):
			t.Activities = appendActivities(t.Activities, c)
		}
	}
	if status == nil {
		return t, fmt.Errorf("pidf: tuple %q has no <status>", id)
	}
	for _, c := range status.children {
		switch {
		case c.is(NS, "basic"):
			switch b := c.trimmed(); b {
			case "open", "closed":
				t.Basic = b
			default:
				return t, fmt.Errorf("pidf: tuple %q: <basic> is %q, want open or closed", id, xmltext.Clip(b))
			}
		case c.is(NSRPID, "activities"):
			t.Activities = appendActivities(t.Activities, c)
		}
	}
	return t, nil
}

func parsePerson(e *element) Person {
	var p Person
	p.ID, _ = e.attr("id")
	for _, c := range e.children {
		switch {
		case c.is(NSRPID, "activities"):
			p.Activities = appendActivities(p.Activities, c)
		case c.is(NSDataModel, "note"):
			p.Notes = append(p.Notes, Note{Lang: c.lang(), Text: string(c.text)})
		case c.is(NSDataModel, "timestamp"):
			p.Timestamp = parseTime(c.trimmed())
		}
	}
	return p
}

// appendActivities collects the activity elements of <rpid:activities>
// (RFC 4480 §3.2); its <rpid:note> children are not activities.
func appendActivities(list []string, e *element) []string {
	for _, c := range e.children {
		if c.space != NSRPID || c.local == "note" {
			continue
		}
		a := c.local
		if a == "other" {
			if t := c.trimmed(); t != "" {
				a = t
			}
		}
		if !slices.Contains(list, a) {
			list = append(list, a)
		}
	}
	return list
}

func parseTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}
	}
	return t
}

// buildTree tokenizes b into an element tree, checking what encoding/xml's
// raw tokenizer leaves to the caller: matching end tags, namespace
// prefixes, duplicate attributes, a single root, depth, and no DTD (the
// decoder expands no entities, but a DOCTYPE has no place in PIDF).
// It returns the root and the namespace declarations made on the root.
func buildTree(b []byte) (*element, []binding, error) {
	d := xmltext.NewDecoder(b)
	var (
		root      *element
		rootDecls []binding
		stack     []*element
		scope     []binding // in-scope declarations, innermost last
		marks     []int     // len(scope) at each open element
	)
	for {
		off := int(d.InputOffset())
		tok, err := d.RawToken()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("pidf: malformed XML: %v", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if len(stack) == 0 && root != nil {
				return nil, nil, errors.New("pidf: more than one root element")
			}
			if len(stack) >= MaxDepth {
				return nil, nil, fmt.Errorf("pidf: elements nested deeper than %d", MaxDepth)
			}
			marks = append(marks, len(scope))
			for _, a := range t.Attr {
				switch {
				case a.Name.Space == "" && a.Name.Local == "xmlns":
					scope = append(scope, binding{"", a.Value})
				case a.Name.Space == "xmlns":
					if a.Value == "" {
						return nil, nil, fmt.Errorf("pidf: prefix %q declared with an empty namespace", a.Name.Local)
					}
					if (a.Name.Local == "xml") != (a.Value == nsXML) || a.Name.Local == "xmlns" {
						return nil, nil, fmt.Errorf("pidf: reserved prefix or namespace misused in xmlns:%s", a.Name.Local)
					}
					scope = append(scope, binding{a.Name.Local, a.Value})
				}
			}
			e := &element{
				local: t.Name.Local,
				qname: qname(t.Name),
				attrs: t.Attr,
				start: off,
				inner: int(d.InputOffset()),
			}
			e.selfClosing = e.inner >= 2 && b[e.inner-2] == '/'
			var ok bool
			if e.space, ok = resolve(scope, t.Name.Space); !ok {
				return nil, nil, fmt.Errorf("pidf: element <%s> uses undeclared prefix %q", e.qname, t.Name.Space)
			}
			if err := checkAttrs(scope, e); err != nil {
				return nil, nil, err
			}
			if t.Name.Space == "" && len(stack) > 0 {
				stack[min(1, len(stack)-1)].usesDefault = true
				e.usesDefault = true
			}
			if len(stack) == 0 {
				root = e
				rootDecls = append([]binding(nil), scope...)
			} else {
				p := stack[len(stack)-1]
				p.children = append(p.children, e)
			}
			stack = append(stack, e)
		case xml.EndElement:
			if len(stack) == 0 {
				return nil, nil, fmt.Errorf("pidf: unexpected end tag </%s>", qname(t.Name))
			}
			e := stack[len(stack)-1]
			if q := qname(t.Name); q != e.qname {
				return nil, nil, fmt.Errorf("pidf: element <%s> closed by </%s>", e.qname, q)
			}
			e.end = int(d.InputOffset())
			stack = stack[:len(stack)-1]
			scope = scope[:marks[len(marks)-1]]
			marks = marks[:len(marks)-1]
		case xml.CharData:
			if len(stack) == 0 {
				if len(bytes.TrimSpace(t)) != 0 {
					return nil, nil, errors.New("pidf: text outside the root element")
				}
				continue
			}
			e := stack[len(stack)-1]
			e.text = append(e.text, t...)
		case xml.Directive:
			return nil, nil, errors.New("pidf: DTDs and other <!...> declarations are not allowed")
		case xml.ProcInst:
			if off != 0 && strings.EqualFold(t.Target, "xml") {
				return nil, nil, errors.New("pidf: XML declaration not at the start")
			}
		}
	}
	if len(stack) > 0 {
		return nil, nil, fmt.Errorf("pidf: document ends inside <%s>", stack[len(stack)-1].qname)
	}
	if root == nil {
		return nil, nil, errors.New("pidf: no root element")
	}
	return root, rootDecls, nil
}

// checkAttrs rejects attributes with undeclared prefixes and attributes
// that are the same after namespace resolution (XML Namespaces §6.3).
func checkAttrs(scope []binding, e *element) error {
	type key struct{ space, local string }
	var seen map[key]bool
	keys := make([]key, 0, len(e.attrs))
	for _, a := range e.attrs {
		k := key{a.Name.Space, a.Name.Local}
		switch a.Name.Space {
		case "", "xmlns":
		case "xml":
			k.space = nsXML
		default:
			uri, ok := resolve(scope, a.Name.Space)
			if !ok {
				return fmt.Errorf("pidf: attribute %s:%s of <%s> uses an undeclared prefix", a.Name.Space, a.Name.Local, e.qname)
			}
			k.space = uri
		}
		dup := false
		if seen != nil {
			dup = seen[k]
		} else {
			for _, o := range keys {
				if o == k {
					dup = true
					break
				}
			}
		}
		if dup {
			return fmt.Errorf("pidf: <%s> has attribute %q twice", e.qname, a.Name.Local)
		}
		keys = append(keys, k)
		if len(keys) == 16 {
			seen = make(map[key]bool, len(e.attrs))
			for _, o := range keys {
				seen[o] = true
			}
		} else if seen != nil {
			seen[k] = true
		}
	}
	return nil
}

func resolve(scope []binding, prefix string) (string, bool) {
	if prefix == "xml" {
		return nsXML, true
	}
	for i := len(scope) - 1; i >= 0; i-- {
		if scope[i].prefix == prefix {
			return scope[i].uri, true
		}
	}
	return "", prefix == ""
}

func qname(n xml.Name) string {
	if n.Space == "" {
		return n.Local
	}
	return n.Space + ":" + n.Local
}

// standardBinding is what Compose declares on its root for prefix p.
func standardBinding(p string) (string, bool) {
	switch p {
	case "":
		return NS, true
	case "dm":
		return NSDataModel, true
	case "rpid":
		return NSRPID, true
	}
	return "", false
}

// rawCopy returns the top-level element e as self-contained XML: its start
// tag rebuilt with the root's namespace declarations that it inherits and
// that differ from Compose's root, followed by its content as received.
func rawCopy(b []byte, e *element, rootDecls []binding) []byte {
	out := make([]byte, 0, e.end-e.start+64)
	out = append(out, '<')
	out = append(out, e.qname...)
	own := func(prefix string) bool {
		for _, a := range e.attrs {
			if (prefix == "" && a.Name.Space == "" && a.Name.Local == "xmlns") ||
				(prefix != "" && a.Name.Space == "xmlns" && a.Name.Local == prefix) {
				return true
			}
		}
		return false
	}
	// The default namespace is stated when it differs from PIDF and is used,
	// even as xmlns="" when the source had none.
	def, _ := resolve(rootDecls, "")
	if def != NS && e.usesDefault && !own("") {
		out = xmltext.AppendAttr(out, "xmlns", def)
	}
	for i, bd := range rootDecls {
		if bd.prefix == "" || bd.prefix == "xml" || own(bd.prefix) || shadowed(rootDecls[i+1:], bd.prefix) {
			continue
		}
		if std, ok := standardBinding(bd.prefix); ok && std == bd.uri {
			continue
		}
		out = xmltext.AppendAttr(out, "xmlns:"+bd.prefix, bd.uri)
	}
	for _, a := range e.attrs {
		out = xmltext.AppendAttr(out, qname(a.Name), a.Value)
	}
	if e.selfClosing {
		return append(out, "/>"...)
	}
	out = append(out, '>')
	return append(out, b[e.inner:e.end]...)
}

func shadowed(later []binding, prefix string) bool {
	for _, bd := range later {
		if bd.prefix == prefix {
			return true
		}
	}
	return false
}

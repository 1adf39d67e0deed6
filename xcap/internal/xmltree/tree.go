// Package xmltree is the small XML tree the XCAP server edits: elements
// with their namespace and local name, attributes, text, comments and
// processing instructions, read with the prefixes as written and written
// back with them, so that a document keeps its namespace declarations,
// unknown extension elements and formatting through an edit (RFC 4825
// §8.2: everything but the selected node stays as it was).
//
// Parsing is bounded by Limits; encoding/xml reads the tokens (RawToken,
// so that prefixes survive) and this package checks what RawToken leaves
// out: matching end tags, bound prefixes, unique attributes, one root.
package xmltree

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/hlas-voip/hlas/internal/xmltext"
)

// Namespaces that are bound without a declaration (Namespaces in XML 1.0
// §3).
const (
	XMLNamespace   = "http://www.w3.org/XML/1998/namespace"
	XMLNSNamespace = "http://www.w3.org/2000/xmlns/"
)

// Kind is the kind of a Node.
type Kind uint8

// Node kinds.
const (
	Element Kind = iota
	Text
	Comment
	ProcInst
)

// Name is a name as written: Prefix is empty for an unprefixed name.
type Name struct {
	Prefix, Local string
}

// String returns the qualified name.
func (n Name) String() string {
	if n.Prefix == "" {
		return n.Local
	}
	return n.Prefix + ":" + n.Local
}

// Attr is an attribute; namespace declarations (xmlns, xmlns:p) are kept
// among the attributes, in their place. Space is the attribute's
// namespace ("" for an unprefixed attribute), Value its text with
// references resolved.
type Attr struct {
	Name  Name
	Space string
	Value string
}

// IsNamespaceDecl reports an xmlns or xmlns:p attribute.
func (a *Attr) IsNamespaceDecl() bool {
	return a.Name.Prefix == "xmlns" || (a.Name.Prefix == "" && a.Name.Local == "xmlns")
}

// declared returns the prefix a namespace declaration binds ("" for the
// default namespace); ok is false for other attributes.
func (a *Attr) declared() (prefix string, ok bool) {
	switch {
	case a.Name.Prefix == "xmlns":
		return a.Name.Local, true
	case a.Name.Prefix == "" && a.Name.Local == "xmlns":
		return "", true
	}
	return "", false
}

// Node is an element, a run of text, a comment or a processing
// instruction.
type Node struct {
	Kind Kind
	// Name is an element's name as written, or a processing
	// instruction's target (in Local).
	Name Name
	// Space is an element's namespace.
	Space    string
	Attr     []Attr
	Children []*Node
	Parent   *Node
	// Data is the text of a Text node (references resolved), a comment
	// or a processing instruction's content.
	Data string
}

// Document is a parsed document: the root element with the comments and
// processing instructions around it (white space between them is not
// kept; the XML declaration is written anew).
type Document struct {
	Prolog []*Node
	Root   *Node
	Epilog []*Node
}

// Limits bound what Parse builds from its input.
type Limits struct {
	MaxDepth    int // element nesting
	MaxElements int // elements in the document or fragment
	MaxAttrs    int // attributes (declarations included) per element
}

// Error kinds, wrapped by the errors of Parse and ParseFragment so that
// the XCAP layer can name the condition (RFC 4825 §11).
var (
	// ErrSyntax: not well-formed (or not namespace-well-formed) XML.
	ErrSyntax = errors.New("not well-formed")
	// ErrEncoding: not UTF-8.
	ErrEncoding = errors.New("not UTF-8")
	// ErrLimit: a Limits bound was exceeded.
	ErrLimit = errors.New("too large")
	// ErrFragment: a fragment that is not exactly one element.
	ErrFragment = errors.New("not one element")
)

func syntaxf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrSyntax, fmt.Sprintf(format, args...))
}

// checkEncoding refuses input that is not UTF-8: invalid bytes, a
// declaration naming another encoding, or characters XML forbids.
func checkEncoding(b []byte) error {
	if !utf8.Valid(b) {
		return fmt.Errorf("%w: invalid UTF-8", ErrEncoding)
	}
	if enc := declaredEncoding(b); enc != "" && !strings.EqualFold(enc, "utf-8") && !strings.EqualFold(enc, "utf8") {
		return fmt.Errorf("%w: declared encoding %q", ErrEncoding, xmltext.Clip(enc))
	}
	if err := (xmltext.Rules{Prefix: "xml"}).CheckChars(b); err != nil {
		return fmt.Errorf("%w: %v", ErrSyntax, err)
	}
	return nil
}

// declaredEncoding returns the encoding an XML declaration at the start of
// b names.
func declaredEncoding(b []byte) string {
	if !bytes.HasPrefix(b, []byte("<?xml")) {
		return ""
	}
	end := bytes.Index(b, []byte("?>"))
	if end < 0 {
		return ""
	}
	decl := string(b[5:end])
	i := strings.Index(decl, "encoding")
	if i < 0 {
		return ""
	}
	rest := strings.TrimLeft(decl[i+len("encoding"):], " \t\r\n")
	if !strings.HasPrefix(rest, "=") {
		return ""
	}
	rest = strings.TrimLeft(rest[1:], " \t\r\n")
	if rest == "" || (rest[0] != '"' && rest[0] != '\'') {
		return ""
	}
	if j := strings.IndexByte(rest[1:], rest[0]); j >= 0 {
		return rest[1 : 1+j]
	}
	return ""
}

// parser turns RawTokens into nodes.
type parser struct {
	d        *xml.Decoder
	lim      Limits
	elements int
	// scope holds, per prefix, the namespaces its declarations in the
	// open elements bind, innermost last: a lookup costs the same however
	// many declarations the ancestors carry.
	scope map[string][]string
}

// newParser returns a parser whose scope starts as the one in force at
// base (nil for a document).
func newParser(b []byte, lim Limits, base *Node) *parser {
	p := &parser{d: newDecoder(b), lim: lim, scope: map[string][]string{}}
	for prefix, ns := range base.InScope() {
		p.scope[prefix] = []string{ns}
	}
	return p
}

// lookup returns the namespace prefix is bound to in the open elements.
func (p *parser) lookup(prefix string) (string, bool) {
	switch prefix {
	case "xml":
		return XMLNamespace, true
	case "xmlns":
		return XMLNSNamespace, true
	}
	if st := p.scope[prefix]; len(st) > 0 {
		return st[len(st)-1], true
	}
	return "", prefix == ""
}

// push brings the declarations of e into scope; pop takes them out.
func (p *parser) push(e *Node) {
	for i := range e.Attr {
		if prefix, ok := e.Attr[i].declared(); ok {
			p.scope[prefix] = append(p.scope[prefix], e.Attr[i].Value)
		}
	}
}

func (p *parser) pop(e *Node) {
	for i := range e.Attr {
		if prefix, ok := e.Attr[i].declared(); ok {
			st := p.scope[prefix]
			p.scope[prefix] = st[:len(st)-1]
		}
	}
}

// Parse reads a whole document. It must be UTF-8, hold exactly one root
// element, no DTD, and keep within lim.
func Parse(b []byte, lim Limits) (*Document, error) {
	if err := checkEncoding(b); err != nil {
		return nil, err
	}
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
	p := newParser(b, lim, nil)
	doc := new(Document)
	for {
		tok, err := p.d.RawToken()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, syntaxf("%v", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if doc.Root != nil {
				return nil, syntaxf("more than one root element")
			}
			root, err := p.element(t, nil, 1)
			if err != nil {
				return nil, err
			}
			doc.Root = root
		case xml.EndElement:
			return nil, syntaxf("unexpected end tag </%s>", rawName(t.Name))
		case xml.CharData:
			if len(bytes.TrimSpace(t)) != 0 {
				return nil, syntaxf("text outside the root element")
			}
		case xml.Comment:
			n := &Node{Kind: Comment, Data: string(t)}
			if doc.Root == nil {
				doc.Prolog = append(doc.Prolog, n)
			} else {
				doc.Epilog = append(doc.Epilog, n)
			}
		case xml.ProcInst:
			if strings.EqualFold(t.Target, "xml") {
				continue // the declaration, written anew
			}
			n := &Node{Kind: ProcInst, Name: Name{Local: t.Target}, Data: string(t.Inst)}
			if doc.Root == nil {
				doc.Prolog = append(doc.Prolog, n)
			} else {
				doc.Epilog = append(doc.Epilog, n)
			}
		case xml.Directive:
			return nil, syntaxf("DTDs and other <!...> declarations are not allowed")
		}
	}
	if doc.Root == nil {
		return nil, syntaxf("no root element")
	}
	return doc, nil
}

// ParseFragment reads one element that is to become a child of parent:
// prefixes the fragment does not declare resolve in parent's scope, and
// parent's depth counts against MaxDepth. White space, comments and an
// XML declaration around the element are allowed and dropped.
func ParseFragment(b []byte, parent *Node, lim Limits) (*Node, error) {
	if err := checkEncoding(b); err != nil {
		return nil, err
	}
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
	p := newParser(b, lim, parent)
	var el *Node
	for {
		tok, err := p.d.RawToken()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrFragment, err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if el != nil {
				return nil, fmt.Errorf("%w: more than one element", ErrFragment)
			}
			// The element hangs under parent for the namespace lookups; the
			// caller links it into parent's children.
			if el, err = p.element(t, parent, parent.Depth()+1); err != nil {
				if errors.Is(err, ErrSyntax) {
					return nil, fmt.Errorf("%w: %v", ErrFragment, err)
				}
				return nil, err
			}
		case xml.EndElement:
			return nil, fmt.Errorf("%w: unexpected end tag", ErrFragment)
		case xml.CharData:
			if len(bytes.TrimSpace(t)) != 0 {
				return nil, fmt.Errorf("%w: text outside the element", ErrFragment)
			}
		case xml.Directive:
			return nil, fmt.Errorf("%w: DTDs and other <!...> declarations are not allowed", ErrFragment)
		}
	}
	if el == nil {
		return nil, fmt.Errorf("%w: no element", ErrFragment)
	}
	return el, nil
}

func newDecoder(b []byte) *xml.Decoder {
	d := xml.NewDecoder(bytes.NewReader(b))
	d.Strict = true
	// checkEncoding has made sure the input is UTF-8 whatever its
	// declaration says.
	d.CharsetReader = func(_ string, r io.Reader) (io.Reader, error) { return r, nil }
	return d
}

func rawName(n xml.Name) string {
	if n.Space == "" {
		return n.Local
	}
	return n.Space + ":" + n.Local
}

// checkName refuses names RawToken lets through but Namespaces in XML
// does not: more than one colon, an empty prefix or local part.
func checkName(n xml.Name) error {
	if n.Local == "" || strings.IndexByte(n.Local, ':') >= 0 {
		return syntaxf("bad name %q", xmltext.Clip(rawName(n)))
	}
	return nil
}

// element reads the element t starts, and everything up to its end tag,
// as a child of parent at depth (the root is at depth 1). It keeps its own
// stack rather than recursing, so that depth costs no goroutine stack.
func (p *parser) element(t xml.StartElement, parent *Node, depth int) (*Node, error) {
	root, err := p.start(t, parent, depth)
	if err != nil {
		return nil, err
	}
	cur := root
	// Adjacent runs of character data (text, then a CDATA section, ...)
	// make one Text node; they gather here so that many runs cost linear
	// time.
	var text []byte
	flush := func() {
		if len(text) > 0 {
			cur.Children = append(cur.Children, &Node{Kind: Text, Data: string(text), Parent: cur})
			text = text[:0]
		}
	}
	for cur != parent {
		tok, err := p.d.RawToken()
		if _, ok := tok.(xml.CharData); !ok && err == nil {
			flush()
		}
		if err == io.EOF {
			return nil, syntaxf("unexpected end of input in <%s>", cur.Name)
		}
		if err != nil {
			return nil, syntaxf("%v", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			n, err := p.start(t, cur, depth)
			if err != nil {
				return nil, err
			}
			cur.Children = append(cur.Children, n)
			cur = n
		case xml.EndElement:
			if t.Name.Space != cur.Name.Prefix || t.Name.Local != cur.Name.Local {
				return nil, syntaxf("element <%s> closed by </%s>", cur.Name, xmltext.Clip(rawName(t.Name)))
			}
			p.pop(cur)
			cur = cur.Parent
			depth--
		case xml.CharData:
			text = append(text, t...)
		case xml.Comment:
			cur.Children = append(cur.Children, &Node{Kind: Comment, Data: string(t), Parent: cur})
		case xml.ProcInst:
			if strings.EqualFold(t.Target, "xml") {
				return nil, syntaxf("XML declaration inside an element")
			}
			cur.Children = append(cur.Children, &Node{Kind: ProcInst, Name: Name{Local: t.Target}, Data: string(t.Inst), Parent: cur})
		case xml.Directive:
			return nil, syntaxf("DTDs and other <!...> declarations are not allowed")
		}
	}
	return root, nil
}

// start makes the node of a start tag under parent: attributes checked,
// namespaces resolved.
func (p *parser) start(t xml.StartElement, parent *Node, depth int) (*Node, error) {
	if depth > p.lim.MaxDepth {
		return nil, fmt.Errorf("%w: elements nested deeper than %d", ErrLimit, p.lim.MaxDepth)
	}
	if p.elements++; p.elements > p.lim.MaxElements {
		return nil, fmt.Errorf("%w: more than %d elements", ErrLimit, p.lim.MaxElements)
	}
	if len(t.Attr) > p.lim.MaxAttrs {
		return nil, fmt.Errorf("%w: more than %d attributes on <%s>", ErrLimit, p.lim.MaxAttrs, xmltext.Clip(rawName(t.Name)))
	}
	if err := checkName(t.Name); err != nil {
		return nil, err
	}
	n := &Node{Kind: Element, Name: Name{Prefix: t.Name.Space, Local: t.Name.Local}, Parent: parent}
	n.Attr = make([]Attr, 0, len(t.Attr))
	for _, a := range t.Attr {
		if err := checkName(a.Name); err != nil {
			return nil, err
		}
		at := Attr{Name: Name{Prefix: a.Name.Space, Local: a.Name.Local}, Value: a.Value}
		if prefix, ok := at.declared(); ok {
			if err := checkDecl(prefix, a.Value); err != nil {
				return nil, err
			}
		}
		n.Attr = append(n.Attr, at)
	}
	// Resolve names once every declaration of the tag is known.
	p.push(n)
	ns, ok := p.lookup(n.Name.Prefix)
	if !ok {
		return nil, syntaxf("unbound prefix %q", xmltext.Clip(n.Name.Prefix))
	}
	n.Space = ns
	for i := range n.Attr {
		a := &n.Attr[i]
		switch {
		case a.IsNamespaceDecl():
			a.Space = XMLNSNamespace
		case a.Name.Prefix != "":
			ns, ok := p.lookup(a.Name.Prefix)
			if !ok {
				return nil, syntaxf("unbound prefix %q", xmltext.Clip(a.Name.Prefix))
			}
			a.Space = ns
		}
	}
	if err := checkUnique(n.Attr); err != nil {
		return nil, err
	}
	return n, nil
}

// checkDecl refuses namespace declarations Namespaces in XML forbids.
func checkDecl(prefix, ns string) error {
	switch {
	case prefix == "xmlns":
		return syntaxf("the xmlns prefix cannot be declared")
	case prefix == "xml" && ns != XMLNamespace, prefix != "xml" && ns == XMLNamespace:
		return syntaxf("the xml prefix is bound to %s only", XMLNamespace)
	case ns == XMLNSNamespace:
		return syntaxf("%s cannot be declared", XMLNSNamespace)
	case prefix != "" && ns == "":
		return syntaxf("prefix %q declared empty", xmltext.Clip(prefix))
	}
	return nil
}

// checkUnique refuses two attributes of one name (the same namespace and
// local name, or the same declaration).
func checkUnique(attrs []Attr) error {
	same := func(a, b *Attr) bool {
		if a.IsNamespaceDecl() || b.IsNamespaceDecl() {
			return a.Name == b.Name
		}
		return a.Space == b.Space && a.Name.Local == b.Name.Local
	}
	if len(attrs) <= 16 {
		for i := range attrs {
			for j := i + 1; j < len(attrs); j++ {
				if same(&attrs[i], &attrs[j]) {
					return syntaxf("attribute %s repeated", xmltext.Clip(attrs[j].Name.String()))
				}
			}
		}
		return nil
	}
	type key struct{ decl, space, local string }
	seen := make(map[key]bool, len(attrs))
	for i := range attrs {
		a := &attrs[i]
		k := key{space: a.Space, local: a.Name.Local}
		if a.IsNamespaceDecl() {
			k = key{decl: a.Name.String()}
		}
		if seen[k] {
			return syntaxf("attribute %s repeated", xmltext.Clip(a.Name.String()))
		}
		seen[k] = true
	}
	return nil
}

// Lookup returns the namespace prefix is bound to at n ("" is the default
// namespace, bound to "" unless declared).
func (n *Node) Lookup(prefix string) (string, bool) {
	switch prefix {
	case "xml":
		return XMLNamespace, true
	case "xmlns":
		return XMLNSNamespace, true
	}
	for e := n; e != nil; e = e.Parent {
		for i := range e.Attr {
			if p, ok := e.Attr[i].declared(); ok && p == prefix {
				return e.Attr[i].Value, true
			}
		}
	}
	if prefix == "" {
		return "", true
	}
	return "", false
}

// PrefixFor returns a prefix bound to ns at n ("" for the default
// namespace when that is ns); ok is false when there is none. An
// attribute needs a non-empty prefix, so withDefault false skips the
// default namespace.
func (n *Node) PrefixFor(ns string, withDefault bool) (string, bool) {
	seen := map[string]bool{}
	for e := n; e != nil; e = e.Parent {
		for i := range e.Attr {
			p, ok := e.Attr[i].declared()
			if !ok || seen[p] {
				continue
			}
			seen[p] = true
			if e.Attr[i].Value == ns && (p != "" || withDefault) {
				return p, true
			}
		}
	}
	if ns == XMLNamespace {
		return "xml", true
	}
	return "", false
}

// Depth returns the nesting of n: 1 for a root, 0 for nil.
func (n *Node) Depth() int {
	d := 0
	for e := n; e != nil; e = e.Parent {
		d++
	}
	return d
}

// Elements returns n's child elements.
func (n *Node) Elements() []*Node {
	var out []*Node
	for _, c := range n.Children {
		if c.Kind == Element {
			out = append(out, c)
		}
	}
	return out
}

// AttrValue returns the value of the attribute local in namespace space.
func (n *Node) AttrValue(space, local string) (string, bool) {
	if i := n.AttrIndex(space, local); i >= 0 {
		return n.Attr[i].Value, true
	}
	return "", false
}

// AttrIndex returns the index in n.Attr of the attribute local in
// namespace space (never a namespace declaration), or -1.
func (n *Node) AttrIndex(space, local string) int {
	for i := range n.Attr {
		a := &n.Attr[i]
		if !a.IsNamespaceDecl() && a.Space == space && a.Name.Local == local {
			return i
		}
	}
	return -1
}

// Count returns the number of elements in the subtree of n, n included.
func (n *Node) Count() int {
	count := 0
	stack := []*Node{n}
	for len(stack) > 0 {
		e := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if e.Kind != Element {
			continue
		}
		count++
		stack = append(stack, e.Children...)
	}
	return count
}

// Bytes writes the document: an XML declaration for UTF-8, then the
// prolog, the root and the epilog.
func (d *Document) Bytes() []byte {
	b := []byte(`<?xml version="1.0" encoding="UTF-8"?>`)
	for _, n := range d.Prolog {
		b = n.AppendTo(b)
	}
	b = d.Root.AppendTo(b)
	for _, n := range d.Epilog {
		b = n.AppendTo(b)
	}
	return b
}

// AppendTo appends n as XML. Prefixes are written as they were read, so an
// element written on its own may need declarations from its ancestors
// (see AppendStandalone).
func (n *Node) AppendTo(b []byte) []byte {
	return n.appendTo(b, nil)
}

// AppendStandalone appends the element n with declarations added to its
// start tag for every prefix its subtree uses without declaring it, bound
// as in n's context: the result reads alone as it did in place.
func (n *Node) AppendStandalone(b []byte) []byte {
	return n.appendTo(b, n.missingDecls())
}

// missingDecls returns the declarations n's subtree needs from its
// ancestors.
func (n *Node) missingDecls() []Attr {
	need := map[string]bool{}
	type frame struct {
		e        *Node
		declared map[string]bool
	}
	stack := []frame{{n, map[string]bool{}}}
	for len(stack) > 0 {
		f := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		declared := f.declared
		if hasDecl(f.e) {
			declared = make(map[string]bool, len(f.declared)+2)
			for p := range f.declared {
				declared[p] = true
			}
			for i := range f.e.Attr {
				if p, ok := f.e.Attr[i].declared(); ok {
					declared[p] = true
				}
			}
		}
		use := func(prefix string) {
			if prefix != "xml" && !declared[prefix] {
				need[prefix] = true
			}
		}
		use(f.e.Name.Prefix)
		for i := range f.e.Attr {
			if a := &f.e.Attr[i]; !a.IsNamespaceDecl() && a.Name.Prefix != "" {
				use(a.Name.Prefix)
			}
		}
		for _, c := range f.e.Children {
			if c.Kind == Element {
				stack = append(stack, frame{c, declared})
			}
		}
	}
	var out []Attr
	// A stable order: the default namespace first, then by prefix.
	prefixes := make([]string, 0, len(need))
	for p := range need {
		prefixes = append(prefixes, p)
	}
	slices.Sort(prefixes)
	for _, p := range prefixes {
		ns, ok := n.Parent.Lookup(p)
		if !ok || (p == "" && ns == "") {
			continue
		}
		if p == "" {
			out = append(out, Attr{Name: Name{Local: "xmlns"}, Space: XMLNSNamespace, Value: ns})
		} else {
			out = append(out, Attr{Name: Name{Prefix: "xmlns", Local: p}, Space: XMLNSNamespace, Value: ns})
		}
	}
	return out
}

func hasDecl(e *Node) bool {
	for i := range e.Attr {
		if e.Attr[i].IsNamespaceDecl() {
			return true
		}
	}
	return false
}

// appendTo writes n with extra attributes on its own start tag. It keeps
// a stack of open elements rather than recursing.
func (n *Node) appendTo(b []byte, extra []Attr) []byte {
	if n.Kind != Element {
		return appendLeaf(b, n)
	}
	type frame struct {
		e    *Node
		next int // index of the next child to write
	}
	b = appendStart(b, n, extra)
	if len(n.Children) == 0 {
		return append(b, "/>"...)
	}
	b = append(b, '>')
	stack := []frame{{n, 0}}
	for len(stack) > 0 {
		f := &stack[len(stack)-1]
		if f.next == len(f.e.Children) {
			b = append(b, "</"...)
			b = append(b, f.e.Name.String()...)
			b = append(b, '>')
			stack = stack[:len(stack)-1]
			continue
		}
		c := f.e.Children[f.next]
		f.next++
		if c.Kind != Element {
			b = appendLeaf(b, c)
			continue
		}
		b = appendStart(b, c, nil)
		if len(c.Children) == 0 {
			b = append(b, "/>"...)
			continue
		}
		b = append(b, '>')
		stack = append(stack, frame{c, 0})
	}
	return b
}

func appendStart(b []byte, e *Node, extra []Attr) []byte {
	b = append(b, '<')
	b = append(b, e.Name.String()...)
	for _, a := range extra {
		b = xmltext.AppendAttr(b, a.Name.String(), a.Value)
	}
	for _, a := range e.Attr {
		b = xmltext.AppendAttr(b, a.Name.String(), a.Value)
	}
	return b
}

func appendLeaf(b []byte, n *Node) []byte {
	switch n.Kind {
	case Text:
		return xmltext.AppendEscaped(b, n.Data, false)
	case Comment:
		b = append(b, "<!--"...)
		b = append(b, n.Data...)
		return append(b, "-->"...)
	case ProcInst:
		b = append(b, "<?"...)
		b = append(b, n.Name.Local...)
		if n.Data != "" {
			b = append(b, ' ')
			b = append(b, n.Data...)
		}
		return append(b, "?>"...)
	}
	return b
}

// InScope returns the namespace bindings in scope at n, the default
// namespace under "" when it is not empty; xml is left out.
func (n *Node) InScope() map[string]string {
	out := map[string]string{}
	seen := map[string]bool{}
	for e := n; e != nil; e = e.Parent {
		for i := range e.Attr {
			p, ok := e.Attr[i].declared()
			if !ok || seen[p] {
				continue
			}
			seen[p] = true
			if e.Attr[i].Value != "" {
				out[p] = e.Attr[i].Value
			}
		}
	}
	return out
}

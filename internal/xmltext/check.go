package xmltext

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Rules are the limits of one document type and the wording of its
// errors. The zero MaxSize and MaxDepth refuse everything, so callers
// always set them.
type Rules struct {
	// Prefix starts every error message, followed by ": ": the name of the
	// package the caller of Parse knows ("reginfo").
	Prefix string
	// MaxSize bounds the body in bytes, MaxDepth the nesting of elements.
	MaxSize  int
	MaxDepth int
	// TooLarge is wrapped by the error for a body above MaxSize, so that
	// the caller can answer 413 rather than 400; its text is used as is.
	TooLarge error
}

func (r Rules) errorf(format string, args ...any) error {
	return errors.New(r.Prefix + ": " + fmt.Sprintf(format, args...))
}

// Decode reads b into v with encoding/xml once Prepare and Check have
// accepted it; the root must be <local> in namespace space.
func (r Rules) Decode(b []byte, space, local string, v any) error {
	b, err := r.Prepare(b)
	if err != nil {
		return err
	}
	if err := r.Check(b, space, local); err != nil {
		return err
	}
	if err := NewDecoder(b).Decode(v); err != nil {
		return r.errorf("%v", err)
	}
	return nil
}

// Prepare checks the size of b and returns it as UTF-8, the only encoding
// the parsers handle: a UTF-8 byte order mark is dropped, and a body
// declared ISO-8859-1 or US-ASCII (some desk phones send latin-1) is
// transcoded. Other declared encodings are refused.
func (r Rules) Prepare(b []byte) ([]byte, error) {
	if len(b) > r.MaxSize {
		return nil, fmt.Errorf("%w (%d bytes)", r.TooLarge, len(b))
	}
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
	enc := declaredEncoding(b)
	switch strings.ToLower(enc) {
	case "", "utf-8", "utf8":
		return b, nil
	case "iso-8859-1", "iso8859-1", "iso_8859-1", "latin1", "latin-1", "l1", "us-ascii", "ascii":
	default:
		return nil, r.errorf("unsupported encoding %q, want UTF-8", Clip(enc))
	}
	n := 0
	for _, c := range b {
		if c >= utf8.RuneSelf {
			n++
		}
	}
	if n == 0 {
		return b, nil
	}
	out := make([]byte, 0, len(b)+n)
	for _, c := range b {
		out = utf8.AppendRune(out, rune(c))
	}
	return out, nil
}

// declaredEncoding returns the encoding named in the XML declaration at
// the start of b, if any.
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
	q := rest[0]
	rest = rest[1:]
	if j := strings.IndexByte(rest, q); j >= 0 {
		return rest[:j]
	}
	return ""
}

// NewDecoder returns a decoder for a body Prepare has returned: its
// declaration may still name the original encoding, which the decoder
// must not act on a second time.
func NewDecoder(b []byte) *xml.Decoder {
	d := xml.NewDecoder(bytes.NewReader(b))
	d.CharsetReader = passThrough
	return d
}

func passThrough(_ string, r io.Reader) (io.Reader, error) { return r, nil }

// Check verifies what xml.Unmarshal leaves unchecked before it is let
// loose on b: the nesting depth, the absence of a DTD (the decoder expands
// no entities, but a DOCTYPE has no place in an event body), that the
// whole input is one well-formed element and nothing after it, and that
// this root is <local> in namespace space.
func (r Rules) Check(b []byte, space, local string) error {
	d := NewDecoder(b)
	depth, roots := 0, 0
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return r.errorf("malformed XML: %v", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if depth == 0 {
				if roots++; roots > 1 {
					return r.errorf("more than one root element")
				}
				if t.Name.Space != space || t.Name.Local != local {
					return r.errorf("root element is %s, want <%s> in %s", describe(t.Name), local, space)
				}
			}
			if depth++; depth > r.MaxDepth {
				return r.errorf("elements nested deeper than %d", r.MaxDepth)
			}
		case xml.EndElement:
			depth--
		case xml.CharData:
			if depth == 0 && len(bytes.TrimSpace(t)) != 0 {
				return r.errorf("text outside the root element")
			}
		case xml.Directive:
			return r.errorf("DTDs and other <!...> declarations are not allowed")
		}
	}
	if roots == 0 {
		return r.errorf("no root element")
	}
	return nil
}

func describe(n xml.Name) string {
	if n.Space == "" {
		return "<" + n.Local + ">"
	}
	return "<" + n.Local + "> in " + n.Space
}

// CheckChars rejects characters XML 1.0 does not allow anywhere (comments
// and processing instructions included, which encoding/xml does not check
// but which raw copies of elements carry on to other parsers).
func (r Rules) CheckChars(b []byte) error {
	for i := 0; i < len(b); {
		c := b[i]
		if c < utf8.RuneSelf {
			if c < 0x20 && c != '\t' && c != '\n' && c != '\r' {
				return r.errorf("control character %#02x at byte %d", c, i)
			}
			i++
			continue
		}
		ru, w := utf8.DecodeRune(b[i:])
		if (ru == utf8.RuneError && w == 1) || !IsXMLChar(ru) {
			return r.errorf("invalid UTF-8 or character at byte %d", i)
		}
		i += w
	}
	return nil
}

// Versioned reads the version and state attributes of a versioned root
// element named root (see AppendVersionState): version is nil when the
// attribute is absent; state must be full or partial.
func (r Rules) Versioned(root string, version *string, state string) (v uint32, full bool, err error) {
	if version == nil {
		return 0, false, r.errorf("<%s> has no version attribute", root)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(*version), 10, 32)
	if err != nil {
		return 0, false, r.errorf("version %q is not a 32-bit unsigned number", Clip(*version))
	}
	switch state {
	case "full":
		full = true
	case "partial":
	default:
		return 0, false, r.errorf("state %q, want full or partial", Clip(state))
	}
	return uint32(n), full, nil
}

package dialoginfo

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
)

// ErrTooLarge is returned (wrapped) by Parse for a body above MaxSize; the
// caller answers it with 413 rather than 400.
var ErrTooLarge = errors.New("dialoginfo: document larger than 64 KiB")

// Limits enforced by Parse: they bound what one body can cost.
const (
	MaxSize  = 64 << 10
	MaxDepth = 32
)

// decode reads b, converted to UTF-8, into v after checking it with
// checkXML.
func decode(b []byte, space, local string, v any) error {
	if len(b) > MaxSize {
		return fmt.Errorf("%w (%d bytes)", ErrTooLarge, len(b))
	}
	b, err := toUTF8(b)
	if err != nil {
		return err
	}
	if err := checkXML(b, space, local); err != nil {
		return err
	}
	if err := newDecoder(b).Decode(v); err != nil {
		return fmt.Errorf("dialoginfo: %v", err)
	}
	return nil
}

func newDecoder(b []byte) *xml.Decoder {
	d := xml.NewDecoder(bytes.NewReader(b))
	d.CharsetReader = passThrough
	return d
}

// checkXML verifies what xml.Unmarshal leaves unchecked before it is let
// loose on b: the nesting depth, the absence of a DTD (the
// decoder expands no entities, but a DOCTYPE has no place here), that the
// whole input is one well-formed element and nothing after it, and that
// this root is <local> in namespace space.
func checkXML(b []byte, space, local string) error {
	d := newDecoder(b)
	depth, roots := 0, 0
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("dialoginfo: malformed XML: %v", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if depth == 0 {
				if roots++; roots > 1 {
					return errors.New("dialoginfo: more than one root element")
				}
				if t.Name.Space != space || t.Name.Local != local {
					return fmt.Errorf("dialoginfo: root element is %s, want <%s> in %s", describe(t.Name), local, space)
				}
			}
			if depth++; depth > MaxDepth {
				return fmt.Errorf("dialoginfo: elements nested deeper than %d", MaxDepth)
			}
		case xml.EndElement:
			depth--
		case xml.CharData:
			if depth == 0 && len(bytes.TrimSpace(t)) != 0 {
				return errors.New("dialoginfo: text outside the root element")
			}
		case xml.Directive:
			return errors.New("dialoginfo: DTDs and other <!...> declarations are not allowed")
		}
	}
	if roots == 0 {
		return errors.New("dialoginfo: no root element")
	}
	return nil
}

func describe(n xml.Name) string {
	if n.Space == "" {
		return "<" + n.Local + ">"
	}
	return "<" + n.Local + "> in " + n.Space
}

// oneOf reports whether s is one of the allowed values.
func oneOf(s string, allowed ...string) bool {
	for _, a := range allowed {
		if s == a {
			return true
		}
	}
	return false
}

// clip shortens a value quoted in an error message.
func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

package stir

import (
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
)

// OIDTNAuthList identifies the TNAuthList certificate extension
// (RFC 8226 §9, id-pe-TNAuthList).
var OIDTNAuthList = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 26}

// TNRange is a block of Count consecutive telephone numbers from Start
// (RFC 8226 §9, TelephoneNumberRange).
type TNRange struct {
	Start string
	Count int
}

// TNAuthList is the content of a TNAuthList extension: the service provider
// codes and telephone numbers the certificate's holder may sign for. SHAKEN
// certificates (ATIS-1000080) carry exactly one SPC.
type TNAuthList struct {
	SPCs   []string
	Ranges []TNRange
	TNs    []string
}

// The context-specific tags of TNEntry (RFC 8226 §9).
const (
	tagSPC   = 0
	tagRange = 1
	tagOne   = 2
)

// maxTNEntries bounds the work a hostile certificate can ask for.
const maxTNEntries = 1024

// ParseTNAuthList decodes the DER value of a TNAuthList extension:
//
//	TNAuthorizationList ::= SEQUENCE SIZE (1..MAX) OF TNEntry
//	TNEntry ::= CHOICE {
//	    spc   [0] ServiceProviderCode,      -- IA5String
//	    range [1] TelephoneNumberRange,     -- SEQUENCE { start TelephoneNumber, count INTEGER }
//	    one   [2] TelephoneNumber }         -- IA5String (SIZE (1..15)) FROM "0123456789#*"
//
// The module uses explicit tags; implicitly tagged entries, which some
// issuers produce, are accepted as well.
func ParseTNAuthList(der []byte) (TNAuthList, error) {
	var entries []asn1.RawValue
	rest, err := asn1.Unmarshal(der, &entries)
	if err != nil {
		return TNAuthList{}, fmt.Errorf("stir: TNAuthList: %w", err)
	}
	if len(rest) != 0 {
		return TNAuthList{}, errors.New("stir: TNAuthList: trailing data")
	}
	if len(entries) == 0 {
		return TNAuthList{}, errors.New("stir: TNAuthList: empty")
	}
	if len(entries) > maxTNEntries {
		return TNAuthList{}, errors.New("stir: TNAuthList: too many entries")
	}
	var l TNAuthList
	for _, e := range entries {
		if e.Class != asn1.ClassContextSpecific {
			return TNAuthList{}, fmt.Errorf("stir: TNAuthList: entry of class %d, want context-specific", e.Class)
		}
		switch e.Tag {
		case tagSPC:
			s, err := taggedIA5(e)
			if err != nil {
				return TNAuthList{}, fmt.Errorf("stir: TNAuthList spc: %w", err)
			}
			if s == "" {
				return TNAuthList{}, errors.New("stir: TNAuthList spc: empty")
			}
			l.SPCs = append(l.SPCs, s)
		case tagOne:
			s, err := taggedIA5(e)
			if err != nil {
				return TNAuthList{}, fmt.Errorf("stir: TNAuthList one: %w", err)
			}
			if !validTN(s) {
				return TNAuthList{}, fmt.Errorf("stir: TNAuthList one: %q is not a telephone number", s)
			}
			l.TNs = append(l.TNs, s)
		case tagRange:
			r, err := taggedRange(e)
			if err != nil {
				return TNAuthList{}, fmt.Errorf("stir: TNAuthList range: %w", err)
			}
			l.Ranges = append(l.Ranges, r)
		default:
			return TNAuthList{}, fmt.Errorf("stir: TNAuthList: unknown entry tag %d", e.Tag)
		}
	}
	return l, nil
}

// taggedIA5 reads an IA5String under an explicit or implicit tag.
func taggedIA5(e asn1.RawValue) (string, error) {
	body := e.Bytes
	if e.IsCompound {
		// Explicit tagging: a whole IA5String (and only that) inside.
		var inner asn1.RawValue
		rest, err := asn1.Unmarshal(e.Bytes, &inner)
		if err != nil {
			return "", err
		}
		if len(rest) != 0 {
			return "", errors.New("trailing data")
		}
		if inner.Class != asn1.ClassUniversal || inner.Tag != asn1.TagIA5String || inner.IsCompound {
			return "", fmt.Errorf("ASN.1 tag %d, want IA5String", inner.Tag)
		}
		body = inner.Bytes
	}
	for _, c := range body {
		if c >= 0x80 {
			return "", errors.New("not an IA5String")
		}
	}
	return string(body), nil
}

// telephoneNumberRange is RFC 8226's TelephoneNumberRange; the extension
// marker ("...") admits later fields, which are ignored.
type telephoneNumberRange struct {
	Start string `asn1:"ia5"`
	Count *big.Int
	Rest  asn1.RawValue `asn1:"optional"`
}

func taggedRange(e asn1.RawValue) (TNRange, error) {
	if !e.IsCompound {
		return TNRange{}, errors.New("not constructed")
	}
	var r telephoneNumberRange
	body := e.Bytes
	// Explicit tagging wraps a SEQUENCE; implicit tagging puts the
	// SEQUENCE's fields directly under [1].
	if len(body) > 0 && body[0] == 0x30 {
		rest, err := asn1.Unmarshal(body, &r)
		if err != nil {
			return TNRange{}, err
		}
		if len(rest) != 0 {
			return TNRange{}, errors.New("trailing data")
		}
	} else {
		seq, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: body})
		if err != nil {
			return TNRange{}, err
		}
		if _, err := asn1.Unmarshal(seq, &r); err != nil {
			return TNRange{}, err
		}
	}
	if !validTN(r.Start) {
		return TNRange{}, fmt.Errorf("start %q is not a telephone number", r.Start)
	}
	if r.Count == nil || !r.Count.IsInt64() || r.Count.Int64() < 2 || r.Count.Int64() > 1e15 {
		return TNRange{}, errors.New("count out of range")
	}
	return TNRange{Start: r.Start, Count: int(r.Count.Int64())}, nil
}

// validTN checks RFC 8226's TelephoneNumber: 1 to 15 of "0123456789#*".
func validTN(s string) bool {
	if len(s) == 0 || len(s) > maxTNDigits {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && c != '#' && c != '*' {
			return false
		}
	}
	return true
}

// Marshal encodes the list as the DER value of a TNAuthList extension,
// explicitly tagged as RFC 8226's module says; with it an operator's tools
// (and the tests) can issue SHAKEN certificates.
func (l TNAuthList) Marshal() ([]byte, error) {
	var entries []asn1.RawValue
	tagged := func(tag int, v any, params string) error {
		inner, err := asn1.MarshalWithParams(v, params)
		if err != nil {
			return err
		}
		entries = append(entries, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: tag, IsCompound: true, Bytes: inner})
		return nil
	}
	for _, s := range l.SPCs {
		if err := tagged(tagSPC, s, "ia5"); err != nil {
			return nil, fmt.Errorf("stir: TNAuthList spc %q: %w", s, err)
		}
	}
	for _, r := range l.Ranges {
		if !validTN(r.Start) || r.Count < 2 {
			return nil, fmt.Errorf("stir: TNAuthList range %+v: invalid", r)
		}
		v := struct {
			Start string `asn1:"ia5"`
			Count int
		}{r.Start, r.Count}
		if err := tagged(tagRange, v, ""); err != nil {
			return nil, fmt.Errorf("stir: TNAuthList range %+v: %w", r, err)
		}
	}
	for _, tn := range l.TNs {
		if !validTN(tn) {
			return nil, fmt.Errorf("stir: TNAuthList one %q: not a telephone number", tn)
		}
		if err := tagged(tagOne, tn, "ia5"); err != nil {
			return nil, fmt.Errorf("stir: TNAuthList one %q: %w", tn, err)
		}
	}
	if len(entries) == 0 {
		return nil, errors.New("stir: TNAuthList: empty")
	}
	return asn1.Marshal(entries)
}

// Covers reports whether tn (canonical digits) is one of the list's numbers
// or inside one of its ranges. A list with an SPC authorizes by service
// provider, not by number, and is checked by the caller.
func (l TNAuthList) Covers(tn string) bool {
	for _, t := range l.TNs {
		if t == tn {
			return true
		}
	}
	for _, r := range l.Ranges {
		// A range is of numbers as long as its start: "2025550100" with
		// count 100 does not cover "202555010".
		if len(r.Start) != len(tn) {
			continue
		}
		start, ok1 := new(big.Int).SetString(r.Start, 10)
		n, ok2 := new(big.Int).SetString(tn, 10)
		if !ok1 || !ok2 {
			continue
		}
		d := new(big.Int).Sub(n, start)
		if d.Sign() >= 0 && d.Cmp(big.NewInt(int64(r.Count))) < 0 {
			return true
		}
	}
	return false
}

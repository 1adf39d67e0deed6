package stir

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
)

// Attestation is the SHAKEN attestation level (RFC 8588 §4, ATIS-1000074
// §5.2.3).
type Attestation string

// The attestation levels.
const (
	// AttestFull: the signer authenticated the caller and knows the caller
	// may use the calling number.
	AttestFull Attestation = "A"
	// AttestPartial: the signer authenticated the caller but cannot vouch
	// for the number.
	AttestPartial Attestation = "B"
	// AttestGateway: the signer only knows where the call entered its network.
	AttestGateway Attestation = "C"
)

// Valid reports whether a is one of "A", "B", "C".
func (a Attestation) Valid() bool {
	return a == AttestFull || a == AttestPartial || a == AttestGateway
}

// The protected header values of a SHAKEN PASSporT (RFC 8225 §4, RFC 8588 §3).
const (
	AlgES256    = "ES256"
	TypPassport = "passport"
	PptShaken   = "shaken"
)

// PASSporTHeader is the JOSE header of a PASSporT.
type PASSporTHeader struct {
	Alg, Typ, Ppt, X5U string
}

// PASSporT is a decoded SHAKEN PASSporT: its header and the claims SHAKEN
// uses. Orig and Dest are telephone numbers in canonical form (digits).
type PASSporT struct {
	Header PASSporTHeader
	Attest Attestation
	Orig   string
	Dest   []string
	IAT    int64
	OrigID string
}

// The JSON forms. Fields are declared in lexicographic order, which is
// the key order RFC 8225 §9 (and RFC 7515 implementations) expect of a
// serialised PASSporT, and which encoding/json keeps.
type jsonHeader struct {
	Alg string `json:"alg"`
	Ppt string `json:"ppt,omitempty"`
	Typ string `json:"typ"`
	X5U string `json:"x5u"`
}

type jsonPayload struct {
	Attest string   `json:"attest"`
	Dest   jsonDest `json:"dest"`
	IAT    int64    `json:"iat"`
	Orig   jsonOrig `json:"orig"`
	OrigID string   `json:"origid"`
}

type jsonDest struct {
	TN []string `json:"tn,omitempty"`
}

type jsonOrig struct {
	TN string `json:"tn,omitempty"`
}

// b64 is the base64url alphabet without padding of JWS (RFC 7515 §2).
// Strict decoding rejects stray bits in the last character, so a changed
// character always changes the bytes.
var b64 = base64.RawURLEncoding.Strict()

// encodeToken returns the JWS compact serialisation of p signed with key.
func encodeToken(p *PASSporT, key *ecdsa.PrivateKey) (string, error) {
	hdr, err := marshalJSON(jsonHeader{Alg: p.Header.Alg, Ppt: p.Header.Ppt, Typ: p.Header.Typ, X5U: p.Header.X5U})
	if err != nil {
		return "", err
	}
	pl, err := marshalJSON(jsonPayload{
		Attest: string(p.Attest),
		Dest:   jsonDest{TN: p.Dest},
		IAT:    p.IAT,
		Orig:   jsonOrig{TN: p.Orig},
		OrigID: p.OrigID,
	})
	if err != nil {
		return "", err
	}
	n1, n2 := b64.EncodedLen(len(hdr)), b64.EncodedLen(len(pl))
	buf := make([]byte, n1+1+n2+1+b64.EncodedLen(64))
	b64.Encode(buf, hdr)
	buf[n1] = '.'
	b64.Encode(buf[n1+1:], pl)
	signing := buf[:n1+1+n2]
	sig, err := signES256(key, signing)
	if err != nil {
		return "", err
	}
	buf[n1+1+n2] = '.'
	b64.Encode(buf[n1+1+n2+1:], sig[:])
	return string(buf), nil
}

// marshalJSON encodes without HTML escaping: "<" in a URL stays "<".
func marshalJSON(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// signES256 signs the JWS signing input with ECDSA P-256 and SHA-256 and
// returns R||S as 32-byte big-endian integers (RFC 7518 §3.4).
func signES256(key *ecdsa.PrivateKey, signing []byte) ([64]byte, error) {
	var sig [64]byte
	h := sha256.Sum256(signing)
	r, s, err := ecdsa.Sign(rand.Reader, key, h[:])
	if err != nil {
		return sig, err
	}
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return sig, nil
}

// verifyES256 checks an R||S signature over the JWS signing input.
func verifyES256(pub *ecdsa.PublicKey, signing string, sig []byte) bool {
	if len(sig) != 64 {
		return false
	}
	h := sha256.Sum256([]byte(signing))
	r := new(big.Int).SetBytes(sig[:32])
	s := new(big.Int).SetBytes(sig[32:])
	return ecdsa.Verify(pub, h[:], r, s)
}

var errCompact = errors.New("stir: compact form PASSporT (header..signature) not supported: SHAKEN claims cannot be rebuilt from the SIP message")

// splitToken splits a JWS compact serialisation into its three parts.
func splitToken(token string) (hdr, payload, sig string, err error) {
	i := strings.IndexByte(token, '.')
	if i < 0 {
		return "", "", "", errors.New("stir: PASSporT: not header.payload.signature")
	}
	j := strings.IndexByte(token[i+1:], '.')
	if j < 0 {
		return "", "", "", errors.New("stir: PASSporT: not header.payload.signature")
	}
	j += i + 1
	if strings.IndexByte(token[j+1:], '.') >= 0 {
		return "", "", "", errors.New("stir: PASSporT: more than three parts")
	}
	hdr, payload, sig = token[:i], token[i+1:j], token[j+1:]
	if payload == "" {
		return "", "", "", errCompact
	}
	if hdr == "" || sig == "" {
		return "", "", "", errors.New("stir: PASSporT: empty part")
	}
	return hdr, payload, sig, nil
}

// decodeClaims decodes the header and payload of a full-form PASSporT and
// checks the SHAKEN rules that need no certificate: the header's alg, typ
// and ppt (RFC 8225 §4, RFC 8588 §3), an attest level, an orig and at least
// one dest telephone number, an iat (RFC 8588 §6). Telephone numbers are
// returned in canonical form.
func decodeClaims(hdr64, payload64 string) (PASSporT, error) {
	var p PASSporT
	raw, err := b64.DecodeString(hdr64)
	if err != nil {
		return p, fmt.Errorf("stir: PASSporT header: %w", err)
	}
	var h jsonHeader
	if err := json.Unmarshal(raw, &h); err != nil {
		return p, fmt.Errorf("stir: PASSporT header: %w", err)
	}
	p.Header = PASSporTHeader{Alg: h.Alg, Typ: h.Typ, Ppt: h.Ppt, X5U: h.X5U}
	raw, err = b64.DecodeString(payload64)
	if err != nil {
		return p, fmt.Errorf("stir: PASSporT payload: %w", err)
	}
	var pl jsonPayload
	if err := json.Unmarshal(raw, &pl); err != nil {
		return p, fmt.Errorf("stir: PASSporT payload: %w", err)
	}
	p.Attest = Attestation(pl.Attest)
	p.IAT = pl.IAT
	p.OrigID = pl.OrigID
	p.Orig = pl.Orig.TN
	p.Dest = pl.Dest.TN

	switch {
	case h.Alg != AlgES256:
		return p, fmt.Errorf("stir: PASSporT alg %q, want ES256", h.Alg)
	case h.Typ != TypPassport:
		return p, fmt.Errorf("stir: PASSporT typ %q, want passport", h.Typ)
	case h.Ppt != PptShaken:
		return p, fmt.Errorf("stir: PASSporT ppt %q, want shaken", h.Ppt)
	case h.X5U == "":
		return p, errors.New("stir: PASSporT: no x5u")
	case !p.Attest.Valid():
		return p, fmt.Errorf("stir: PASSporT attest %q, want A, B or C", pl.Attest)
	case pl.IAT <= 0:
		return p, errors.New("stir: PASSporT: no iat")
	case pl.OrigID == "":
		return p, errors.New("stir: PASSporT: no origid")
	case len(p.Dest) == 0:
		return p, errors.New("stir: PASSporT: no dest tn")
	}
	orig, ok := NormalizeTN(pl.Orig.TN)
	if !ok {
		return p, fmt.Errorf("stir: PASSporT orig tn %q is not a telephone number", pl.Orig.TN)
	}
	p.Orig = orig
	for i, d := range p.Dest {
		tn, ok := NormalizeTN(d)
		if !ok {
			return p, fmt.Errorf("stir: PASSporT dest tn %q is not a telephone number", d)
		}
		p.Dest[i] = tn
	}
	return p, nil
}

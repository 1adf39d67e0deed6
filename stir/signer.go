package stir

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Signer is the authentication service of RFC 8224 §6.1 for SHAKEN: it
// signs PASSporTs with the operator's key and points verifiers at the
// operator's certificate. It is safe for concurrent use.
type Signer struct {
	key    *ecdsa.PrivateKey
	x5u    string
	suffix string // ";info=<x5u>;alg=ES256;ppt=shaken"
}

// NewSigner returns a Signer for an EC P-256 private key in PEM (PKCS#8
// "PRIVATE KEY" or SEC 1 "EC PRIVATE KEY"; an "EC PARAMETERS" block before
// it, as openssl writes, is skipped) whose certificate chain is published
// at x5u, an absolute http(s) URL.
func NewSigner(keyPEM []byte, x5u string) (*Signer, error) {
	key, err := parseECKey(keyPEM)
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(x5u)
	if err != nil {
		return nil, fmt.Errorf("stir: x5u: %w", err)
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("stir: x5u %q: not an absolute http(s) URL", x5u)
	}
	// The URL goes between angle brackets in the header and into JSON.
	if strings.ContainsAny(x5u, "<>\" \t\r\n") {
		return nil, fmt.Errorf("stir: x5u %q: characters not allowed in the info parameter", x5u)
	}
	return &Signer{key: key, x5u: x5u, suffix: ";info=<" + x5u + ">;alg=ES256;ppt=shaken"}, nil
}

func parseECKey(data []byte) (*ecdsa.PrivateKey, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New("stir: no private key in PEM")
		}
		var key any
		var err error
		switch block.Type {
		case "EC PARAMETERS":
			continue
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		default:
			return nil, fmt.Errorf("stir: PEM block %q, want PRIVATE KEY or EC PRIVATE KEY", block.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("stir: private key: %w", err)
		}
		ec, ok := key.(*ecdsa.PrivateKey)
		if !ok || ec.Curve != elliptic.P256() {
			return nil, errors.New("stir: private key is not EC P-256 (ES256)")
		}
		return ec, nil
	}
}

// X5U returns the certificate URL the Signer puts in its PASSporTs.
func (s *Signer) X5U() string { return s.x5u }

// Sign returns the value of an Identity header (RFC 8224 §4, full form:
// header.payload.signature;info=<x5u>;alg=ES256;ppt=shaken) for a call from
// orig to dest, which are normalized with NormalizeTN and must be
// telephone numbers. origID is the SHAKEN origination identifier (RFC 8588
// §4); when empty a random UUID is used. iat is the time of signing,
// normally the time the INVITE is sent (a Date header, if the caller adds
// one, should say the same second).
func (s *Signer) Sign(orig, dest string, attest Attestation, origID string, iat time.Time) (string, error) {
	o, ok := NormalizeTN(orig)
	if !ok {
		return "", fmt.Errorf("stir: sign: calling number %q is not a telephone number", orig)
	}
	d, ok := NormalizeTN(dest)
	if !ok {
		return "", fmt.Errorf("stir: sign: called number %q is not a telephone number", dest)
	}
	if !attest.Valid() {
		return "", fmt.Errorf("stir: sign: attestation %q, want A, B or C", attest)
	}
	if origID == "" {
		origID = NewOrigID()
	}
	p := PASSporT{
		Header: PASSporTHeader{Alg: AlgES256, Typ: TypPassport, Ppt: PptShaken, X5U: s.x5u},
		Attest: attest,
		Orig:   o,
		Dest:   []string{d},
		IAT:    iat.Unix(),
		OrigID: origID,
	}
	tok, err := encodeToken(&p, s.key)
	if err != nil {
		return "", fmt.Errorf("stir: sign: %w", err)
	}
	return tok + s.suffix, nil
}

// NewOrigID returns a random (version 4) UUID, the form ATIS-1000074
// gives origid: an authentication service makes one for its origination
// point and signs with it.
func NewOrigID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	const hex = "0123456789abcdef"
	var out [36]byte
	j := 0
	for i, c := range b {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			out[j] = '-'
			j++
		}
		out[j], out[j+1] = hex[c>>4], hex[c&0x0f]
		j += 2
	}
	return string(out[:])
}

package webrtc

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	_ "crypto/sha512" // sha-384 and sha-512 fingerprints
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"
)

// Identity is the relay's DTLS certificate: ECDSA P-256, self-signed,
// made once per relay and shared by its endpoints. WebRTC peers
// authenticate it by the fingerprint in SDP (RFC 8122), never by a CA,
// so its names and dates carry nothing.
type Identity struct {
	cert        tls.Certificate
	fingerprint string
}

// NewIdentity makes a fresh key and certificate.
func NewIdentity() (*Identity, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("webrtc: identity key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("webrtc: identity serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "hlas"},
		// Browsers ignore the dates of a DTLS-SRTP certificate; a long
		// validity keeps stricter peers content for the relay's life.
		NotBefore: now.Add(-24 * time.Hour),
		NotAfter:  now.AddDate(10, 0, 0),
		KeyUsage:  x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("webrtc: identity certificate: %w", err)
	}
	sum := sha256.Sum256(der)
	return &Identity{
		cert:        tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
		fingerprint: "sha-256 " + colonHex(sum[:]),
	}, nil
}

// Fingerprint is the certificate's SHA-256 fingerprint as written after
// a=fingerprint: (RFC 8122 §5), e.g. "sha-256 AB:CD:...".
func (id *Identity) Fingerprint() string { return id.fingerprint }

// colonHex writes b as upper-case hex pairs separated by colons.
func colonHex(b []byte) string {
	var sb strings.Builder
	sb.Grow(3 * len(b))
	for i, c := range b {
		if i > 0 {
			sb.WriteByte(':')
		}
		sb.WriteString(strings.ToUpper(hex.EncodeToString([]byte{c})))
	}
	return sb.String()
}

// fingerprint is a parsed a=fingerprint value.
type fingerprint struct {
	hash crypto.Hash
	sum  []byte
}

// Hash functions accepted for the peer's fingerprint: RFC 8827 §6.5
// requires SHA-256 support; the older and weaker ones (MD5, SHA-1) are
// refused.
var fingerprintHashes = map[string]crypto.Hash{
	"sha-256": crypto.SHA256,
	"sha-384": crypto.SHA384,
	"sha-512": crypto.SHA512,
}

// errFingerprint is what every malformed fingerprint is.
var errFingerprint = errors.New("webrtc: fingerprint")

// parseFingerprint reads an a=fingerprint value (RFC 8122 §5):
// hash-func SP fingerprint, the hash function case-insensitive, the
// fingerprint upper- or lower-case hex pairs separated by colons.
func parseFingerprint(s string) (fingerprint, error) {
	name, value, ok := strings.Cut(strings.TrimSpace(s), " ")
	if !ok {
		return fingerprint{}, fmt.Errorf("%w %q: no hash function", errFingerprint, s)
	}
	h, ok := fingerprintHashes[strings.ToLower(name)]
	if !ok {
		return fingerprint{}, fmt.Errorf("%w %q: hash function %q not supported", errFingerprint, s, name)
	}
	value = strings.TrimSpace(value)
	size := h.Size()
	if len(value) != 3*size-1 {
		return fingerprint{}, fmt.Errorf("%w %q: %d bytes expected for %s", errFingerprint, s, size, name)
	}
	sum := make([]byte, size)
	for i := range size {
		pair := value[3*i : 3*i+2]
		if i < size-1 && value[3*i+2] != ':' {
			return fingerprint{}, fmt.Errorf("%w %q: no colon after byte %d", errFingerprint, s, i+1)
		}
		if _, err := hex.Decode(sum[i:i+1], []byte(pair)); err != nil {
			return fingerprint{}, fmt.Errorf("%w %q: byte %d: %v", errFingerprint, s, i+1, err)
		}
	}
	return fingerprint{hash: h, sum: sum}, nil
}

// errWrongCertificate is a peer certificate that does not match the
// signalled fingerprint.
var errWrongCertificate = errors.New("webrtc: peer certificate does not match the signalled fingerprint")

// verify checks the peer's certificate (the first of rawCerts, RFC 8122
// §5: the fingerprint is of the certificate used in the DTLS handshake)
// against f.
func (f fingerprint) verify(rawCerts [][]byte) error {
	if len(rawCerts) == 0 {
		return errors.New("webrtc: peer sent no certificate")
	}
	h := f.hash.New()
	h.Write(rawCerts[0])
	if subtle.ConstantTimeCompare(h.Sum(nil), f.sum) != 1 {
		return errWrongCertificate
	}
	return nil
}

// equal reports whether f and g name the same certificate.
func (f fingerprint) equal(g fingerprint) bool {
	return f.hash == g.hash && subtle.ConstantTimeCompare(f.sum, g.sum) == 1
}

package webrtc

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"regexp"
	"strings"
	"testing"
)

func TestIdentity(t *testing.T) {
	id, err := NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(id.cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if k, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		t.Errorf("key %T, want ECDSA P-256", cert.PublicKey)
	}
	if err := cert.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature); err != nil {
		t.Errorf("not self-signed: %v", err)
	}
	// RFC 8122 §5: "sha-256" SP upper-case hex pairs joined by colons.
	if !regexp.MustCompile(`^sha-256 [0-9A-F]{2}(:[0-9A-F]{2}){31}$`).MatchString(id.Fingerprint()) {
		t.Errorf("fingerprint %q", id.Fingerprint())
	}
	fp, err := parseFingerprint(id.Fingerprint())
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(id.cert.Certificate[0])
	if fp.hash != crypto.SHA256 || string(fp.sum) != string(sum[:]) {
		t.Error("fingerprint is not the certificate's SHA-256")
	}
	if err := fp.verify(id.cert.Certificate); err != nil {
		t.Errorf("own certificate: %v", err)
	}
	other, err := NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	if other.Fingerprint() == id.Fingerprint() {
		t.Error("two identities, one fingerprint")
	}
	if err := fp.verify(other.cert.Certificate); !errors.Is(err, errWrongCertificate) {
		t.Errorf("another certificate: %v", err)
	}
	if err := fp.verify(nil); err == nil {
		t.Error("no certificate accepted")
	}
}

func TestParseFingerprint(t *testing.T) {
	hex32 := strings.Repeat("AB:", 31) + "CD"
	tests := []struct {
		in   string
		hash crypto.Hash
		ok   bool
	}{
		{"sha-256 " + hex32, crypto.SHA256, true},
		{"SHA-256 " + strings.ToLower(hex32), crypto.SHA256, true}, // RFC 8122: case-insensitive
		{" sha-256  " + hex32 + " ", crypto.SHA256, true},
		{"sha-384 " + strings.Repeat("01:", 47) + "02", crypto.SHA384, true},
		{"sha-512 " + strings.Repeat("01:", 63) + "02", crypto.SHA512, true},
		{"sha-1 " + strings.Repeat("01:", 19) + "02", 0, false}, // weak: refused
		{"md5 " + strings.Repeat("01:", 15) + "02", 0, false},
		{"sha-256 " + hex32[3:], 0, false},     // 31 bytes
		{"sha-256 " + hex32 + ":EF", 0, false}, // 33 bytes
		{"sha-256 " + strings.Repeat("AB-", 31) + "CD", 0, false},
		{"sha-256 " + strings.Repeat("ZZ:", 31) + "CD", 0, false},
		{"sha-256", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		fp, err := parseFingerprint(tt.in)
		if (err == nil) != tt.ok {
			t.Errorf("%q: %v", tt.in, err)
			continue
		}
		if err != nil && !errors.Is(err, errFingerprint) {
			t.Errorf("%q: %v does not wrap errFingerprint", tt.in, err)
		}
		if tt.ok && (fp.hash != tt.hash || len(fp.sum) != tt.hash.Size()) {
			t.Errorf("%q: %v, %d bytes", tt.in, fp.hash, len(fp.sum))
		}
	}
}

// FuzzParseFingerprint: a=fingerprint comes from the browser's SDP. A
// parsed one has its hash's size and survives a round trip through its
// canonical form.
func FuzzParseFingerprint(f *testing.F) {
	f.Add("sha-256 " + strings.Repeat("AB:", 31) + "CD")
	f.Add("sha-512 " + strings.Repeat("ab:", 63) + "cd")
	f.Add("sha-1 00:11")
	f.Fuzz(func(t *testing.T, s string) {
		fp, err := parseFingerprint(s)
		if err != nil {
			return
		}
		if len(fp.sum) != fp.hash.Size() {
			t.Fatalf("%d bytes for %v", len(fp.sum), fp.hash)
		}
		name := map[crypto.Hash]string{crypto.SHA256: "sha-256", crypto.SHA384: "sha-384", crypto.SHA512: "sha-512"}[fp.hash]
		again, err := parseFingerprint(name + " " + colonHex(fp.sum))
		if err != nil || !again.equal(fp) {
			t.Fatalf("canonical form of %q: %v", s, err)
		}
	})
}

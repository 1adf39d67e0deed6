package digest

import "testing"

// The server side of a registration checks one Authorization header per
// authenticated request: it parses the header and verifies the response.
// The client side answers a challenge and writes the header.

// benchAnswer returns the credentials of alice (password "secret") with
// alg, and the HA1 the server keeps for her.
func benchAnswer(b *testing.B, alg string) (*Credentials, string) {
	b.Helper()
	ch, err := ParseChallenge(`Digest realm="example.test", nonce="AZ0l2mD1sX8AAAAAbWFkZS11cC1ub25jZS1ieXRlcw", algorithm=` + alg + `, qop="auth"`)
	if err != nil {
		b.Fatal(err)
	}
	cr, err := ch.Authorize(Answer{Method: "REGISTER", URI: "sip:example.test", Username: "alice", Password: "secret", CNonce: "0a4f113b"})
	if err != nil {
		b.Fatal(err)
	}
	a, _ := ParseAlgorithm(alg)
	return cr, a.Hash("alice", "example.test", "secret")
}

// BenchmarkVerify measures the check of a response against the stored
// HA1 (RFC 7616 §3.4.1): HA2, then KD(HA1, ...), then the comparison.
func BenchmarkVerify(b *testing.B) {
	for _, alg := range []string{"MD5", "SHA-256"} {
		b.Run(alg, func(b *testing.B) {
			cr, ha1 := benchAnswer(b, alg)
			b.ReportAllocs()
			for b.Loop() {
				if !cr.Verify("REGISTER", nil, ha1) {
					b.Fatal("rejected")
				}
			}
		})
	}
}

// BenchmarkParseCredentials measures parsing an Authorization header
// value as a phone writes it.
func BenchmarkParseCredentials(b *testing.B) {
	cr, _ := benchAnswer(b, "MD5")
	v := cr.String()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseCredentials(v); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCredentialsParse is BenchmarkParseCredentials into a variable
// of the caller's, as the server parses.
func BenchmarkCredentialsParse(b *testing.B) {
	cr, _ := benchAnswer(b, "MD5")
	v := cr.String()
	b.ReportAllocs()
	for b.Loop() {
		var c Credentials
		if err := c.Parse(v); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkChallengeString measures writing a WWW-Authenticate value.
func BenchmarkChallengeString(b *testing.B) {
	ch := Challenge{Scheme: "Digest", Realm: "example.test", Nonce: "AZ0l2mD1sX8AAAAAbWFkZS11cC1ub25jZS1ieXRlcw",
		Algorithm: "SHA-256", QOP: []string{"auth"}}
	b.ReportAllocs()
	for b.Loop() {
		_ = ch.String()
	}
}

// BenchmarkAuthorize measures the client side: answer a challenge and
// write the Authorization value.
func BenchmarkAuthorize(b *testing.B) {
	ch, err := ParseChallenge(`Digest realm="example.test", nonce="AZ0l2mD1sX8AAAAAbWFkZS11cC1ub25jZS1ieXRlcw", algorithm=MD5, qop="auth"`)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		cr, err := ch.Authorize(Answer{Method: "REGISTER", URI: "sip:example.test", Username: "alice", Password: "secret", CNonce: "0a4f113b"})
		if err != nil {
			b.Fatal(err)
		}
		_ = cr.String()
	}
}

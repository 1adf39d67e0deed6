package digest

import (
	"reflect"
	"strings"
	"testing"
)

// RFC 7616 §3.9.1: the worked example, once with MD5 and once with SHA-256.
const (
	rfc7616Challenge = "Digest\r\n    realm=\"http-auth@example.org\",\r\n    qop=\"auth, auth-int\",\r\n" +
		"    algorithm=%s,\r\n    nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\",\r\n" +
		"    opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\""
	rfc7616CNonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
)

func TestRFC7616Example(t *testing.T) {
	for _, tc := range []struct {
		alg, response string
	}{
		{"MD5", "8ca523f5e9506fed4657c9700eebdbec"},
		{"SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"},
	} {
		t.Run("RFC7616 3.9.1 "+tc.alg, func(t *testing.T) {
			ch, err := ParseChallenge(strings.Replace(rfc7616Challenge, "%s", tc.alg, 1))
			if err != nil {
				t.Fatal(err)
			}
			if ch.Realm != "http-auth@example.org" || ch.Algorithm != tc.alg ||
				!reflect.DeepEqual(ch.QOP, []string{"auth", "auth-int"}) ||
				ch.Opaque != "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS" {
				t.Fatalf("parsed %+v", ch)
			}
			cr, err := ch.Authorize(Answer{Method: "GET", URI: "/dir/index.html", Username: "Mufasa",
				Password: "Circle of Life", NC: 1, CNonce: rfc7616CNonce})
			if err != nil {
				t.Fatal(err)
			}
			if cr.Response != tc.response {
				t.Errorf("response %s, want %s", cr.Response, tc.response)
			}
			if cr.QOP != "auth" || cr.NC != 1 || cr.CNonce != rfc7616CNonce || cr.Opaque != ch.Opaque {
				t.Errorf("credentials %+v", cr)
			}
			// Round trip through the header value, then verify as a server.
			back, err := ParseCredentials(cr.String())
			if err != nil {
				t.Fatalf("%s: %v", cr.String(), err)
			}
			if !reflect.DeepEqual(back, cr) {
				t.Errorf("round trip:\n got %+v\nwant %+v", back, cr)
			}
			alg, _ := ParseAlgorithm(tc.alg)
			if !back.Verify("GET", nil, alg.Hash("Mufasa", "http-auth@example.org", "Circle of Life")) {
				t.Error("Verify rejected the RFC's own answer")
			}
			if back.Verify("GET", nil, alg.Hash("Mufasa", "http-auth@example.org", "circle of life")) {
				t.Error("Verify accepted a wrong password")
			}
		})
	}
}

// RFC 2617 §3.5: MD5 with qop=auth (the password there is "Circle Of Life").
func TestRFC2617Example(t *testing.T) {
	auth := `Digest username="Mufasa",
                 realm="testrealm@host.com",
                 nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
                 uri="/dir/index.html",
                 qop=auth,
                 nc=00000001,
                 cnonce="0a4f113b",
                 response="6629fae49393a05397450978507c4ef1",
                 opaque="5ccc069c403ebaf9f0171e9517f40e41"`
	cr, err := ParseCredentials(auth)
	if err != nil {
		t.Fatal(err)
	}
	if cr.Username != "Mufasa" || cr.NC != 1 || cr.QOP != "auth" || cr.URI != "/dir/index.html" {
		t.Fatalf("parsed %+v", cr)
	}
	if !cr.Verify("GET", nil, MD5.Hash("Mufasa", "testrealm@host.com", "Circle Of Life")) {
		t.Error("RFC 2617 response does not verify")
	}
	ch, err := ParseChallenge(`Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ch.Authorize(Answer{Method: "GET", URI: "/dir/index.html", Username: "Mufasa", Password: "Circle Of Life", CNonce: "0a4f113b"})
	if err != nil {
		t.Fatal(err)
	}
	if got.Response != "6629fae49393a05397450978507c4ef1" {
		t.Errorf("response %s", got.Response)
	}
}

func TestAuthorize(t *testing.T) {
	pass := "secret"
	tests := []struct {
		name      string
		challenge string
		wantQOP   string
		wantErr   bool
	}{
		{"RFC2069 legacy form without qop", `Digest realm="example.test", nonce="abc"`, "", false},
		{"RFC3261 22.4 qop=auth", `Digest realm="example.test", nonce="abc", qop="auth"`, "auth", false},
		{"RFC7616 auth-int only", `Digest realm="example.test", nonce="abc", qop="auth-int"`, "auth-int", false},
		{"RFC8760 SHA-256-sess", `Digest realm="example.test", nonce="abc", qop="auth", algorithm=SHA-256-sess`, "auth", false},
		{"RFC7616 SHA-512-256", `Digest realm="example.test", nonce="abc", qop="auth", algorithm=sha-512-256`, "auth", false},
		{"MD5-sess without qop", `Digest realm="example.test", nonce="abc", algorithm=MD5-sess`, "", false},
		{"unknown algorithm", `Digest realm="example.test", nonce="abc", algorithm=SHA3`, "", true},
		{"unknown qop only", `Digest realm="example.test", nonce="abc", qop="auth-conf"`, "", true},
		{"other scheme", `Basic realm="example.test"`, "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ch, err := ParseChallenge(tc.challenge)
			if err != nil {
				t.Fatal(err)
			}
			cr, err := ch.Authorize(Answer{Method: "REGISTER", URI: "sip:example.test", Username: "alice",
				Password: pass, NC: 3, CNonce: "c0ffee", Body: []byte("v=0\r\n")})
			if tc.wantErr {
				if err == nil {
					t.Fatalf("no error, credentials %v", cr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cr.QOP != tc.wantQOP {
				t.Errorf("qop %q, want %q", cr.QOP, tc.wantQOP)
			}
			s := cr.String()
			if tc.wantQOP == "" && (strings.Contains(s, "nc=") || strings.Contains(s, "qop=")) {
				t.Errorf("legacy form carries qop or nc: %s", s)
			}
			if tc.wantQOP != "" && !strings.Contains(s, "nc=00000003") {
				t.Errorf("nc missing: %s", s)
			}
			back, err := ParseCredentials(s)
			if err != nil {
				t.Fatal(err)
			}
			alg, _ := ParseAlgorithm(ch.Algorithm)
			if !back.Verify("REGISTER", []byte("v=0\r\n"), alg.Hash("alice", "example.test", pass)) {
				t.Errorf("does not verify: %s", s)
			}
		})
	}
}

func TestUserhash(t *testing.T) {
	ch, _ := ParseChallenge(`Digest realm="api@example.org", nonce="n", qop="auth", algorithm=SHA-256, userhash=true`)
	cr, err := ch.Authorize(Answer{Method: "GET", URI: "/", Username: "bob", Password: "x", CNonce: "c"})
	if err != nil {
		t.Fatal(err)
	}
	if !cr.Userhash || cr.Username != SHA256.Hash("bob", "api@example.org") {
		t.Errorf("RFC7616 3.4.4 username %q", cr.Username)
	}
}

func TestParseChallenge(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want *Challenge
		err  bool
	}{
		{"case-insensitive names, stale, quoted-pair", `DIGEST REALM="a\"b", Nonce=xyz, STALE=TRUE, Algorithm=MD5, x-custom="q"`,
			&Challenge{Scheme: "DIGEST", Realm: `a"b`, Nonce: "xyz", Stale: true, Algorithm: "MD5",
				Other: []Param{{Name: "x-custom", Value: "q", Quoted: true}}}, false},
		{"commas inside quotes and empty elements", `Digest realm="a,b", , qop="auth,auth-int" ,nonce="n"`,
			&Challenge{Scheme: "Digest", Realm: "a,b", QOP: []string{"auth", "auth-int"}, Nonce: "n"}, false},
		{"LWS around =", "Digest realm = \"r\" ,\r\n nonce\t=\t\"n\"", &Challenge{Scheme: "Digest", Realm: "r", Nonce: "n"}, false},
		{"no scheme", `="x"`, nil, true},
		{"unterminated quote", `Digest realm="abc`, nil, true},
		{"missing value", `Digest realm=, nonce="n"`, nil, true},
		{"missing comma", `Digest realm="r" nonce="n"`, nil, true},
		{"param without =", `Digest realm`, nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseChallenge(tc.in)
			if tc.err {
				if err == nil {
					t.Fatalf("no error: %+v", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
			again, err := ParseChallenge(got.String())
			if err != nil || !reflect.DeepEqual(again, got) {
				t.Errorf("round trip of %s: %+v %v", got.String(), again, err)
			}
		})
	}
}

func TestParseCredentialsBadNC(t *testing.T) {
	if _, err := ParseCredentials(`Digest username="a", nc=1`); err == nil {
		t.Error("nc of one digit accepted")
	}
}

func FuzzParseChallenge(f *testing.F) {
	f.Add(strings.Replace(rfc7616Challenge, "%s", "SHA-256", 1))
	f.Add(`Digest realm="a\"b", nonce=xyz, stale=TRUE, qop="auth"`)
	f.Add(`Digest username="Mufasa", realm="r", nonce="n", uri="/", qop=auth, nc=00000001, cnonce="c", response="0"`)
	f.Add(`Basic realm="x"`)
	f.Add(`Digest a="\`)
	f.Fuzz(func(t *testing.T, s string) {
		if c, err := ParseChallenge(s); err == nil {
			again, err := ParseChallenge(c.String())
			if err != nil {
				t.Fatalf("%q: re-parse of %q: %v", s, c.String(), err)
			}
			if c.Realm != again.Realm || c.Nonce != again.Nonce || c.Opaque != again.Opaque || c.Stale != again.Stale {
				t.Fatalf("%q: round trip %+v != %+v", s, c, again)
			}
			_, _ = c.Authorize(Answer{Method: "INVITE", URI: "sip:x", Username: "u", Password: "p", CNonce: "c"})
		}
		if c, err := ParseCredentials(s); err == nil {
			if _, err := ParseCredentials(c.String()); err != nil {
				t.Fatalf("%q: re-parse of %q: %v", s, c.String(), err)
			}
		}
	})
}

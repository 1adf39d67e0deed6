package digest

import (
	"strings"
	"testing"
)

// The values below were written by the package before its buffers moved
// to the stack: header values and digests must stay byte for byte the
// same.

func TestStringFormat(t *testing.T) {
	challenges := []struct {
		name string
		c    Challenge
		want string
	}{
		{"RFC8760 2.4 SHA-256 challenge", Challenge{Scheme: "Digest", Realm: "example.test", Nonce: "AZ0l2mD1sX8AAAAAbWFkZS11cC1ub25jZS1ieXRlcw", Algorithm: "SHA-256", QOP: []string{"auth"}},
			`Digest realm="example.test", nonce="AZ0l2mD1sX8AAAAAbWFkZS11cC1ub25jZS1ieXRlcw", algorithm=SHA-256, qop="auth"`},
		{"RFC7616 3.3 stale", Challenge{Scheme: "Digest", Realm: "example.test", Nonce: "n", Stale: true, Algorithm: "MD5", QOP: []string{"auth"}},
			`Digest realm="example.test", nonce="n", stale=true, algorithm=MD5, qop="auth"`},
		{"every parameter, quoted-pairs", Challenge{Realm: `a"b\c`, Domain: "sip:a sip:b", Nonce: "x", Opaque: "o", Algorithm: "weird alg", QOP: []string{"auth", `au"th-int`},
			Charset: "UTF-8", Userhash: true, Other: []Param{{Name: "x", Value: "tok"}, {Name: "y", Value: "tok", Quoted: true}, {Name: "z", Value: "not token"}}},
			`Digest realm="a\"b\\c", domain="sip:a sip:b", nonce="x", opaque="o", algorithm="weird alg", qop="auth,au\"th-int", charset=UTF-8, userhash=true, x=tok, y="tok", z="not token"`},
		{"other scheme without parameters", Challenge{Scheme: "Basic"}, "Basic"},
		{"other scheme", Challenge{Scheme: "Basic", Realm: "r"}, `Basic realm="r"`},
		{"longer than the stack buffer", Challenge{Realm: strings.Repeat("r", 600), Nonce: "n"},
			`Digest realm="` + strings.Repeat("r", 600) + `", nonce="n"`},
	}
	for _, tc := range challenges {
		t.Run("challenge "+tc.name, func(t *testing.T) {
			if got := tc.c.String(); got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
			if got := string(tc.c.AppendTo([]byte("x: "))); got != "x: "+tc.want {
				t.Errorf("AppendTo: %s", got)
			}
		})
	}
	credentials := []struct {
		name string
		c    Credentials
		want string
	}{
		{"RFC3261 22.4 qop=auth", Credentials{Scheme: "Digest", Username: "u0", Realm: "example.test", Nonce: "AZ0l2mD1sX8AAAAAbWFkZS11cC1ub25jZS1ieXRlcw",
			URI: "sip:example.test", Response: "0123", Algorithm: "MD5", CNonce: "0a4f113b", QOP: "auth", NC: 0xabc},
			`Digest username="u0", realm="example.test", nonce="AZ0l2mD1sX8AAAAAbWFkZS11cC1ub25jZS1ieXRlcw", uri="sip:example.test", response="0123", algorithm=MD5, cnonce="0a4f113b", qop=auth, nc=00000abc`},
		{"quoted-pairs, userhash, others", Credentials{Username: `a"b`, Opaque: "op", Userhash: true, QOP: "auth int", NC: 0xffffffff,
			Other: []Param{{Name: "x", Value: "tok"}, {Name: "y", Value: ""}}},
			`Digest username="a\"b", realm="", nonce="", uri="", response="", opaque="op", qop="auth int", nc=ffffffff, userhash=true, x=tok, y=""`},
	}
	for _, tc := range credentials {
		t.Run("credentials "+tc.name, func(t *testing.T) {
			if got := tc.c.String(); got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
	for nc, want := range map[uint32]string{0: "00000000", 1: "00000001", 0x10: "00000010", 0xdeadbeef: "deadbeef", 0xffffffff: "ffffffff"} {
		if got := FormatNC(nc); got != want {
			t.Errorf("FormatNC(%#x) = %q, want %q", nc, got, want)
		}
	}
}

func TestDigests(t *testing.T) {
	tests := []struct {
		alg                                 Algorithm
		ha1, ha2AuthInt, ha2, respInt, resp string
	}{
		{MD5, "4842575394a190ef4c973253ba19099c", "3b439093b9b49c1b8cf64d57e332f51b", "b209eae09cb337f6a4605cec6c1c073e", "998a94106af10959896ac6958fa5e7d8", "1c9a4d4655b166fbf937174b55680550"},
		{MD5Sess, "f9d07a89e2a69bf6936f7124c4dfb4a0", "3b439093b9b49c1b8cf64d57e332f51b", "b209eae09cb337f6a4605cec6c1c073e", "560a04c1dba86a0e9d0dbfa9e884a0c0", "189c2005f7605219c2f7d05b2fe8b562"},
		{SHA256, "cc0140d97f2b011fee9f86aa26b63fc472268267b652dcea0675e15d9da92468", "a8921609e1a075d3e8577294c9eb8554b1415046d057e7e986affe59e2201c15", "8685430b39eaec2d31578c668acbaede132bd325210f8cd5a2135953612064ae", "77b42904732b8a77bbd8bc742865a9d0d92aae07bd378ff547e9fe7aa117d7d8", "79971e3c218de1dda9b0fbceacf30ce454ec832458229066a46c5a311319b7fd"},
		{SHA256Sess, "93e4987e258bc1cb65cd37f25429ca046f925d2104710bdfb71af550e639c3f3", "a8921609e1a075d3e8577294c9eb8554b1415046d057e7e986affe59e2201c15", "8685430b39eaec2d31578c668acbaede132bd325210f8cd5a2135953612064ae", "162840c406dd73cdf28c5edc3242caad57294721631fe3db297dc290cbf78cf2", "753ffe325e2402a2c4e00789f2b4994ae614ec88edeafdc2a54a98df690cf03c"},
		{SHA512_256, "5fed66a4a7c351762a1e82edeb6a21abc5c66b9e8180686853b8d19ce638c9a5", "1ab160ad07f467a86bde627b3dbdf7ac4f869d6bca08448aea4106069433fb57", "b5772634879bad36ca6174a8342c92688159a78659f17ab582f0fe20a28f321c", "d945b0608035f90af175a569650f6892ad21c296294a9730d5958e529ff84ca7", "dceef46cab0e3e5784fe655111564fd9160e8f80cc86aeb7ed30e264ed0e8bb8"},
		{SHA512_256Sess, "233a59ed33d07a5dba64a203c8669ef1b5f88a6345736ccbeba7da73cbba26c1", "1ab160ad07f467a86bde627b3dbdf7ac4f869d6bca08448aea4106069433fb57", "b5772634879bad36ca6174a8342c92688159a78659f17ab582f0fe20a28f321c", "29cc3d4ab73c1f98abf4214b90b8d5cca4c1f448b9ad7ddd11111ccbd215b2fd", "f0837194354ddb87ea955d09076798052ddd6b9d5136c4c5d954a3c4a3879708"},
	}
	for _, tc := range tests {
		t.Run("RFC7616 3.4 "+tc.alg.String(), func(t *testing.T) {
			ha1 := HA1(tc.alg, "alice", "example.test", "secret", "nonce", "cn")
			ha2i := HA2(tc.alg, "auth-int", "INVITE", "sip:x", []byte("v=0\r\n"))
			ha2 := HA2(tc.alg, "auth", "INVITE", "sip:x", nil)
			for _, c := range []struct{ what, got, want string }{
				{"HA1", ha1, tc.ha1},
				{"HA2 auth-int", ha2i, tc.ha2AuthInt},
				{"HA2", ha2, tc.ha2},
				{"response auth-int", Response(tc.alg, ha1, "nonce", 7, "cn", "auth-int", ha2i), tc.respInt},
				{"RFC2069 response", Response(tc.alg, ha1, "nonce", 0, "", "", ha2), tc.resp},
			} {
				if c.got != c.want {
					t.Errorf("%s = %s, want %s", c.what, c.got, c.want)
				}
			}
			// The server's check gives the same verdict from the stored
			// H(username:realm:password).
			stored := tc.alg.Hash("alice", "example.test", "secret")
			cr := Credentials{Algorithm: tc.alg.String(), Nonce: "nonce", CNonce: "cn", URI: "sip:x", QOP: "auth-int", NC: 7, Response: tc.respInt}
			if !cr.Verify("INVITE", []byte("v=0\r\n"), stored) {
				t.Error("Verify rejected the auth-int response")
			}
			cr = Credentials{Algorithm: tc.alg.String(), Nonce: "nonce", CNonce: "cn", URI: "sip:x", Response: tc.resp}
			if !cr.Verify("INVITE", nil, stored) {
				t.Error("Verify rejected the RFC 2069 response")
			}
		})
	}
	long := strings.Repeat("x", 1000)
	for _, c := range []struct{ what, got, want string }{
		{"Hash", SHA256.Hash(long, long), "c997a462a0020abf9f0c944d7c9ff6fde355737c5a181f5d7b186533d05e0a51"},
		{"Response", Response(MD5, long, long, 1, long, "auth", long), "349e95403b8572165ef07290ab590450"},
		{"HA2", HA2(SHA512_256, "auth-int", long, long, []byte(long)), "af67bcdecce7fe5ceed64fbe7b7d3f15bfdbc61ffb4cdac7e1caba5d3eab8ad1"},
	} {
		if c.got != c.want {
			t.Errorf("%s of input longer than the stack buffer = %s, want %s", c.what, c.got, c.want)
		}
	}
}

func TestVerifyResponseCase(t *testing.T) {
	ha1 := MD5.Hash("Mufasa", "testrealm@host.com", "Circle Of Life")
	cr := Credentials{Nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093", URI: "/dir/index.html", QOP: "auth", NC: 1, CNonce: "0a4f113b",
		Response: "6629FAE49393A05397450978507C4EF1"}
	if !cr.Verify("GET", nil, ha1) {
		t.Error("RFC 2617 3.5 response in upper case rejected")
	}
	for _, bad := range []string{"", "6629fae49393a05397450978507c4ef", "6629fae49393a05397450978507c4ef10", "6629fae49393a05397450978507c4ef0",
		"6629fae49393a05397450978507c4e\u212a", "6629fae49393a05397450978507c4ef1\x00"} {
		cr.Response = bad
		if cr.Verify("GET", nil, ha1) {
			t.Errorf("response %q accepted", bad)
		}
	}
	cr.Response, cr.Algorithm = "6629fae49393a05397450978507c4ef1", "SHA3"
	if cr.Verify("GET", nil, ha1) {
		t.Error("unknown algorithm accepted")
	}
}

// The server's side of a request costs no allocation: parsing the
// credentials into a variable of its own and verifying them.
func TestServerSideAllocations(t *testing.T) {
	ha1 := SHA256.Hash("alice", "example.test", "secret")
	ch := Challenge{Scheme: "Digest", Realm: "example.test", Nonce: "n", Algorithm: "SHA-256", QOP: []string{"auth"}}
	cr, err := ch.Authorize(Answer{Method: "REGISTER", URI: "sip:example.test", Username: "alice", Password: "secret", CNonce: "c"})
	if err != nil {
		t.Fatal(err)
	}
	v := cr.String()
	if n := testing.AllocsPerRun(100, func() {
		var c Credentials
		if err := c.Parse(v); err != nil || !c.Verify("REGISTER", nil, ha1) {
			t.Fatalf("%s: %v", v, err)
		}
	}); n != 0 {
		t.Errorf("%v allocations per request", n)
	}
}

func TestCredentialsParse(t *testing.T) {
	c := Credentials{Username: "kept"}
	if err := c.Parse(`Digest username="a", nc=1`); err == nil || c.Username != "kept" {
		t.Errorf("failed Parse: %v, credentials %+v", err, c)
	}
	if err := c.Parse(`Digest username="a\"b", realm=r, X-Y="z"`); err != nil {
		t.Fatal(err)
	}
	if c.Username != `a"b` || c.Realm != "r" || len(c.Other) != 1 || c.Other[0] != (Param{Name: "X-Y", Value: "z", Quoted: true}) {
		t.Errorf("parsed %+v", c)
	}
	if err := c.Parse(`Basic dXNlcjpwYXNz=`); err == nil {
		t.Error("token68 form parsed as auth-params")
	}
}

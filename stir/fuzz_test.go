package stir

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/hlas-voip/hlas/stir/stirtest"
)

// memTransport serves one certificate chain at one URL from memory and 404
// for anything else, so fuzzing and benchmarks never touch the network.
type memTransport struct {
	url  string
	body []byte
}

func (m memTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp := &http.Response{StatusCode: http.StatusNotFound, Status: "404 Not Found", Header: http.Header{},
		Body: io.NopCloser(strings.NewReader("")), Request: req}
	if req.URL.String() == m.url {
		resp.StatusCode, resp.Status = http.StatusOK, "200 OK"
		resp.Body = io.NopCloser(strings.NewReader(string(m.body)))
	}
	return resp, nil
}

// memFixture is a fixture whose verifier fetches from memory.
func memFixture(tb testing.TB) *fixture {
	f := &fixture{clock: newClock()}
	f.root = stirtest.NewCA(tb, "STI-PA test root")
	f.inter = f.root.Intermediate(tb, "STI-CA test intermediate")
	f.leaf, f.leafKey = f.inter.Leaf(tb, stirtest.LeafOptions{SPC: "709J"})
	f.x5u = "https://cert.example.org/709J.pem"
	f.signer = f.newSigner(tb, f.leafKey, f.x5u)
	v, err := NewVerifier(VerifierConfig{
		Roots:  stirtest.Pool(f.root),
		Client: &http.Client{Transport: memTransport{url: f.x5u, body: stirtest.PEMChain(f.leaf, f.inter.Cert)}},
		Now:    f.clock.Now,
	})
	if err != nil {
		tb.Fatal(err)
	}
	f.v = v
	return f
}

func FuzzParseIdentity(f *testing.F) {
	for _, s := range []string{
		"eyJhbGciOiJFUzI1NiJ9.eyJhIjoxfQ.c2ln;info=<https://cert.example.org/passport.cer>;alg=ES256;ppt=shaken",
		"a..b;info=<https://x/>",
		` a ; INFO = "https://x/;y" ; ppt = shaken ; ext`,
		"a;info=<",
		"a;info=\"",
		";;;",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		token, params, err := ParseIdentity(h)
		if err != nil {
			return
		}
		if token == "" || params.Info == "" || params.Alg == "" {
			t.Fatalf("accepted %q as %q %+v", h, token, params)
		}
		if strings.ContainsAny(token, "; \t") {
			t.Fatalf("token %q of %q holds a separator", token, h)
		}
	})
}

func FuzzVerify(f *testing.F) {
	fx := memFixture(f)
	good := fx.sign(f)
	tok, params, _ := strings.Cut(good, ";")
	parts := strings.Split(tok, ".")
	f.Add(good, alice, bob)
	f.Add(parts[0]+".."+parts[2]+";"+params, alice, bob)
	f.Add(parts[0]+"."+parts[1]+";"+params, alice, bob)
	f.Add(good, "sip:+"+alice+"@example.com", "tel:+"+bob)
	f.Add("", "", "")
	f.Fuzz(func(t *testing.T, identity, orig, dest string) {
		r := fx.v.Verify(context.Background(), identity, orig, dest)
		switch r.Code {
		case CodeValid:
			if r.Verstat != VerstatPassed || r.SPC != "709J" || r.PASSporT.Orig != alice {
				t.Fatalf("valid result %+v", r)
			}
		case CodeStaleDate, CodeUseIdentityHeader, CodeBadIdentityInfo, CodeUnsupportedCredential, CodeInvalidIdentityHeader:
			if r.Err == nil || r.Verstat == VerstatPassed {
				t.Fatalf("failed result %+v", r)
			}
		default:
			t.Fatalf("code %d", r.Code)
		}
		_ = fx.v.Cached(identity)
	})
}

func FuzzParseTNAuthList(f *testing.F) {
	for _, l := range []TNAuthList{
		{SPCs: []string{"709J"}},
		{Ranges: []TNRange{{"12025550100", 100}}, TNs: []string{"12025550100"}},
	} {
		der, err := l.Marshal()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(der)
	}
	f.Fuzz(func(t *testing.T, der []byte) {
		l, err := ParseTNAuthList(der)
		if err != nil {
			return
		}
		if len(l.SPCs)+len(l.TNs)+len(l.Ranges) == 0 {
			t.Fatalf("empty list accepted from %x", der)
		}
		_ = l.Covers("12025550100")
		// What was accepted encodes again (the explicit form) and decodes
		// to the same list.
		out, err := l.Marshal()
		if err != nil {
			t.Fatalf("re-encoding %+v: %v", l, err)
		}
		back, err := ParseTNAuthList(out)
		if err != nil || len(back.SPCs) != len(l.SPCs) || len(back.TNs) != len(l.TNs) || len(back.Ranges) != len(l.Ranges) {
			t.Fatalf("round trip of %+v: %+v, %v", l, back, err)
		}
	})
}

func FuzzNormalizeTN(f *testing.F) {
	for _, s := range []string{"+1-202-555-0100", "sip:+12025550100@x;user=phone", "tel:+1;phone-context=x", "<sip:1@x>"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tn, ok := NormalizeTN(s)
		if !ok {
			return
		}
		if len(tn) < 1 || len(tn) > 15 || strings.Trim(tn, "0123456789") != "" {
			t.Fatalf("NormalizeTN(%q) = %q", s, tn)
		}
		if again, ok := NormalizeTN(tn); !ok || again != tn {
			t.Fatalf("not idempotent: %q -> %q -> %q", s, tn, again)
		}
	})
}

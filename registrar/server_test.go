package registrar_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/hlas-voip/hlas/auth"
	"github.com/hlas-voip/hlas/server"
	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/digest"
	"github.com/hlas-voip/hlas/store"
)

// These tests run the whole server over UDP on loopback: handler chain,
// transactions, auth, registrar and the SQLite store together.

func startServer(t *testing.T, cfg server.Config) (*server.Server, netip.AddrPort) {
	t.Helper()
	cfg.Listen = []string{"udp:127.0.0.1:0"}
	if cfg.Domains == nil {
		cfg.Domains = []string{"example.test"}
	}
	srv, err := server.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv, srv.Addrs()[0].Addr
}

func addUser(t *testing.T, dir, aor, password string) {
	t.Helper()
	st, err := store.Open(context.Background(), store.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	user, domain, _ := strings.Cut(aor, "@")
	if err := st.AddUser(context.Background(), auth.NewUser(user, domain, password)); err != nil {
		t.Fatal(err)
	}
}

// phone is a minimal UDP user agent: one socket, one Call-ID, growing CSeq.
type phone struct {
	t      *testing.T
	conn   *net.UDPConn
	server netip.AddrPort
	aor    string
	callID string
	cseq   int
}

var callIDs atomic.Int64

func newPhone(t *testing.T, srv netip.AddrPort, aor string) *phone {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &phone{t: t, conn: c, server: srv, aor: aor, callID: fmt.Sprintf("reg-%d@test", callIDs.Add(1))}
}

// register sends a REGISTER with the given extra header lines and returns
// the response.
func (p *phone) register(extra ...string) *sip.Response {
	p.t.Helper()
	p.cseq++
	local := p.conn.LocalAddr().String()
	msg := fmt.Sprintf("REGISTER sip:example.test SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP %s;branch=z9hG4bK%d%d;rport\r\n"+
		"Max-Forwards: 70\r\nFrom: <sip:%s>;tag=ph\r\nTo: <sip:%s>\r\nCall-ID: %s\r\nCSeq: %d REGISTER\r\n"+
		"User-Agent: hlas-test/1.0\r\n%sContent-Length: 0\r\n\r\n",
		local, time.Now().UnixNano(), p.cseq, p.aor, p.aor, p.callID, p.cseq, strings.Join(extra, ""))
	if _, err := p.conn.WriteToUDPAddrPort([]byte(msg), p.server); err != nil {
		p.t.Fatal(err)
	}
	buf := make([]byte, 65535)
	_ = p.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err := p.conn.ReadFromUDPAddrPort(buf)
	if err != nil {
		p.t.Fatalf("no response: %v", err)
	}
	m, err := sip.Parse(buf[:n])
	if err != nil {
		p.t.Fatalf("%v\n%s", err, buf[:n])
	}
	return m.(*sip.Response)
}

// answer computes an Authorization header line for the first challenge of
// res with the given algorithm.
func answer(t *testing.T, res *sip.Response, alg, user, password string) string {
	t.Helper()
	for _, f := range res.Fields {
		if !strings.EqualFold(f.Name, "WWW-Authenticate") {
			continue
		}
		ch, err := digest.ParseChallenge(f.Value)
		if err != nil {
			t.Fatal(err)
		}
		if ch.Algorithm != alg {
			continue
		}
		cr, err := ch.Authorize(digest.Answer{Method: "REGISTER", URI: "sip:example.test", Username: user, Password: password, CNonce: "c0ffee"})
		if err != nil {
			t.Fatal(err)
		}
		return "Authorization: " + cr.String() + "\r\n"
	}
	t.Fatalf("no %s challenge in\n%s", alg, res)
	return ""
}

func TestServerRegisterWithDigest(t *testing.T) {
	dir := t.TempDir()
	addUser(t, dir, "alice@example.test", "secret")
	addUser(t, dir, "bob@example.test", "hunter2")
	srv, addr := startServer(t, server.Config{DataDir: dir})
	contact := "Contact: <sip:alice@192.0.2.50:5060>;expires=600\r\n"

	t.Run("RFC3261 22.2 REGISTER without credentials: 401 with SHA-256 then MD5", func(t *testing.T) {
		res := newPhone(t, addr, "alice@example.test").register(contact)
		if res.StatusCode != 401 {
			t.Fatalf("got %d", res.StatusCode)
		}
		var algs []string
		for _, f := range res.Fields {
			if f.Name == "WWW-Authenticate" {
				ch, _ := digest.ParseChallenge(f.Value)
				algs = append(algs, ch.Algorithm)
			}
		}
		if strings.Join(algs, ",") != "SHA-256,MD5" {
			t.Errorf("algorithms %v", algs)
		}
	})
	for _, alg := range []string{"SHA-256", "MD5"} {
		t.Run("RFC3261 10.3 authenticated REGISTER with "+alg, func(t *testing.T) {
			ph := newPhone(t, addr, "alice@example.test")
			res := ph.register(contact)
			res = ph.register(contact, answer(t, res, alg, "alice", "secret"))
			if res.StatusCode != 200 {
				t.Fatalf("got %d %s", res.StatusCode, res.Get("Warning"))
			}
			if len(res.Contact) != 1 || res.Contact[0].String() != "<sip:alice@192.0.2.50:5060>;expires=600" {
				t.Errorf("Contact %v", res.Contact)
			}
		})
	}
	t.Run("RFC3261 22.4 wrong password: a new challenge", func(t *testing.T) {
		ph := newPhone(t, addr, "alice@example.test")
		res := ph.register(contact)
		if res = ph.register(contact, answer(t, res, "MD5", "alice", "guess")); res.StatusCode != 401 {
			t.Fatalf("got %d", res.StatusCode)
		}
	})
	t.Run("RFC3261 10.3 step 4 bob registering alice: 403", func(t *testing.T) {
		ph := newPhone(t, addr, "alice@example.test")
		res := ph.register(contact)
		if res = ph.register(contact, answer(t, res, "SHA-256", "bob", "hunter2")); res.StatusCode != 403 {
			t.Fatalf("got %d", res.StatusCode)
		}
	})
	t.Run("RFC3261 10.3 step 5 AOR in a foreign domain: 404 without a challenge", func(t *testing.T) {
		if res := newPhone(t, addr, "alice@elsewhere.test").register(contact); res.StatusCode != 404 {
			t.Fatalf("got %d", res.StatusCode)
		}
	})
	t.Run("RFC3261 10.3 step 2 unsupported Require: 420", func(t *testing.T) {
		ph := newPhone(t, addr, "alice@example.test")
		res := ph.register(contact)
		res = ph.register(contact, "Require: gruu-x\r\n", answer(t, res, "MD5", "alice", "secret"))
		if res.StatusCode != 420 || res.Get("Unsupported") != "gruu-x" {
			t.Fatalf("got %d\n%s", res.StatusCode, res)
		}
	})
	reg := srv.Registry()
	if n, err := testutil.GatherAndCount(reg, "hlas_registrar_registers_total", "hlas_auth_results_total", "hlas_registrar_bindings"); err != nil || n == 0 {
		t.Errorf("metrics: %d, %v", n, err)
	}
}

func TestServerOpenDomainAndRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := server.Config{DataDir: dir, Auth: auth.Config{OpenDomains: []string{"example.test"}}}
	srv, addr := startServer(t, cfg)
	res := newPhone(t, addr, "carol@example.test").register("Contact: <sip:carol@192.0.2.60:5070>;expires=900\r\n")
	if res.StatusCode != 200 {
		t.Fatalf("open domain: got %d", res.StatusCode)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	// Another server on the same data directory has the binding back.
	_, addr = startServer(t, cfg)
	res = newPhone(t, addr, "carol@example.test").register()
	if res.StatusCode != 200 || len(res.Contact) != 1 || !strings.HasPrefix(res.Contact[0].String(), "<sip:carol@192.0.2.60:5070>;expires=") {
		t.Fatalf("after restart: %d %v", res.StatusCode, res.Contact)
	}
}

func TestServerOptionsAdvertises(t *testing.T) {
	_, addr := startServer(t, server.Config{DataDir: t.TempDir()})
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := "OPTIONS sip:example.test SIP/2.0\r\nVia: SIP/2.0/UDP " + c.LocalAddr().String() + ";branch=z9hG4bKopt;rport\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:x@example.test>;tag=1\r\nTo: <sip:example.test>\r\nCall-ID: opt@test\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
	if _, err := c.WriteToUDPAddrPort([]byte(msg), addr); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 65535)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatal(err)
	}
	text := string(buf[:n])
	for _, want := range []string{"SIP/2.0 200", "Supported: path, outbound", "REGISTER"} {
		if !strings.Contains(text, want) {
			t.Errorf("OPTIONS response lacks %q:\n%s", want, text)
		}
	}
}

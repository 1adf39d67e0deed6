//go:build interop

package interop

import (
	"context"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// stunClientDebianPackage ships turnutils_stunclient, coturn's RFC 5389
// STUN client. Its service stays off after the install (/etc/default/coturn).
const stunClientDebianPackage = "coturn"

// stunClientTimeout bounds one turnutils_stunclient run: it waits forever
// for an answer that does not come.
const stunClientTimeout = 20 * time.Second

func requireSTUNClient(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("turnutils_stunclient"); err != nil {
		t.Fatalf("turnutils_stunclient is required but not installed (%v); install the Debian package %q, e.g. by running `bash .ci/run`",
			err, stunClientDebianPackage)
	}
}

// reflexive matches turnutils_stunclient's report of XOR-MAPPED-ADDRESS,
// "UDP reflexive addr: 127.0.0.1:40000" (IPv6 unbracketed: "::1:40000").
var reflexive = regexp.MustCompile(`UDP reflexive addr: (\S+):(\d+)`)

// stunClient asks the STUN server at addr for the client's reflexive
// address and returns it as turnutils_stunclient reports it.
func stunClient(t *testing.T, addr netip.AddrPort) netip.AddrPort {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), stunClientTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "turnutils_stunclient", "-p", strconv.Itoa(int(addr.Port())), addr.Addr().String())
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("turnutils_stunclient got no answer from %s within %v:\n%s", addr, stunClientTimeout, out)
	}
	if err != nil {
		t.Fatalf("turnutils_stunclient %s: %v\n%s", addr, err, out)
	}
	m := reflexive.FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("turnutils_stunclient %s reported no reflexive address:\n%s", addr, out)
	}
	ip, err := netip.ParseAddr(m[1])
	port, perr := strconv.Atoi(m[2])
	if err != nil || perr != nil {
		t.Fatalf("turnutils_stunclient reported %q", m[0])
	}
	return netip.AddrPortFrom(ip, uint16(port))
}

// TestSTUNClient runs coturn's STUN client against hlas serve's dedicated
// STUN port and its SIP UDP ports (RFC 8489 Binding, demultiplexed from
// SIP by RFC 7983 §7), and checks that SIP still works on the shared port.
func TestSTUNClient(t *testing.T) {
	requireSTUNClient(t)
	port, err := freePort("127.0.0.1", false)
	if err != nil {
		t.Fatal(err)
	}
	stunAddr := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
	cfg := filepath.Join(t.TempDir(), "hlas.yaml")
	yaml := "stun:\n  listen: [\"udp:" + stunAddr.String() + "\"]\n"
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, "--config", cfg)

	targets := []struct{ name, addr string }{
		{"STUN port", stunAddr.String()},
		{"SIP UDP IPv4", srv.UDP4},
		{"SIP UDP IPv6", srv.UDP6},
	}
	for _, tt := range targets {
		t.Run(tt.name, func(t *testing.T) {
			if tt.addr == "" {
				t.Skip("no IPv6 loopback on this host")
			}
			to := netip.MustParseAddrPort(tt.addr)
			got := stunClient(t, to)
			// On loopback there is no NAT: the reflexive address is the
			// client's own loopback address, with its (ephemeral) port.
			if got.Addr() != to.Addr() || got.Port() == 0 {
				t.Fatalf("reflexive address %s, want %s with the client's port", got, to.Addr())
			}
		})
	}

	// SIP still answers on the port it shares with STUN.
	req := optionsRequest{Target: srv.UDP4, RPort: true, SentBy: discardSentBy}
	resp, _ := exchangeUDP(t, srv.UDP4, &req, false)
	if resp == nil || resp.StatusCode != 200 {
		t.Fatalf("OPTIONS after STUN on the shared port: %+v", resp)
	}
	srv.assertRunning(t)
}

// TestSTUNDefaultPortTaken starts hlas serve with the default STUN
// configuration while port 3478 is taken (as when several servers run on
// one host): it must start all the same, warn, and answer STUN on its SIP
// port.
func TestSTUNDefaultPortTaken(t *testing.T) {
	requireSTUNClient(t)
	// Take 127.0.0.1:3478 unless something (another server of this
	// suite, say) already has it: taken either way.
	if hold, err := net.ListenPacket("udp4", "127.0.0.1:3478"); err == nil {
		defer hold.Close()
	}
	srv := startServer(t)
	if !strings.Contains(srv.output.String(), "default STUN listener not opened") {
		t.Errorf("no warning about the taken default STUN port in the log")
	}
	if got := stunClient(t, netip.MustParseAddrPort(srv.UDP4)); got.Addr() != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("reflexive address %s", got)
	}
	srv.assertRunning(t)
}

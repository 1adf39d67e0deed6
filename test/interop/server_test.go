//go:build interop

package interop

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hlas-voip/hlas/sip/resolve/resolvetest"
)

const (
	// readyTimeout bounds how long a fresh server may take to answer its
	// first OPTIONS.
	readyTimeout = 10 * time.Second
	// shutdownTimeout bounds a clean shutdown after SIGTERM.
	shutdownTimeout = 10 * time.Second
	// maxLoggedOutput is how much of the server's output a failing test shows.
	maxLoggedOutput = 64 << 10
)

// server is one running `hlas serve` process listening on loopback.
type server struct {
	// UDP4 and TCP4 are the IPv4 listen addresses, "127.0.0.1:port".
	UDP4, TCP4 string
	// UDP6 and TCP6 are the IPv6 listen addresses, "[::1]:port"; empty
	// when the host has no IPv6 loopback.
	UDP6, TCP6 string

	ns     *netns // the namespace it runs in; nil: this one
	cmd    *exec.Cmd
	output *outputBuffer
	exited chan struct{} // closed when the process has been waited for
	err    error         // the result of cmd.Wait, valid after exited
}

// serverConfig tunes startServerWith.
type serverConfig struct {
	// lowPorts picks listen ports below 10000. sipsak 0.9.8.1 cuts the last
	// digit of a five-digit port when it builds the Request-URI
	// (sip:127.0.0.1:15060 goes out as sip:127.0.0.1:1506), which would
	// make the request address some other host.
	lowPorts bool
	// args are appended to the serve command line.
	args []string
	// dns is the DNS server hlas asks (--dns). Empty starts one in the
	// test that knows no names, so that no test depends on the machine's
	// resolver.
	dns string
	// ns runs the server inside this network namespace instead of this
	// one (netns_test.go).
	ns *netns
	// listen replaces the free loopback listeners by these ("udp:host:port"),
	// as in a namespace, where the addresses are the test's own. The first
	// UDP IPv4 one becomes UDP4, which readiness is checked on; the other
	// address fields stay empty.
	listen []string
}

// startServer runs `hlas serve` on free loopback ports with a private data
// directory and debug logging, waits until it answers an OPTIONS over UDP,
// and stops it when the test ends, failing the test unless the process
// exits 0 within shutdownTimeout of SIGTERM.
func startServer(t *testing.T, extraArgs ...string) *server {
	t.Helper()
	return startServerWith(t, serverConfig{args: extraArgs})
}

// startServerWith is startServer with more control over the set-up.
func startServerWith(t *testing.T, cfg serverConfig) *server {
	t.Helper()
	return startRetried(t, func() *server {
		t.Helper()
		s, err := launch(t, cfg)
		if err != nil {
			t.Fatalf("start hlas: %v", err)
		}
		return s
	}, func(s *server) error { return s.waitReady(readyTimeout) })
}

// startRetried starts hlas with start until ready says it is, and stops it
// when the test ends. Free ports are found by binding and closing them, so
// another process can take one before hlas binds it: a server that did
// not get ready with "address already in use" in its output is killed and
// started again, three times at most (start may pick new ports).
func startRetried(t *testing.T, start func() *server, ready func(*server) error) *server {
	t.Helper()
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		s := start()
		err := ready(s)
		if err == nil {
			t.Cleanup(func() { s.stop(t) })
			return s
		}
		s.kill()
		lastErr = fmt.Errorf("%w\nhlas output:\n%s", err, s.output.Tail(maxLoggedOutput))
		if !strings.Contains(s.output.String(), "address already in use") {
			break
		}
	}
	t.Fatalf("hlas did not become ready: %v", lastErr)
	return nil
}

// launch starts the process without waiting for it to be ready.
func launch(t *testing.T, cfg serverConfig) (*server, error) {
	s := &server{ns: cfg.ns, output: &outputBuffer{limit: 8 << 20}, exited: make(chan struct{})}
	listen, err := s.listeners(cfg)
	if err != nil {
		return nil, err
	}
	dns := cfg.dns
	if dns == "" {
		dns = emptyDNS(t)
	}
	args := []string{
		"serve",
		"--listen", strings.Join(listen, ","),
		"--data", t.TempDir(),
		"--log-level", "debug",
		"--dns", dns,
		// These tests are about interoperation, not overload: under -race
		// and side by side (-parallel 8) a server answers several times
		// slower than it would, and refusing late requests with 503 (the
		// default 40 ms bound, tested in server/overload_test.go) would
		// fail them for the test machine's load.
		"--max-queue-delay", "5s",
	}
	args = append(args, cfg.args...)
	where := ""
	if cfg.ns != nil {
		s.cmd = cfg.ns.command(append([]string{hlasBin}, args...)...) // ip netns exec replaces itself with hlas
		where = " in " + cfg.ns.name
	} else {
		s.cmd = exec.Command(hlasBin, args...)
	}
	if err := s.run(t, where+": "+strings.Join(args, " ")); err != nil {
		return nil, err
	}
	return s, nil
}

// run starts s.cmd with its output in s.output, logs it with what after
// its pid, and has s.err and s.exited tell its end.
func (s *server) run(t *testing.T, what string) error {
	s.cmd.Stdout, s.cmd.Stderr = s.output, s.output
	if err := s.cmd.Start(); err != nil {
		return err
	}
	t.Logf("started hlas (pid %d)%s", s.cmd.Process.Pid, what)
	go func() {
		s.err = s.cmd.Wait()
		close(s.exited)
	}()
	return nil
}

// listeners returns the --listen values for cfg and sets the address
// fields to match.
func (s *server) listeners(cfg serverConfig) ([]string, error) {
	if cfg.listen != nil {
		for _, l := range cfg.listen {
			addr, udp := strings.CutPrefix(l, "udp:")
			if ap, err := netip.ParseAddrPort(addr); udp && err == nil && ap.Addr().Is4() {
				s.UDP4 = addr
				return cfg.listen, nil
			}
		}
		return nil, fmt.Errorf("no UDP IPv4 listener in %v", cfg.listen)
	}
	port4, err := freePort("127.0.0.1", cfg.lowPorts)
	if err != nil {
		return nil, err
	}
	s.UDP4 = net.JoinHostPort("127.0.0.1", strconv.Itoa(port4))
	s.TCP4 = s.UDP4
	listen := []string{"udp:" + s.UDP4, "tcp:" + s.TCP4}
	if ipv6Loopback() {
		port6, err := freePort("::1", cfg.lowPorts)
		if err != nil {
			return nil, err
		}
		s.UDP6 = net.JoinHostPort("::1", strconv.Itoa(port6))
		s.TCP6 = s.UDP6
		listen = append(listen, "udp:"+s.UDP6, "tcp:"+s.TCP6)
	}
	return listen, nil
}

// emptyDNS starts a DNS server for the test that answers every name
// NXDOMAIN, and returns its address.
func emptyDNS(t *testing.T) string {
	return resolvetest.Start(t, "invalid. 3600 IN SOA ns.invalid. hostmaster.invalid. 1 3600 600 86400 300").Addr
}

// waitReady polls with OPTIONS over UDP from the server's own address (in
// its namespace, if it has one) until any response arrives, then checks
// that the TCP listeners accept connections.
func (s *server) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	dst, err := net.ResolveUDPAddr("udp", s.UDP4)
	if err != nil {
		return err
	}
	var conn *net.UDPConn
	open := func() (err error) {
		conn, err = net.ListenUDP("udp", &net.UDPAddr{IP: dst.IP})
		return err
	}
	if s.ns != nil {
		err = s.ns.do(open)
	} else {
		err = open()
	}
	if err != nil {
		return err
	}
	defer conn.Close()
	buf := make([]byte, 65535)
	for answered := false; !answered; {
		if s.hasExited() {
			return fmt.Errorf("hlas exited before answering OPTIONS: %v", s.err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no response to OPTIONS over UDP to %s within %v", s.UDP4, timeout)
		}
		req := optionsRequest{Transport: "UDP", SentBy: conn.LocalAddr().String(), Target: s.UDP4, RPort: true}
		if _, err := conn.WriteToUDP(req.Bytes(), dst); err != nil {
			return err
		}
		conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		n, _, err := conn.ReadFromUDP(buf)
		answered = err == nil && n > 0
	}
	for _, addr := range []string{s.TCP4, s.TCP6} {
		if addr == "" {
			continue
		}
		for {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("TCP listener %s not accepting connections: %v", addr, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// hasExited reports whether the process has ended.
func (s *server) hasExited() bool {
	select {
	case <-s.exited:
		return true
	default:
		return false
	}
}

// assertRunning fails the test if the process has ended.
func (s *server) assertRunning(t *testing.T) {
	t.Helper()
	if s.hasExited() {
		t.Errorf("hlas (pid %d) is no longer running: %v", s.cmd.Process.Pid, s.err)
	}
}

// kill ends the process without checks; for servers that never got ready.
func (s *server) kill() {
	if !s.hasExited() {
		s.cmd.Process.Kill()
	}
	<-s.exited
}

// stop sends SIGTERM and requires a clean exit (status 0) within
// shutdownTimeout. A crash during the test, a data race report or a panic
// in the output fail the test too; a failing test shows the server output.
func (s *server) stop(t *testing.T) {
	t.Helper()
	pid := s.cmd.Process.Pid
	if s.hasExited() {
		t.Errorf("hlas (pid %d) exited before the end of the test: %v", pid, s.err)
	} else {
		if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Errorf("send SIGTERM to hlas (pid %d): %v", pid, err)
		}
		select {
		case <-s.exited:
			if s.err != nil {
				t.Errorf("hlas (pid %d) did not shut down cleanly after SIGTERM: %v", pid, s.err)
			}
		case <-time.After(shutdownTimeout):
			t.Errorf("hlas (pid %d) still running %v after SIGTERM; killing it", pid, shutdownTimeout)
			s.kill()
		}
	}
	out := s.output.String()
	if strings.Contains(out, "WARNING: DATA RACE") {
		t.Errorf("the race detector reported a data race in hlas")
	}
	if strings.Contains(out, "panic: ") || strings.Contains(out, "fatal error: ") {
		t.Errorf("hlas panicked")
	}
	if t.Failed() {
		t.Logf("hlas (pid %d) output:\n%s", pid, s.output.Tail(maxLoggedOutput))
	}
}

// outputBuffer collects a process's stdout and stderr; safe for concurrent
// use. Past limit bytes it keeps the beginning and drops the rest.
type outputBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	limit   int
	dropped int
}

func (b *outputBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	keep := min(len(p), max(b.limit-b.buf.Len(), 0))
	b.buf.Write(p[:keep])
	b.dropped += len(p) - keep
	// Report the whole write as done: a short write would make the
	// process's output copier fail and cmd.Wait return an error.
	return len(p), nil
}

// String returns everything collected so far.
func (b *outputBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.buf.String()
	if b.dropped > 0 {
		s += fmt.Sprintf("\n[... %d more bytes dropped]\n", b.dropped)
	}
	return s
}

// Tail returns at most n bytes from the end of the output.
func (b *outputBuffer) Tail(n int) string {
	s := b.String()
	if len(s) <= n {
		return s
	}
	return fmt.Sprintf("[... %d bytes omitted]\n%s", len(s)-n, s[len(s)-n:])
}

// ipv6Loopback reports whether ::1 can be bound; where it cannot, servers
// listen on IPv4 only and the IPv6 tests skip.
var ipv6Loopback = sync.OnceValue(func() bool {
	l, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		return false
	}
	l.Close()
	return true
})

// freePort finds a port on host that is free for both UDP and TCP. With
// low it stays in 7000-9999 (four digits, see serverConfig.lowPorts);
// otherwise the kernel picks from the ephemeral range.
func freePort(host string, low bool) (int, error) {
	for range 100 {
		port := 0
		if low {
			port = 7000 + rand.IntN(3000)
		} else {
			l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
			if err != nil {
				return 0, err
			}
			port = l.Addr().(*net.TCPAddr).Port
			l.Close()
		}
		if portFree(host, port) {
			return port, nil
		}
	}
	return 0, errors.New("no free port on " + host)
}

// freePorts returns n ports of 127.0.0.1 that are free for both UDP and
// TCP (freePort), or fails the test.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	ports := make([]int, n)
	for i := range ports {
		p, err := freePort("127.0.0.1", false)
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = p
	}
	return ports
}

// portFree reports whether port can be bound on host for TCP and UDP.
func portFree(host string, port int) bool {
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	defer l.Close()
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return false
	}
	pc.Close()
	return true
}

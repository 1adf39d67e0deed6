//go:build unix

package transport

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Environment of the idle memory test. memConnsEnv sets how many
// connections it opens (default below); the others are set by the test for
// its client process.
const (
	memConnsEnv  = "HLAS_STREAM_MEM_CONNS"
	memClientEnv = "HLAS_STREAM_MEM_CLIENT" // proto,addr,n
	memCAEnv     = "HLAS_STREAM_MEM_CA"     // base64 DER of the server certificate
)

// memPatience bounds the waits of the idle memory test, which dials
// thousands of connections; a guard against hangs, not a measurement.
const memPatience = 5 * time.Minute

// TestStreamIdleMemory measures what an idle stream connection costs the
// Manager: heap and stack in use, and goroutines, per connection, once
// each connection has carried one request and its response. The clients
// run in a child process so that only the server side is measured. Run it
// with HLAS_STREAM_MEM_CONNS=10000 and -v to see the figures at scale.
func TestStreamIdleMemory(t *testing.T) {
	if spec := os.Getenv(memClientEnv); spec != "" {
		memClient(spec)
		return
	}
	if testing.Short() {
		t.Skip("opens hundreds of connections")
	}
	nTCP, nTLS := 500, 200 // TLS handshakes are slow under the race detector
	if s := os.Getenv(memConnsEnv); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v <= 0 {
			t.Fatalf("%s=%q: want a positive number", memConnsEnv, s)
		}
		nTCP, nTLS = v, v
	}
	raiseFileLimit(t, max(nTCP, nTLS)+256)
	for _, tc := range []struct {
		proto string
		n     int
		bound uint64 // generous: a connection cost over 200 KiB when each had its own buffers
	}{
		{TCP, nTCP, 64 << 10},
		{TLS, nTLS, 128 << 10},
	} {
		t.Run(tc.proto, func(t *testing.T) { measureIdle(t, tc.proto, tc.n, tc.bound) })
	}
}

// measureIdle opens n idle connections to a Manager twice over, and
// reports what they cost and what is left once they have closed; the
// second round shows whether closed connections leak.
func measureIdle(t *testing.T, proto string, n int, bound uint64) {
	serverTLS, _ := testTLS(t)
	m := newManager(t, Config{MaxConns: n + 1, MaxConnsPerSource: n + 1, TLSConfig: serverTLS},
		HandlerFunc(func(p *Packet) { _ = p.Conn.Send([]byte("SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n")) }))
	addr := listen(t, m, proto, "127.0.0.1")
	ca := serverTLS.Certificates[0].Certificate[0]
	before, goBefore := inUse(), runtime.NumGoroutine()
	per := func(a, b uint64) uint64 { return (a - min(a, b)) / uint64(n) }
	var afterFirst memUse
	for round := 1; round <= 2; round++ {
		closeClients := startClients(t, proto, addr, n, ca)
		deadline := time.Now().Add(memPatience)
		for s := protoStats(m.Stats(), proto); s.ConnsOpen != int64(n) || s.PacketsOut != uint64(round*n); s = protoStats(m.Stats(), proto) {
			if time.Now().After(deadline) {
				t.Fatalf("stats %+v, want %d connections open and answered", s, n)
			}
			time.Sleep(10 * time.Millisecond)
		}
		// One reader each; the writers Send started end with their queues.
		waitFor(t, "one goroutine per idle connection", func() bool { return runtime.NumGoroutine() <= goBefore+n+16 })
		idle, goIdle := inUse(), runtime.NumGoroutine()
		perConn := per(idle.total(), before.total())
		t.Logf("%s round %d, %d idle connections: %d B heap+stack per connection (heap %d B, stack %d B), %.2f goroutines per connection, RSS %+d KiB",
			proto, round, n, perConn, per(idle.heap, before.heap), per(idle.stack, before.stack),
			float64(goIdle-goBefore)/float64(n), idle.rssKiB-before.rssKiB)
		if perConn > bound {
			t.Errorf("an idle %s connection costs %d bytes, want at most %d", proto, perConn, bound)
		}

		closeClients()
		waitFor(t, "the connections to close", func() bool { return protoStats(m.Stats(), proto).ConnsOpen == 0 })
		waitFor(t, "the connection goroutines to end", func() bool { return runtime.NumGoroutine() <= goBefore })
		m.mu.Lock()
		left := len(m.conns) + len(m.table) + len(m.perSource)
		m.mu.Unlock()
		if left != 0 {
			t.Errorf("%d connection table entries left after every connection closed", left)
		}
		after := inUse()
		retained := per(after.total(), before.total())
		t.Logf("%s round %d, after they closed: %d B heap+stack per former connection still in use (heap %d B, stack %d B), RSS %+d KiB",
			proto, round, retained, per(after.heap, before.heap), per(after.stack, before.stack), after.rssKiB-before.rssKiB)
		// What stays is the runtime's and the maps' high-water mark (dead
		// goroutines kept for reuse, map capacity): it must not grow with
		// each round of connections.
		if round == 1 {
			afterFirst = after
		} else if grown := per(after.heap, afterFirst.heap); grown > 512 {
			t.Errorf("heap in use grew by %d bytes per connection from one round of closed %s connections to the next", grown, proto)
		}
	}
}

// startClients starts the client process of TestStreamIdleMemory with n
// connections to addr and waits until they are set up; closeClients makes
// it close them and exit.
func startClients(t *testing.T, proto string, addr netip.AddrPort, n int, ca []byte) (closeClients func()) {
	t.Helper()
	child := exec.Command(os.Args[0], "-test.run=^TestStreamIdleMemory$")
	child.Env = append(os.Environ(),
		memClientEnv+"="+fmt.Sprintf("%s,%s,%d", proto, addr, n),
		memCAEnv+"="+base64.StdEncoding.EncodeToString(ca),
		// Under the race detector, exit without its default 1s pause.
		"GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	child.Stderr = os.Stderr
	stdin, err := child.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	closeClients = func() {
		stdin.Close()
		_ = child.Wait()
	}
	t.Cleanup(closeClients)
	ready := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		ready <- line
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case line := <-ready:
		if strings.TrimSpace(line) != "ready" {
			t.Fatalf("client process: %q", line)
		}
	case <-time.After(memPatience):
		t.Fatal("client process not ready")
	}
	return closeClients
}

// memUse is the memory the runtime reports in use.
type memUse struct {
	heap, stack uint64
	rssKiB      int64 // 0 where /proc is not available
}

func (u memUse) total() uint64 { return u.heap + u.stack }

// inUse collects garbage until idle goroutine stacks have shrunk (each
// cycle halves a stack that uses under a quarter of itself) and reports
// what is in use.
func inUse() memUse {
	for range 6 {
		runtime.GC()
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memUse{heap: ms.HeapInuse, stack: ms.StackInuse, rssKiB: rssKiB()}
}

// rssKiB returns the resident set size of this process, or 0.
func rssKiB() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kib, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kib
		}
	}
	return 0
}

// raiseFileLimit lifts the open file limit to at least n, or skips.
func raiseFileLimit(t *testing.T, n int) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Skipf("getrlimit: %v", err)
	}
	if lim.Cur >= uint64(n) {
		return
	}
	lim.Cur = uint64(n)
	lim.Max = max(lim.Max, lim.Cur)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Skipf("need %d open files: %v", n, err)
	}
}

// memClient is the child process of TestStreamIdleMemory: it opens n
// connections, sends a request on each and reads its response, says
// "ready", and holds them until its standard input closes.
func memClient(spec string) {
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "memory test client:", err)
		os.Exit(1)
	}
	parts := strings.Split(spec, ",")
	if len(parts) != 3 {
		fail(fmt.Errorf("bad spec %q", spec))
	}
	proto, addr := parts[0], parts[1]
	n, err := strconv.Atoi(parts[2])
	if err != nil {
		fail(err)
	}
	cfg := &tls.Config{RootCAs: x509.NewCertPool(), MinVersion: tls.VersionTLS12}
	if der, err := base64.StdEncoding.DecodeString(os.Getenv(memCAEnv)); err == nil {
		if cert, err := x509.ParseCertificate(der); err == nil {
			cfg.RootCAs.AddCert(cert)
		}
	}
	conns := make([]net.Conn, n)
	var (
		wg    sync.WaitGroup
		next  = make(chan int)
		errMu sync.Mutex
		first error
	)
	for range 8 {
		wg.Go(func() {
			for i := range next {
				c, err := memDial(proto, addr, cfg)
				if err != nil {
					errMu.Lock()
					if first == nil {
						first = err
					}
					errMu.Unlock()
					continue
				}
				conns[i] = c
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	if first != nil {
		fail(first)
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	for _, c := range conns {
		c.Close()
	}
	os.Exit(0)
}

// memDial opens one connection and completes one request on it. It
// returns the TCP connection, TLS or not.
func memDial(proto, addr string, cfg *tls.Config) (net.Conn, error) {
	d := &net.Dialer{Timeout: memPatience}
	var (
		c   net.Conn
		err error
	)
	if proto == TLS {
		c, err = (&tls.Dialer{NetDialer: d, Config: cfg}).Dial("tcp", addr)
	} else {
		c, err = d.Dial("tcp", addr)
	}
	if err != nil {
		return nil, err
	}
	// Closing resets the TCP connection: a FIN or a TLS close_notify
	// would keep the server's end writable for a grace period
	// (halfClosed), which only slows the test down.
	raw := c
	if tc, ok := c.(*tls.Conn); ok {
		raw = tc.NetConn()
	}
	_ = raw.(*net.TCPConn).SetLinger(0)
	_ = c.SetDeadline(time.Now().Add(memPatience))
	if _, err := c.Write([]byte(options0)); err != nil {
		raw.Close()
		return nil, err
	}
	if _, err := newFramer(c, DefaultMaxMessageSize).next(); err != nil {
		raw.Close()
		return nil, err
	}
	return raw, nil
}

package resolve

import (
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/resolve/resolvetest"
)

// startZones serves the zone files named, from testdata.
func startZones(t testing.TB, files ...string) *resolvetest.Server {
	t.Helper()
	var zone []byte
	for _, f := range files {
		b, err := os.ReadFile("testdata/" + f)
		if err != nil {
			t.Fatal(err)
		}
		zone = append(zone, b...)
	}
	return resolvetest.Start(t, string(zone))
}

// fakeClock is a clock that moves only when told.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// firstRand always picks the first candidate, so that SRV records of equal
// priority keep the order of the zone.
type firstRand struct{}

func (firstRand) IntN(int) int { return 0 }

// newResolver returns a resolver asking srv, with a fake clock and firstRand
// unless cfg sets them.
func newResolver(t testing.TB, srv *resolvetest.Server, cfg Config) (*Resolver, *fakeClock) {
	t.Helper()
	if cfg.Servers == nil {
		cfg.Servers = []string{srv.Addr}
	}
	clock := newFakeClock()
	if cfg.Clock == nil {
		cfg.Clock = clock
	}
	if cfg.Rand == nil {
		cfg.Rand = firstRand{}
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = time.Second
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r, clock
}

func mustURI(t testing.TB, s string) sip.URI {
	t.Helper()
	u, err := sip.ParseURI(s)
	if err != nil {
		t.Fatalf("ParseURI(%q): %v", s, err)
	}
	return u
}

// lines renders targets as "udp 192.0.2.10:5060" strings.
func lines(ts []Target) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.String()
	}
	return out
}

// deadUDP returns a loopback UDP address nothing listens on.
func deadUDP(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	return addr
}

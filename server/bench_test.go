package server

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hlas-voip/hlas/auth"
	"github.com/hlas-voip/hlas/sip/digest"
)

// These benchmarks run messages through the whole server in memory: parse
// (the transport reader's part), transaction layer, handler chain, and the
// encoding of the responses, which are handed to a recorder instead of a
// socket (Server.writeTo). Not measured: socket reads and writes, the
// queue hop to a worker, and the transport's copy of each datagram.

// realClock gives a memServer the server's own monotonic clock back, so
// that the cost of reading it is measured too. The benchmarks set
// MaxQueueDelay to an hour: a stall of the benchmark goroutine (a GC cycle
// on a small machine can take it for tens of milliseconds) must not turn
// an op into a 503.
func realClock(s *Server) { s.now = monotonicClock() }

// reportCPU starts measuring the process's CPU time; the function it
// returns reports it per op as cpu-ns/op (all goroutines: workers, the
// registrar's writer, SQLite, the garbage collector).
func reportCPU(b *testing.B) func() {
	start := cpuTime()
	return func() {
		if end := cpuTime(); end > 0 && b.N > 0 {
			b.ReportMetric(float64(end-start)/float64(b.N), "cpu-ns/op")
		}
	}
}

// BenchmarkOptions is the floor of the per-message cost: an OPTIONS to the
// server itself, answered 200 statelessly by localUAS.
func BenchmarkOptions(b *testing.B) {
	srv := newMemServer(b, Config{Domains: []string{"example.test"}, MaxQueueDelay: time.Hour})
	realClock(srv.Server)
	var ok, other atomic.Int64
	srv.writeTo = func(_ string, _, _ netip.AddrPort, m []byte) error {
		if bytes.HasPrefix(m, []byte("SIP/2.0 200 ")) {
			ok.Add(1)
		} else {
			other.Add(1)
		}
		return nil
	}
	client := netip.MustParseAddrPort("192.0.2.10:5060")
	// One datagram, processed again and again: the 200 is stateless, so
	// no transaction absorbs the next copy as a retransmission.
	msg := sipMessage("OPTIONS", "", "bench", "bench@test")
	b.ReportAllocs()
	done := reportCPU(b)
	for b.Loop() {
		srv.receive(msg, client, srv.now())
	}
	done()
	if ok.Load() != int64(b.N) || other.Load() != 0 {
		b.Fatalf("%d ops: %d answered 200, %d otherwise", b.N, ok.Load(), other.Load())
	}
}

// BenchmarkRegisterDigest measures one digest-authenticated registration:
// a REGISTER without credentials (401 with a fresh nonce, RFC 3261 §22.2),
// then the REGISTER answering the MD5 challenge with qop=auth (200 once
// the binding is committed to the store, §10.3). One op is that
// pair; the client's own work (writing the two requests, finding the
// nonce, two MD5 sums) is included and small.
//
// serial: one phone; every op waits for its own store commit, so ns/op is
// the latency of a registration. parallel: 8 phones per CPU register at
// once; the registrar batches their commits, so ns/op is the inverse of
// the throughput.
func BenchmarkRegisterDigest(b *testing.B) {
	b.Run("serial", func(b *testing.B) {
		bs := newBenchRegistrar(b, Config{}, 1)
		ph := bs.phones[0]
		b.ReportAllocs()
		b.ResetTimer()
		done := reportCPU(b)
		for range b.N {
			if err := ph.register(bs.srv); err != nil {
				b.Fatal(err)
			}
		}
		done()
	})
	b.Run("parallel", func(b *testing.B) {
		bs := newBenchRegistrar(b, Config{}, benchPhonesPerCPU*runtime.GOMAXPROCS(0))
		bs.runParallel(b, func(ph *benchPhone) error { return ph.register(bs.srv) })
	})
}

// BenchmarkRegisterOpen measures a registration refresh in an open domain
// (no authentication): a REGISTER answered 200 once its binding is
// committed, the workload of bench/compare.sh register. 8 phones per CPU
// register at once, as many as a loaded registrar sees; ns/op is the
// inverse of the throughput, cpu-ns/op includes the garbage collector's
// share, with the server transactions of every op still waiting out
// Timer J as they would under load.
func BenchmarkRegisterOpen(b *testing.B) {
	bs := newBenchRegistrar(b, Config{Auth: auth.Config{OpenDomains: []string{"*"}}}, benchPhonesPerCPU*runtime.GOMAXPROCS(0))
	bs.runParallel(b, func(ph *benchPhone) error {
		bs.srv.receive(ph.request(""), ph.src, bs.srv.now())
		if a := ph.final(); a.code != 200 {
			return fmt.Errorf("REGISTER: got %d, want 200", a.code)
		}
		return nil
	})
}

// benchPhonesPerCPU is how many phones register at once per CPU in the
// parallel benchmarks, as many as a loaded registrar sees.
const benchPhonesPerCPU = 8

// benchRegistrar is a memServer with subscribers and their phones; the
// recorder hands each phone its responses. phones and byAddr are filled
// before the first request and only read after.
type benchRegistrar struct {
	srv    *memServer
	phones []*benchPhone
	byAddr map[netip.AddrPort]*benchPhone
}

// benchPhone is one subscriber's UA: one source address, one Call-ID, a
// growing CSeq (RFC 3261 §10.2.4).
type benchPhone struct {
	user, ha1, callID string
	src               netip.AddrPort
	cseq              int
	answers           chan benchAnswer
	buf               []byte
}

type benchAnswer struct {
	code  int
	nonce string // of a 401
}

// newBenchRegistrar builds a memServer from cfg for the domain
// example.test with that many phones; each phone's user is a subscriber
// (password "secret") unless the domain is open.
func newBenchRegistrar(b *testing.B, cfg Config, phones int) *benchRegistrar {
	b.Helper()
	cfg.Domains, cfg.MaxQueueDelay = []string{"example.test"}, time.Hour
	srv := newMemServer(b, cfg)
	realClock(srv.Server)
	bs := &benchRegistrar{srv: srv, byAddr: map[netip.AddrPort]*benchPhone{}}
	srv.writeTo = bs.deliver
	for i := range phones {
		ph := &benchPhone{
			user: fmt.Sprintf("u%d", i), callID: fmt.Sprintf("bench-%d@test", i),
			src:     netip.AddrPortFrom(netip.MustParseAddr("192.0.2.10"), uint16(10000+i)),
			answers: make(chan benchAnswer, 4),
		}
		if len(cfg.Auth.OpenDomains) == 0 {
			u := auth.NewUser(ph.user, "example.test", "secret")
			if err := srv.store.AddUser(context.Background(), u); err != nil {
				b.Fatal(err)
			}
			ph.ha1 = u.HA1MD5
		}
		bs.phones = append(bs.phones, ph)
		bs.byAddr[ph.src] = ph
	}
	return bs
}

// runParallel runs op with benchPhonesPerCPU goroutines per CPU, each on a
// phone of its own, reporting allocations and CPU time per op.
func (bs *benchRegistrar) runParallel(b *testing.B, op func(*benchPhone) error) {
	var next atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(benchPhonesPerCPU)
	b.ResetTimer()
	defer reportCPU(b)()
	b.RunParallel(func(pb *testing.PB) {
		ph := bs.phones[next.Add(1)-1]
		for pb.Next() {
			if err := op(ph); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// deliver is the server's writeTo: the status code, and the nonce of a
// 401, go to the phone the response is for. It runs on the worker (401)
// or on the registrar's writer (200 after the commit).
func (bs *benchRegistrar) deliver(_ string, _, dst netip.AddrPort, m []byte) error {
	ph := bs.byAddr[dst]
	if ph == nil || len(m) < 12 {
		return nil
	}
	a := benchAnswer{code: int(m[8]-'0')*100 + int(m[9]-'0')*10 + int(m[10]-'0')}
	if a.code == 401 {
		// One nonce shared by the SHA-256 and MD5 challenges.
		if i := bytes.Index(m, []byte(`nonce="`)); i >= 0 {
			rest := m[i+len(`nonce="`):]
			if j := bytes.IndexByte(rest, '"'); j >= 0 {
				a.nonce = string(rest[:j])
			}
		}
	}
	ph.answers <- a
	return nil
}

// register sends a REGISTER, answers its 401 and waits for the 200.
func (ph *benchPhone) register(srv *memServer) error {
	srv.receive(ph.request(""), ph.src, srv.now())
	a := ph.final()
	if a.code != 401 || a.nonce == "" {
		return fmt.Errorf("REGISTER without credentials: got %d (nonce %q), want 401", a.code, a.nonce)
	}
	const uri, cnonce = "sip:example.test", "0a4f113b"
	cr := digest.Credentials{
		Scheme: "Digest", Username: ph.user, Realm: "example.test", Nonce: a.nonce, URI: uri,
		Algorithm: "MD5", QOP: "auth", NC: 1, CNonce: cnonce,
		Response: digest.Response(digest.MD5, ph.ha1, a.nonce, 1, cnonce, "auth", digest.HA2(digest.MD5, "auth", "REGISTER", uri, nil)),
	}
	srv.receive(ph.request(cr.String()), ph.src, srv.now())
	if a := ph.final(); a.code != 200 {
		return fmt.Errorf("REGISTER with credentials: got %d, want 200", a.code)
	}
	return nil
}

// final waits for the next final response.
func (ph *benchPhone) final() benchAnswer {
	for {
		if a := <-ph.answers; a.code >= 200 {
			return a
		}
	}
}

// request writes the next REGISTER, with an Authorization header when
// authz is not empty. Each gets a datagram of its own, as from the
// transport: the server keeps the message while the store commits.
func (ph *benchPhone) request(authz string) []byte {
	ph.cseq++
	seq := strconv.Itoa(ph.cseq)
	b := ph.buf[:0]
	b = append(b, "REGISTER sip:example.test SIP/2.0\r\nVia: SIP/2.0/UDP "...)
	b = append(b, ph.src.String()...)
	b = append(b, ";branch=z9hG4bK-"...)
	b = append(b, ph.callID...)
	b = append(b, '-')
	b = append(b, seq...)
	b = append(b, ";rport\r\nMax-Forwards: 70\r\nFrom: <sip:"...)
	b = append(b, ph.user...)
	b = append(b, "@example.test>;tag=f1\r\nTo: <sip:"...)
	b = append(b, ph.user...)
	b = append(b, "@example.test>\r\nCall-ID: "...)
	b = append(b, ph.callID...)
	b = append(b, "\r\nCSeq: "...)
	b = append(b, seq...)
	b = append(b, " REGISTER\r\nContact: <sip:"...)
	b = append(b, ph.user...)
	b = append(b, '@')
	b = append(b, ph.src.String()...)
	b = append(b, ">;expires=600\r\nUser-Agent: hlas-bench\r\n"...)
	if authz != "" {
		b = append(b, "Authorization: "...)
		b = append(b, authz...)
		b = append(b, "\r\n"...)
	}
	b = append(b, "Content-Length: 0\r\n\r\n"...)
	ph.buf = b
	return bytes.Clone(b)
}

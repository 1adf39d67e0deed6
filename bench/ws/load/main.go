// Command load measures what SIP over WebSocket (RFC 7118) costs a
// running hlas: it opens N WebSocket connections to a ws listener, as N
// browser phones would, registers user ws<i> on connection i (answering
// the digest challenge when given a password), waits until every one is
// registered, then refreshes the registrations round robin at a fixed
// rate for a fixed time. It reads the server's VmRSS and CPU time from
// /proc/PID, and its goroutines from the metrics endpoint when given one,
// before the connections, once they are all registered, and around the
// refreshes, and prints one RESULT line of key=value pairs: memory per
// connection, CPU per refresh, refresh latency.
//
// Bounded: N connections, at most -dialers handshakes at a time, the
// refreshes for -duration, every wait under -timeout. Loopback only:
// -addr must be a loopback address.
//
// usage: load -addr 127.0.0.1:25080 -pid PID [-metrics http://127.0.0.1:PORT] -n 5000 -rate 1000 -duration 30s [-password P]
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log"
	mrand "math/rand/v2"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"

	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/digest"
)

// userHZ is the unit of the CPU times in /proc/PID/stat (USER_HZ, 100 on
// every Linux architecture Go supports).
const userHZ = 100

type config struct {
	addr     netip.AddrPort
	domain   string
	password string
	expires  int
	timeout  time.Duration
}

func main() {
	addr := flag.String("addr", "127.0.0.1:25080", "hlas's ws listener (loopback)")
	pid := flag.Int("pid", 0, "hlas's process id (RSS and CPU from /proc)")
	metrics := flag.String("metrics", "", "hlas's metrics URL base, http://host:port (goroutines; with debug.pprof a GC before each memory reading)")
	n := flag.Int("n", 5000, "connections, one registered user each")
	domain := flag.String("domain", "example.test", "SIP domain of the users")
	password := flag.String("password", "", "password of every user ws<i> (digest authentication); empty for an open domain")
	rate := flag.Float64("rate", 1000, "refreshes per second after all are registered")
	duration := flag.Duration("duration", 30*time.Second, "how long to refresh")
	expires := flag.Int("expires", 3600, "Expires of the registrations")
	dialers := flag.Int("dialers", 32, "connections opened and registered at a time")
	workers := flag.Int("workers", 256, "refreshes in flight at most")
	timeout := flag.Duration("timeout", 10*time.Second, "bound of one handshake or transaction")
	flag.Parse()

	ap, err := netip.ParseAddrPort(*addr)
	if err != nil || !ap.Addr().IsLoopback() {
		log.Fatalf("load: -addr %q: want a loopback host:port", *addr)
	}
	if *n <= 0 || *rate <= 0 || *duration <= 0 || *dialers <= 0 || *workers <= 0 {
		log.Fatal("load: -n, -rate, -duration, -dialers and -workers must be positive")
	}
	if err := raiseFileLimit(uint64(*n) + 256); err != nil {
		log.Fatalf("load: %v", err)
	}
	cfg := config{addr: ap, domain: *domain, password: *password, expires: *expires, timeout: *timeout}
	srv := server{pid: *pid, metrics: strings.TrimSuffix(*metrics, "/")}

	before := srv.sample()
	t0 := time.Now()
	uas, err := connectAll(cfg, *n, *dialers)
	if err != nil {
		log.Fatalf("load: %v", err)
	}
	defer func() {
		for _, u := range uas {
			u.conn.CloseNow()
		}
	}()
	setup := time.Since(t0)
	registered := srv.sample()
	log.Printf("load: %d connections registered in %s", len(uas), setup.Round(time.Millisecond))

	c0 := tally(uas)
	st := refresh(uas, *rate, *duration, *workers, srv)
	after := srv.sample()

	c1 := tally(uas)
	perConn := func(a, b int64) float64 { return float64(b-a) / float64(len(uas)) }
	fmt.Printf("RESULT connections=%d setup=%s setup_rate=%.0f/s"+
		" rss_before=%dKiB rss_registered=%dKiB rss_after=%dKiB rss_per_conn=%.1fKiB"+
		" heap_per_conn=%s goroutines_before=%s goroutines_registered=%s goroutines_after=%s goroutines_per_conn=%s"+
		" setup_401=%d setup_503=%d refreshes=%d refresh_errors=%d refresh_401=%d refresh_503=%d achieved_rate=%.0f/s cpu_refresh=%.2fs cpu_per_refresh=%.1fus (%.0f%% of one core)"+
		" latency_p50=%s latency_p99=%s latency_max=%s bindings_registered=%s bindings_after=%s unexpected_messages=%d loader_cpu=%.1fs\n",
		len(uas), setup.Round(time.Millisecond), float64(len(uas))/setup.Seconds(),
		before.rssKiB, registered.rssKiB, after.rssKiB, perConn(before.rssKiB, registered.rssKiB),
		optKiB(before.heap, registered.heap, len(uas)),
		opt(before.goroutines), opt(registered.goroutines), opt(after.goroutines), optPer(before.goroutines, registered.goroutines, len(uas)),
		c0.challenges, c0.shed, st.ok, st.failed, c1.challenges-c0.challenges, c1.shed-c0.shed, float64(st.ok)/st.elapsed.Seconds(),
		float64(st.cpuTicks)/userHZ, 1e6*float64(st.cpuTicks)/userHZ/float64(max(st.ok, 1)), 100*float64(st.cpuTicks)/userHZ/st.elapsed.Seconds(),
		st.p(0.50), st.p(0.99), st.p(1), opt(registered.bindings), opt(after.bindings), c1.unexpected, selfCPU())
	if st.failed > 0 || c1.unexpected > 0 {
		os.Exit(1)
	}
}

// raiseFileLimit lifts the soft RLIMIT_NOFILE to at least want, within
// the hard limit (Go raises it to the hard limit already; this only
// fails early and clearly when that is too low).
func raiseFileLimit(want uint64) error {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return err
	}
	if rl.Cur >= want {
		return nil
	}
	if rl.Max < want {
		return fmt.Errorf("open file limit %d is below the %d needed (ulimit -Hn)", rl.Max, want)
	}
	rl.Cur = want
	return syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
}

// ua is one browser phone: a WebSocket connection and its registration.
type ua struct {
	cfg    *config
	conn   *websocket.Conn
	user   string
	host   string // the made-up .invalid host of Via and Contact (RFC 7118 §5)
	callID string
	tag    string
	cseq   int
	ch     *digest.Challenge // the last challenge, answered again with nc+1
	nc     uint32

	responses  chan *sip.Response // final responses, from the reader
	unexpected atomic.Uint64      // requests, or responses nobody waits for
	shed       atomic.Uint64      // 503s answered by trying again
	challenges atomic.Uint64      // 401s answered
	busy       atomic.Bool        // a refresh is in flight
}

func connectAll(cfg config, n, dialers int) ([]*ua, error) {
	uas := make([]*ua, n)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: -1}}
	var (
		next    atomic.Int64
		errOnce sync.Once
		first   error
		wg      sync.WaitGroup
	)
	for range dialers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				u, err := connect(&cfg, client, i+1)
				if err == nil {
					err = u.register()
				}
				if err != nil {
					errOnce.Do(func() { first = fmt.Errorf("user ws%d: %w", i+1, err) })
					next.Store(int64(n)) // stop the others
					return
				}
				uas[i] = u
			}
		})
	}
	wg.Wait()
	if first != nil {
		for _, u := range uas {
			if u != nil {
				u.conn.CloseNow()
			}
		}
		return nil, first
	}
	return uas, nil
}

func connect(cfg *config, client *http.Client, i int) (*ua, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cfg.timeout)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "ws://"+cfg.addr.String()+"/", &websocket.DialOptions{
		HTTPClient:   client,
		Subprotocols: []string{"sip"},
	})
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		return nil, err
	}
	if c.Subprotocol() != "sip" {
		c.CloseNow()
		return nil, fmt.Errorf("subprotocol %q negotiated, want sip", c.Subprotocol())
	}
	u := &ua{
		cfg: cfg, conn: c, user: "ws" + strconv.Itoa(i),
		host: token(6) + ".invalid", callID: token(12), tag: token(6),
		responses: make(chan *sip.Response, 1),
	}
	go u.read()
	return u, nil
}

// read hands final responses to the transaction waiting for them, and
// keeps reading (which answers the server's pings) until the connection
// closes.
func (u *ua) read() {
	defer close(u.responses)
	for {
		_, b, err := u.conn.Read(context.Background())
		if err != nil {
			return
		}
		msg, err := sip.Parse(b)
		res, ok := msg.(*sip.Response)
		if err != nil || !ok {
			u.unexpected.Add(1)
			continue
		}
		if res.StatusCode < 200 {
			continue
		}
		select {
		case u.responses <- res:
		default:
			u.unexpected.Add(1)
		}
	}
}

// maxRetries bounds the 503s one registration goes through.
const maxRetries = 5

// register sends a REGISTER, answers a challenge once, waits for 200,
// and tries again after a 503 (the server shedding load) as a phone
// would, after Retry-After but at most a second.
func (u *ua) register() error {
	challenged, retries := false, 0
	for {
		res, err := u.transaction()
		if err != nil {
			return err
		}
		switch {
		case res.StatusCode == 200:
			return nil
		case res.StatusCode == 401 && !challenged && u.cfg.password != "":
			if u.ch, err = pickChallenge(res); err != nil {
				return err
			}
			u.nc = 0
			challenged = true
			u.challenges.Add(1)
		case res.StatusCode == 503 && retries < maxRetries:
			retries++
			u.shed.Add(1)
			wait := time.Second
			if s, err := strconv.Atoi(strings.TrimSpace(res.Get("Retry-After"))); err == nil && s >= 0 && time.Duration(s)*time.Second < wait {
				wait = time.Duration(s) * time.Second
			}
			time.Sleep(wait/2 + time.Duration(mrand.Int64N(int64(wait/2)+1)))
		default:
			return fmt.Errorf("REGISTER answered %d %s", res.StatusCode, res.Reason)
		}
	}
}

// transaction sends one REGISTER and waits for its final response.
func (u *ua) transaction() (*sip.Response, error) {
	u.cseq++
	uri := "sip:" + u.cfg.domain
	var b strings.Builder
	fmt.Fprintf(&b, "REGISTER %s SIP/2.0\r\n", uri)
	fmt.Fprintf(&b, "Via: SIP/2.0/WS %s;branch=z9hG4bK%s;rport\r\n", u.host, token(8))
	b.WriteString("Max-Forwards: 70\r\n")
	fmt.Fprintf(&b, "To: <sip:%s@%s>\r\n", u.user, u.cfg.domain)
	fmt.Fprintf(&b, "From: <sip:%s@%s>;tag=%s\r\n", u.user, u.cfg.domain, u.tag)
	fmt.Fprintf(&b, "Call-ID: %s\r\n", u.callID)
	fmt.Fprintf(&b, "CSeq: %d REGISTER\r\n", u.cseq)
	fmt.Fprintf(&b, "Contact: <sip:%s@%s;transport=ws>;expires=%d\r\n", u.user, u.host, u.cfg.expires)
	fmt.Fprintf(&b, "Expires: %d\r\n", u.cfg.expires)
	if u.ch != nil {
		u.nc++
		cr, err := u.ch.Authorize(digest.Answer{
			Method: "REGISTER", URI: uri, Username: u.user, Password: u.cfg.password,
			NC: u.nc, CNonce: token(8),
		})
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(&b, "Authorization: %s\r\n", cr)
	}
	b.WriteString("User-Agent: hlas-ws-load\r\nContent-Length: 0\r\n\r\n")

	ctx, cancel := context.WithTimeout(context.Background(), u.cfg.timeout)
	defer cancel()
	if err := u.conn.Write(ctx, websocket.MessageText, []byte(b.String())); err != nil {
		return nil, err
	}
	for {
		select {
		case res, ok := <-u.responses:
			if !ok {
				return nil, errors.New("connection closed")
			}
			if res.CSeq.Seq != uint32(u.cseq) {
				u.unexpected.Add(1)
				continue
			}
			return res, nil
		case <-ctx.Done():
			return nil, fmt.Errorf("no response to CSeq %d: %w", u.cseq, ctx.Err())
		}
	}
}

// pickChallenge takes the first digest challenge this client can answer
// (the server lists its preferred algorithm first).
func pickChallenge(res *sip.Response) (*digest.Challenge, error) {
	for _, v := range res.All("WWW-Authenticate") {
		ch, err := digest.ParseChallenge(v)
		if err != nil {
			continue
		}
		if _, err := digest.ParseAlgorithm(ch.Algorithm); err == nil {
			return ch, nil
		}
	}
	return nil, errors.New("401 without a usable digest challenge")
}

func token(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// counts are the clients' counters summed.
type counts struct{ unexpected, shed, challenges uint64 }

func tally(uas []*ua) counts {
	var c counts
	for _, u := range uas {
		c.unexpected += u.unexpected.Load()
		c.shed += u.shed.Load()
		c.challenges += u.challenges.Load()
	}
	return c
}

// refreshStats is what the refresh phase measured.
type refreshStats struct {
	ok, failed uint64
	elapsed    time.Duration
	cpuTicks   int64
	latencies  []time.Duration // sorted
}

// p returns the q-quantile of the latencies.
func (s refreshStats) p(q float64) time.Duration {
	if len(s.latencies) == 0 {
		return 0
	}
	i := min(int(q*float64(len(s.latencies))), len(s.latencies)-1)
	return s.latencies[i].Round(time.Microsecond)
}

// refresh re-registers the users round robin at rate per second for d,
// with at most workers transactions in flight.
func refresh(uas []*ua, rate float64, d time.Duration, workers int, srv server) refreshStats {
	jobs := make(chan *ua, workers)
	var (
		ok, failed atomic.Uint64
		mu         sync.Mutex
		lat        = make([]time.Duration, 0, int(rate*d.Seconds())+1)
		wg         sync.WaitGroup
		firstErr   sync.Once
	)
	for range workers {
		wg.Go(func() {
			for u := range jobs {
				start := time.Now()
				err := u.register()
				took := time.Since(start)
				u.busy.Store(false)
				if err != nil {
					failed.Add(1)
					firstErr.Do(func() { log.Printf("load: refresh of %s: %v", u.user, err) })
					continue
				}
				ok.Add(1)
				mu.Lock()
				lat = append(lat, took)
				mu.Unlock()
			}
		})
	}
	cpu0 := srv.cpuTicks()
	start := time.Now()
	interval := time.Duration(float64(time.Second) / rate)
	next := 0
	for i := 0; ; i++ {
		due := start.Add(time.Duration(i) * interval)
		if due.Sub(start) >= d {
			break
		}
		if wait := time.Until(due); wait > 0 {
			time.Sleep(wait)
		}
		u := uas[next%len(uas)]
		next++
		if !u.busy.CompareAndSwap(false, true) {
			failed.Add(1) // still waiting for its previous refresh
			continue
		}
		jobs <- u
	}
	close(jobs)
	wg.Wait()
	elapsed := time.Since(start)
	cpu1 := srv.cpuTicks()
	slices.Sort(lat)
	return refreshStats{ok: ok.Load(), failed: failed.Load(), elapsed: elapsed, cpuTicks: cpu1 - cpu0, latencies: lat}
}

// server reads the figures of the hlas process.
type server struct {
	pid     int
	metrics string
}

// sample is one reading; -1 where unknown.
type sample struct {
	rssKiB     int64
	goroutines int64
	heap       int64 // heap in use plus stacks, bytes
	bindings   int64 // in the registrar's location service
}

func (s server) sample() sample {
	if s.metrics != "" {
		// With debug.pprof on, this runs a garbage collection first, so
		// that the readings are of live memory.
		if resp, err := http.Get(s.metrics + "/debug/pprof/heap?gc=1"); err == nil {
			resp.Body.Close()
		}
	}
	m := s.scrape("go_goroutines", "go_memstats_heap_inuse_bytes", "go_memstats_stack_inuse_bytes", "hlas_registrar_bindings")
	heap := int64(-1)
	if m[1] >= 0 && m[2] >= 0 {
		heap = m[1] + m[2]
	}
	return sample{rssKiB: s.rss(), goroutines: m[0], heap: heap, bindings: m[3]}
}

// scrape reads gauges from the metrics endpoint; -1 for each one missing.
func (s server) scrape(names ...string) []int64 {
	out := make([]int64, len(names))
	for i := range out {
		out[i] = -1
	}
	if s.metrics == "" {
		return out
	}
	resp, err := http.Get(s.metrics + "/metrics")
	if err != nil {
		log.Printf("load: metrics: %v", err)
		return out
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		if i := slices.Index(names, name); i >= 0 {
			if v, err := strconv.ParseFloat(value, 64); err == nil {
				out[i] = int64(v)
			}
		}
	}
	return out
}

func (s server) rss() int64 {
	if s.pid <= 0 {
		return -1
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.pid))
	if err != nil {
		log.Fatalf("load: %v", err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kib, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kib
		}
	}
	return -1
}

// cpuTicks is utime+stime of the server, in USER_HZ ticks.
func (s server) cpuTicks() int64 {
	if s.pid <= 0 {
		return 0
	}
	return statTicks(fmt.Sprintf("/proc/%d/stat", s.pid))
}

func statTicks(path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		log.Fatalf("load: %v", err)
	}
	// Fields after the command name, which is in parentheses and may
	// hold spaces: state is field 3, utime 14, stime 15.
	_, rest, _ := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	if len(f) < 13 {
		log.Fatalf("load: %s: too few fields", path)
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return ut + st
}

func selfCPU() float64 { return float64(statTicks("/proc/self/stat")) / userHZ }

func opt(v int64) string {
	if v < 0 {
		return "?"
	}
	return strconv.FormatInt(v, 10)
}

func optPer(a, b int64, n int) string {
	if a < 0 || b < 0 {
		return "?"
	}
	return fmt.Sprintf("%.2f", float64(b-a)/float64(n))
}

func optKiB(a, b int64, n int) string {
	if a < 0 || b < 0 {
		return "?"
	}
	return fmt.Sprintf("%.1fKiB", float64(b-a)/1024/float64(n))
}

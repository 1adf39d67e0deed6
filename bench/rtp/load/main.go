// Command load drives a media relay (hlas's relayd or rtpengine) with N
// G.711 calls over NG and measures it: it sets the calls up through the
// relay's NG control socket (media/rtpengine's client, so both relays
// are driven alike), then every party sends 50 packets a second of
// 172-byte RTP (12-byte header, 160 bytes of 20 ms PCMU) to its relay
// port for the run, and counts what arrives at the other party. It reads
// the relay's CPU time (utime+stime) and VmRSS from /proc and prints one
// RESULT line of key=value pairs.
//
// The driver stays small: a few sender goroutines pace all sockets with a
// 1 ms slot wheel (each socket sends in one of 20 slots), a few receiver
// goroutines each own an epoll set. Its own CPU and the senders' worst
// lag are printed so that a saturated driver is seen.
//
// usage: load -ng 127.0.0.1:2223 -pid PID -calls 1000 -duration 20s
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hlas-voip/hlas/media"
	"github.com/hlas-voip/hlas/media/rtpengine"
)

const (
	pktSize = 172 // 12-byte RTP header + 160 bytes of PCMU (20 ms at 8 kHz)
	slots   = 20  // 1 ms slots in the 20 ms packet period
)

// party is one end of a call: a connected UDP socket on 127.0.0.1.
type party struct {
	fd   int
	port int
}

// tx is a socket's sender state (owned by one sender goroutine).
type tx struct {
	fd        int
	seq       uint16
	ts, ssrc  uint32
	sent, err uint64
}

// rx is a socket's receiver state (owned by one receiver goroutine).
type rx struct {
	fd       int
	recv     uint64
	ooo      uint64 // sequence number not above the highest seen
	highest  uint16
	any      bool
	wrongLen uint64
}

func main() {
	ng := flag.String("ng", "127.0.0.1:2223", "relay's NG control address")
	pid := flag.Int("pid", 0, "relay's process id (CPU and RSS from /proc)")
	calls := flag.Int("calls", 500, "concurrent calls (2 streams, 2 sockets each)")
	duration := flag.Duration("duration", 20*time.Second, "measured time")
	warmup := flag.Duration("warmup", 3*time.Second, "media before the measured time")
	drain := flag.Duration("drain", time.Second, "wait for stragglers after the senders stop")
	senders := flag.Int("senders", runtime.GOMAXPROCS(0), "sender goroutines")
	receivers := flag.Int("receivers", runtime.GOMAXPROCS(0), "receiver goroutines (epoll sets)")
	rxPause := flag.Duration("rxpause", time.Millisecond, "receivers' pause between epoll passes (batches reads)")
	label := flag.String("label", "relay", "name printed in the RESULT line")
	flag.Parse()
	if *pid <= 0 {
		log.Fatal("load: -pid is required")
	}
	rssBase := rssKB(*pid)

	cl, err := rtpengine.New(rtpengine.Config{Address: *ng, Timeout: 2 * time.Second, MaxPending: 64})
	if err != nil {
		log.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	if err := cl.Ping(ctx); err != nil {
		log.Fatalf("load: ping %s: %v", *ng, err)
	}

	n := *calls
	parties := make([]party, 2*n) // 2i: caller of call i, 2i+1: callee
	for i := range parties {
		if parties[i], err = socket(); err != nil {
			log.Fatalf("load: socket %d: %v", i, err)
		}
	}
	runID := strconv.FormatInt(time.Now().UnixNano(), 36)
	t0 := time.Now()
	if err := setup(ctx, cl, parties, runID); err != nil {
		log.Fatalf("load: setup: %v", err)
	}
	setupTime := time.Since(t0)
	rssCalls := rssKB(*pid)

	txs := make([]tx, len(parties))
	rxs := make([]rx, len(parties))
	for i, p := range parties {
		txs[i] = tx{fd: p.fd, ssrc: uint32(i + 1), ts: uint32(i) * 1000, seq: uint16(i * 7)}
		rxs[i] = rx{fd: p.fd}
	}
	start := time.Now()
	var stopTx, stopRx atomic.Bool
	var wgTx, wgRx sync.WaitGroup
	lags := make([]time.Duration, *senders)
	for s := range *senders {
		wgTx.Add(1)
		go func() { defer wgTx.Done(); lags[s] = send(txs, s, *senders, start, &stopTx) }()
	}
	recvd := make([]atomic.Uint64, *receivers)
	lateH := make([][6]uint64, *receivers)
	for r := range *receivers {
		wgRx.Add(1)
		go func() {
			defer wgRx.Done()
			if err := receive(rxs, r, *receivers, start, *rxPause, &stopRx, &recvd[r], &lateH[r]); err != nil {
				log.Fatal(err)
			}
		}()
	}
	sum := func() (s uint64) {
		for i := range recvd {
			s += recvd[i].Load()
		}
		return s
	}
	time.Sleep(*warmup)
	w0, r0, c0, d0 := time.Now(), sum(), cpuTicks(*pid), cpuTicks(os.Getpid())
	time.Sleep(*duration)
	w1, r1, c1, d1 := time.Now(), sum(), cpuTicks(*pid), cpuTicks(os.Getpid())
	rss := rssKB(*pid)
	stopTx.Store(true)
	wgTx.Wait()
	time.Sleep(*drain)
	stopRx.Store(true)
	wgRx.Wait()

	var sent, sendErr, got, ooo uint64
	for i := range txs {
		sent += txs[i].sent
		sendErr += txs[i].err
		got += rxs[i].recv
		ooo += rxs[i].ooo
	}
	var late [6]uint64 // late[i]: packets delayed at least bound i-1 (cumulative)
	for _, h := range lateH {
		for i := range late {
			for b := i; b < len(h); b++ {
				late[i] += h[b]
			}
		}
	}
	var maxLag time.Duration
	for _, l := range lags {
		maxLag = max(maxLag, l)
	}
	teardown(cl, n, runID)

	wall := w1.Sub(w0).Seconds()
	fwd := r1 - r0
	const tick = 100.0 // CLK_TCK
	relayCPU := float64(c1-c0) / tick
	driverCPU := float64(d1-d0) / tick
	lost := int64(sent) - int64(got)
	streams := 2 * n
	fmt.Printf("RESULT relay=%s calls=%d streams=%d sent=%d recv=%d lost=%d loss_pct=%.4f send_err=%d ooo=%d "+
		"delay_ge1ms=%d delay_ge5ms=%d delay_ge10ms=%d delay_ge20ms=%d delay_ge50ms=%d "+
		"pps=%.0f relay_cpu_pct=%.1f relay_us_per_pkt=%.3f rss_kb=%d rss_base_kb=%d rss_calls_kb=%d rss_per_stream_kb=%.2f "+
		"driver_cpu_pct=%.1f sender_max_lag_ms=%.2f setup_s=%.2f\n",
		*label, n, streams, sent, got, lost, 100*float64(lost)/float64(max(sent, 1)), sendErr, ooo,
		late[1], late[2], late[3], late[4], late[5],
		float64(fwd)/wall, 100*relayCPU/wall, 1e6*relayCPU/float64(max(fwd, 1)),
		rss, rssBase, rssCalls, float64(rss-rssBase)/float64(streams),
		100*driverCPU/wall, float64(maxLag)/1e6, setupTime.Seconds())
}

// socket opens a non-blocking UDP socket on 127.0.0.1 (ephemeral port).
func socket() (party, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return party{}, err
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		unix.Close(fd)
		return party{}, err
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		unix.Close(fd)
		return party{}, err
	}
	return party{fd: fd, port: sa.(*unix.SockaddrInet4).Port}, nil
}

func sdp(port int) []byte {
	return fmt.Appendf(nil, "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"+
		"m=audio %d RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n", port)
}

// mediaPort is the port of the first m= line of an SDP body.
func mediaPort(body []byte) (int, error) {
	for line := range strings.SplitSeq(string(body), "\n") {
		if rest, ok := strings.CutPrefix(line, "m=audio "); ok {
			f, _, _ := strings.Cut(rest, " ")
			return strconv.Atoi(f)
		}
	}
	return 0, errors.New("no m=audio line")
}

// setup makes every call through NG (a few at a time) and connects each
// party's socket to the relay port it must send to.
func setup(ctx context.Context, cl *rtpengine.Client, parties []party, runID string) error {
	lo := netip.MustParseAddr("127.0.0.1")
	n := len(parties) / 2
	var next atomic.Int64
	errs := make(chan error, 16)
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				a, b := parties[2*i], parties[2*i+1]
				id, ta, tb := runID+"-"+strconv.Itoa(i), "a"+strconv.Itoa(i), "b"+strconv.Itoa(i)
				off, err := cl.Offer(ctx, &media.Request{CallID: id, FromTag: ta, SDP: sdp(a.port), Source: lo, Local: lo, Advertise: lo})
				if err != nil {
					errs <- fmt.Errorf("offer %d: %w", i, err)
					return
				}
				ans, err := cl.Answer(ctx, &media.Request{CallID: id, FromTag: tb, ToTag: ta, SDP: sdp(b.port), Source: lo, Local: lo, Advertise: lo})
				if err != nil {
					errs <- fmt.Errorf("answer %d: %w", i, err)
					return
				}
				pb, err1 := mediaPort(off) // the callee sends here
				pa, err2 := mediaPort(ans) // the caller sends here
				if err := errors.Join(err1, err2); err != nil {
					errs <- fmt.Errorf("call %d: %w", i, err)
					return
				}
				err1 = unix.Connect(a.fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: pa})
				err2 = unix.Connect(b.fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: pb})
				if err := errors.Join(err1, err2); err != nil {
					errs <- fmt.Errorf("connect %d: %w", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// teardown deletes the calls (best effort: the relay is stopped next).
func teardown(cl *rtpengine.Client, n int, runID string) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				cl.Delete(ctx, runID+"-"+strconv.Itoa(i))
				cancel()
			}
		}()
	}
	wg.Wait()
}

// send paces the sockets s, s+k, s+2k, ... (k senders): socket j sends
// in 1 ms slot (j/k)%20 of each 20 ms period. It returns the worst lag
// behind the schedule: a driver that keeps up lags well under 1 ms.
func send(txs []tx, s, k int, start time.Time, stop *atomic.Bool) (worst time.Duration) {
	var bySlot [slots][]int
	for j := s; j < len(txs); j += k {
		bySlot[(j/k)%slots] = append(bySlot[(j/k)%slots], j)
	}
	pkt := make([]byte, pktSize)
	for i := 12; i < pktSize; i++ {
		pkt[i] = 0xff // PCMU silence
	}
	pkt[0] = 0x80 // V=2, PT 0 (PCMU)
	for tick := 0; !stop.Load(); tick++ {
		due := start.Add(time.Duration(tick) * time.Millisecond)
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		} else {
			worst = max(worst, -d)
		}
		for _, j := range bySlot[tick%slots] {
			t := &txs[j]
			t.seq++
			t.ts += 160
			pkt[2], pkt[3] = byte(t.seq>>8), byte(t.seq)
			pkt[4], pkt[5], pkt[6], pkt[7] = byte(t.ts>>24), byte(t.ts>>16), byte(t.ts>>8), byte(t.ts)
			pkt[8], pkt[9], pkt[10], pkt[11] = byte(t.ssrc>>24), byte(t.ssrc>>16), byte(t.ssrc>>8), byte(t.ssrc)
			now := uint64(time.Since(start))
			for b := range 8 {
				pkt[12+b] = byte(now >> (56 - 8*b))
			}
			if _, err := unix.Write(t.fd, pkt); err != nil {
				t.err++
				continue
			}
			t.sent++
		}
	}
	return worst
}

// receive reads the sockets r, r+k, ... through one epoll set until stop,
// counting packets, reordering and the delay since sending in buckets
// (≥1, 5, 10, 20, 50 ms).
func receive(rxs []rx, r, k int, start time.Time, pause time.Duration, stop *atomic.Bool, total *atomic.Uint64, late *[6]uint64) error {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return err
	}
	defer unix.Close(ep)
	for j := r; j < len(rxs); j += k {
		ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(j)}
		if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, rxs[j].fd, &ev); err != nil {
			return err
		}
	}
	events := make([]unix.EpollEvent, 1024)
	buf := make([]byte, 2048)
	bounds := [5]uint64{1e6, 5e6, 10e6, 20e6, 50e6}
	for !stop.Load() {
		n, err := unix.EpollWait(ep, events, 100)
		if err != nil && err != unix.EINTR {
			return err
		}
		var got uint64
		for _, ev := range events[:max(n, 0)] {
			x := &rxs[ev.Fd]
			for {
				m, err := unix.Read(x.fd, buf)
				if err != nil {
					break
				}
				if m != pktSize {
					x.wrongLen++
					continue
				}
				got++
				x.recv++
				seq := uint16(buf[2])<<8 | uint16(buf[3])
				if x.any && int16(seq-x.highest) <= 0 {
					x.ooo++
				} else {
					x.highest, x.any = seq, true
				}
				var sentAt uint64
				for b := range 8 {
					sentAt = sentAt<<8 | uint64(buf[12+b])
				}
				d := uint64(time.Since(start)) - sentAt
				h := 0
				for h < len(bounds) && d >= bounds[h] {
					h++
				}
				late[h]++
			}
		}
		total.Add(got)
		if n < len(events) && pause > 0 {
			time.Sleep(pause)
		}
	}
	return nil
}

// cpuTicks is a process's utime+stime in clock ticks (all its threads).
func cpuTicks(pid int) uint64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		log.Fatalf("load: %v", err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	return ut + st
}

// rssKB is a process's VmRSS in kB.
func rssKB(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		log.Fatalf("load: %v", err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			v, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return v
		}
	}
	return 0
}

// Command relayd runs hlas's built-in media relay (media/relay) in a
// process of its own, controlled over UDP with rtpengine's NG protocol
// (ping, offer, answer, delete), so that the load driver of bench/rtp
// drives it and rtpengine the same way. A benchmark harness only: it is
// not part of the hlas binary.
//
// usage: relayd -ng 127.0.0.1:2224 -ports 30000-39999 [-kernel auto|on|off] [-cpuprofile FILE]
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hlas-voip/hlas/internal/bencode"
	"github.com/hlas-voip/hlas/media"
	"github.com/hlas-voip/hlas/media/plane"
	"github.com/hlas-voip/hlas/media/relay"
)

func main() {
	ng := flag.String("ng", "127.0.0.1:2224", "NG control address (UDP)")
	ports := flag.String("ports", "30000-39999", "relay port range min-max")
	readers := flag.Int("readers", 0, "plane reader goroutines (0: GOMAXPROCS)")
	iface := flag.String("interface", "127.0.0.1", "address the relay binds and advertises")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile here, from start to SIGTERM")
	kernel := flag.String("kernel", plane.KernelAuto, "the plane's kernel path: auto, on or off")
	flag.Parse()
	lo, hi, ok := strings.Cut(*ports, "-")
	pmin, err1 := strconv.Atoi(lo)
	pmax, err2 := strconv.Atoi(hi)
	if !ok || err1 != nil || err2 != nil {
		log.Fatalf("relayd: -ports %q: want MIN-MAX", *ports)
	}
	addr, err := netip.ParseAddr(*iface)
	if err != nil {
		log.Fatalf("relayd: -interface: %v", err)
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	r, err := relay.New(relay.Config{
		Plane:      plane.Config{PortMin: pmin, PortMax: pmax, Readers: *readers, Kernel: *kernel},
		Interfaces: []relay.Interface{{Bind: addr}},
	})
	if err != nil {
		log.Fatalf("relayd: %v", err)
	}
	defer r.Close()
	conn, err := net.ListenPacket("udp", *ng)
	if err != nil {
		log.Fatalf("relayd: %v", err)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() { <-sig; conn.Close() }()
	fmt.Fprintf(os.Stderr, "relayd: ready, NG on %s, ports %d-%d, kernel path %v\n", conn.LocalAddr(), pmin, pmax, r.Kernel())
	serve(conn, r, addr)
}

// serve answers NG commands one at a time until conn is closed.
func serve(conn net.PacketConn, r *relay.Relay, addr netip.Addr) {
	buf := make([]byte, 65536)
	for {
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			return
		}
		cookie, doc, ok := bytes.Cut(buf[:n], []byte(" "))
		if !ok {
			continue
		}
		out := append(append([]byte(nil), cookie...), ' ')
		out, err = bencode.Append(out, handle(r, addr, doc))
		if err != nil { // the replies are strings and dictionaries only
			log.Printf("relayd: encoding a reply: %v", err)
			continue
		}
		conn.WriteTo(out, from)
	}
}

// handle executes one NG document and returns the reply dictionary.
func handle(r *relay.Relay, addr netip.Addr, doc []byte) map[string]any {
	v, err := bencode.Decode(doc)
	d, ok := v.(map[string]any)
	if err != nil || !ok {
		return fail("malformed request")
	}
	str := func(k string) string { s, _ := d[k].(string); return s }
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	req := &media.Request{CallID: str("call-id"), FromTag: str("from-tag"), ToTag: str("to-tag"),
		SDP: []byte(str("sdp")), Source: addr, Local: addr, Advertise: addr}
	switch str("command") {
	case "ping":
		return map[string]any{"result": "pong"}
	case "offer", "answer":
		var body []byte
		if str("command") == "offer" {
			body, err = r.Offer(ctx, req)
		} else {
			// NG names an answer's parties by the dialog: from-tag is
			// the offerer's, to-tag the answerer's (the sender).
			req.FromTag, req.ToTag = req.ToTag, req.FromTag
			body, err = r.Answer(ctx, req)
		}
		if err != nil {
			return fail(err.Error())
		}
		return map[string]any{"result": "ok", "sdp": body}
	case "delete":
		if _, err := r.Delete(ctx, req.CallID); err != nil {
			return fail(err.Error())
		}
		return map[string]any{"result": "ok"}
	default:
		return fail("unknown command")
	}
}

func fail(reason string) map[string]any {
	return map[string]any{"result": "error", "error-reason": reason}
}

package rtpengine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/hlas-voip/hlas/internal/bencode"
	"github.com/hlas-voip/hlas/media"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// datagram is one request the fake server received.
type datagram struct {
	raw    []byte
	cookie string
	req    map[string]any // nil when the document did not decode
}

// fakeNG is an NG server on loopback. For each request, handle returns
// the documents to send back, each after the request's cookie unless it
// starts with "!" (then it is sent as it is, after the "!").
type fakeNG struct {
	conn   *net.UDPConn
	handle func(n int, d datagram) []string
	got    chan datagram
	mu     sync.Mutex
	all    []datagram
	done   chan struct{}
}

func newFakeNG(t *testing.T, handle func(n int, d datagram) []string) *fakeNG {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeNG{conn: conn, handle: handle, got: make(chan datagram, 100), done: make(chan struct{})}
	go s.serve()
	t.Cleanup(func() { conn.Close(); <-s.done })
	return s
}

func (s *fakeNG) serve() {
	defer close(s.done)
	buf := make([]byte, 65536)
	for n := 0; ; n++ {
		k, from, err := s.conn.ReadFromUDP(buf)
		if err != nil {
			return
		}
		d := datagram{raw: append([]byte(nil), buf[:k]...)}
		cookie, doc, _ := bytes.Cut(d.raw, []byte(" "))
		d.cookie = string(cookie)
		if v, err := bencode.Decode(doc); err == nil {
			d.req, _ = v.(map[string]any)
		}
		s.mu.Lock()
		s.all = append(s.all, d)
		s.mu.Unlock()
		select {
		case s.got <- d:
		default:
		}
		for _, r := range s.handle(n, d) {
			out := []byte(d.cookie + " " + r)
			if raw, ok := strings.CutPrefix(r, "!"); ok {
				out = []byte(raw)
			}
			s.conn.WriteToUDP(out, from)
		}
	}
}

func (s *fakeNG) addr() string { return s.conn.LocalAddr().String() }

func (s *fakeNG) received() []datagram {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]datagram(nil), s.all...)
}

// wait returns the next datagram the server receives.
func (s *fakeNG) wait(t *testing.T) datagram {
	t.Helper()
	select {
	case d := <-s.got:
		return d
	case <-time.After(10 * time.Second):
		t.Fatal("the fake NG server received nothing")
		return datagram{}
	}
}

func answer(doc string) func(int, datagram) []string {
	return func(int, datagram) []string { return []string{doc} }
}

func silent(int, datagram) []string { return nil }

func newTestClient(t *testing.T, cfg Config) (*Client, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, reg
}

// recording is testdata/ng_exchange.json: what rtpengine 10.5 answered
// test/interop's TestRtpengineCall, cookies removed.
type recording struct {
	Rtpengine string
	Exchanges []struct{ Request, Response string }
}

func loadRecording(t *testing.T) recording {
	t.Helper()
	b, err := os.ReadFile("testdata/ng_exchange.json")
	if err != nil {
		t.Fatal(err)
	}
	var r recording
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	if len(r.Exchanges) != 8 {
		t.Fatalf("recording has %d exchanges, want the 8 of TestRtpengineCall", len(r.Exchanges))
	}
	return r
}

func mustDict(t *testing.T, doc string) map[string]any {
	t.Helper()
	v, err := bencode.Decode([]byte(doc))
	if err != nil {
		t.Fatalf("recorded document %q: %v", doc, err)
	}
	d, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("recorded document %q is not a dictionary", doc)
	}
	return d
}

// The client replays TestRtpengineCall against the recorded replies of
// the real rtpengine: it must send the recorded requests (the same
// dictionaries) and read the replies as the real run did.
func TestRecordedExchange(t *testing.T) {
	rec := loadRecording(t)
	srv := newFakeNG(t, func(n int, d datagram) []string {
		if n >= len(rec.Exchanges) {
			t.Errorf("request %d beyond the recording: %q", n, d.raw)
			return nil
		}
		want := mustDict(t, rec.Exchanges[n].Request)
		if !reflect.DeepEqual(d.req, want) {
			t.Errorf("request %d:\n got %#v\nwant %#v", n, d.req, want)
		}
		return []string{rec.Exchanges[n].Response}
	})
	c, _ := newTestClient(t, Config{Address: "udp:" + srv.addr()})
	ctx := context.Background()
	str := func(n int, key string) string { return mustDict(t, rec.Exchanges[n].Request)[key].(string) }
	loopback := netip.MustParseAddr("127.0.0.1")

	if err := c.Ping(ctx); err != nil {
		t.Fatalf("ping: %v", err)
	}
	callID, caller, callee := str(1, "call-id"), str(1, "from-tag"), str(2, "to-tag")
	sdp, err := c.Offer(ctx, &media.Request{CallID: callID, FromTag: caller, SDP: []byte(str(1, "sdp")),
		Source: loopback, Advertise: loopback})
	if err != nil {
		t.Fatalf("offer: %v", err)
	}
	if want := mustDict(t, rec.Exchanges[1].Response)["sdp"]; string(sdp) != want {
		t.Errorf("offer returned\n%q\nwant\n%q", sdp, want)
	}
	sdp, err = c.Answer(ctx, &media.Request{CallID: callID, FromTag: callee, ToTag: caller, SDP: []byte(str(2, "sdp")),
		Source: loopback, Advertise: loopback})
	if err != nil {
		t.Fatalf("answer: %v", err)
	}
	if want := mustDict(t, rec.Exchanges[2].Response)["sdp"]; string(sdp) != want {
		t.Errorf("answer returned\n%q\nwant\n%q", sdp, want)
	}

	// The interop test sent 10 RTP packets each way: 12+160 bytes from the
	// caller, 12+80 from the callee, over one m-line.
	wantCaller := media.Direction{Packets: 10, Bytes: 1720}
	wantCallee := media.Direction{Packets: 10, Bytes: 920}
	q, err := c.Query(ctx, callID)
	if err != nil {
		t.Fatalf("query: %v", err)
	}
	if q.Caller != wantCaller || q.Callee != wantCallee || q.Streams != 1 {
		t.Errorf("query: %+v", q)
	}
	st, err := c.Delete(ctx, callID)
	if err != nil {
		t.Fatalf("delete: %v", err)
	}
	if st.Caller != wantCaller || st.Callee != wantCallee || st.Streams != 1 {
		t.Errorf("delete: %+v", st)
	}

	_, err = c.Delete(ctx, callID)
	var re *ReplyError
	if !errors.Is(err, media.ErrNoSession) || !errors.As(err, &re) || re.Command != "delete" ||
		re.Reason != "Call-ID not found or tags didn't match" {
		t.Errorf("second delete: %v", err)
	}
	_, err = c.Answer(ctx, &media.Request{CallID: str(6, "call-id"), FromTag: str(6, "to-tag"), ToTag: str(6, "from-tag"),
		SDP: []byte(str(6, "sdp")), Source: loopback})
	if !errors.Is(err, media.ErrNoSession) || !strings.Contains(err.Error(), "Unknown call-id") {
		t.Errorf("answer in an unknown call: %v", err)
	}
	_, err = c.Offer(ctx, &media.Request{CallID: str(7, "call-id"), FromTag: str(7, "from-tag"), SDP: []byte(str(7, "sdp")),
		Source: loopback})
	if !errors.Is(err, media.ErrBadSDP) || !strings.Contains(err.Error(), "Failed to parse SDP") {
		t.Errorf("offer of garbage: %v", err)
	}
	if n := len(srv.received()); n != len(rec.Exchanges) {
		t.Errorf("server received %d requests, want %d", n, len(rec.Exchanges))
	}
	assertRequests(t, c, map[[2]string]float64{
		{"ping", "ok"}: 1, {"offer", "ok"}: 1, {"offer", "error"}: 1, {"answer", "ok"}: 1, {"answer", "error"}: 1,
		{"delete", "ok"}: 1, {"delete", "error"}: 1, {"query", "ok"}: 1,
	})
}

// assertRequests checks the requests metric: exactly these series, with
// these counts.
func assertRequests(t *testing.T, c *Client, want map[[2]string]float64) {
	t.Helper()
	if n := testutil.CollectAndCount(c.met.requests); n != len(want) {
		t.Errorf("%d series of hlas_rtpengine_requests_total, want %d", n, len(want))
	}
	for lv, n := range want {
		if got := testutil.ToFloat64(c.met.requests.WithLabelValues(lv[0], lv[1])); got != n {
			t.Errorf("requests_total{command=%q,result=%q} = %v, want %v", lv[0], lv[1], got, n)
		}
	}
}

package api

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestEventBusSeqAndRing(t *testing.T) {
	b := NewBus(4, nil)
	if b.LastSeq() != 0 {
		t.Fatalf("LastSeq of an empty bus = %d", b.LastSeq())
	}
	for i := range 6 {
		b.Publish(EventCall, "started", map[string]int{"i": i})
	}
	if b.LastSeq() != 6 {
		t.Fatalf("LastSeq = %d, want 6", b.LastSeq())
	}
	// Resume within the ring: exactly the events after since.
	s, backlog, gap, err := b.Subscribe(nil, true, 4, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if gap != nil || len(backlog) != 2 || backlog[0].Seq != 5 || backlog[1].Seq != 6 || string(backlog[1].Data) != `{"i":5}` {
		t.Fatalf("since 4: backlog %+v gap %+v", backlog, gap)
	}
	// Resume from before the ring: the gap is said, then what is kept.
	s2, backlog, gap, _ := b.Subscribe(nil, true, 1, 0)
	defer s2.Close()
	if gap == nil || gap.Since != 1 || gap.First != 3 || len(backlog) != 4 || backlog[0].Seq != 3 {
		t.Fatalf("since 1: backlog %+v gap %+v", backlog, gap)
	}
	// since 2 is exactly the one before the oldest kept: no gap.
	s3, backlog, gap, _ := b.Subscribe(nil, true, 2, 0)
	defer s3.Close()
	if gap != nil || len(backlog) != 4 {
		t.Fatalf("since 2: backlog %d gap %+v", len(backlog), gap)
	}
	// A seq never issued (the client saw an earlier run of the server):
	// a gap, and all that is kept.
	s4, backlog, gap, _ := b.Subscribe(nil, true, 500, 0)
	defer s4.Close()
	if gap == nil || gap.Since != 500 || gap.First != 3 || len(backlog) != 4 {
		t.Fatalf("since 500: backlog %d gap %+v", len(backlog), gap)
	}
	// Caught up: nothing to replay, no gap.
	s5, backlog, gap, _ := b.Subscribe(nil, true, 6, 0)
	defer s5.Close()
	if gap != nil || len(backlog) != 0 {
		t.Fatalf("since 6: backlog %d gap %+v", len(backlog), gap)
	}
	// Live events follow the backlog without a hole.
	b.Publish(EventBan, "added", nil)
	if ev := <-s.C(); ev.Seq != 7 || ev.Type != EventBan || ev.Data != nil {
		t.Fatalf("live event %+v", ev)
	}
}

func TestEventBusFilter(t *testing.T) {
	b := NewBus(10, nil)
	b.Publish(EventCall, "started", nil)
	b.Publish(EventRegistration, "added", nil)
	s, backlog, _, _ := b.Subscribe([]string{EventRegistration}, true, 0, 0)
	defer s.Close()
	if len(backlog) != 1 || backlog[0].Type != EventRegistration {
		t.Fatalf("backlog %+v", backlog)
	}
	b.Publish(EventCall, "ended", nil)
	b.Publish(EventRegistration, "removed", nil)
	if ev := <-s.C(); ev.Type != EventRegistration || ev.Action != "removed" || ev.Seq != 4 {
		t.Fatalf("got %+v", ev)
	}
	if len(s.C()) != 0 {
		t.Fatalf("%d more events queued", len(s.C()))
	}
}

// A subscriber that does not read is dropped with a reason; publishing
// goes on (this test would hang if Publish blocked).
func TestEventBusSlowSubscriberDropped(t *testing.T) {
	b := NewBus(10, nil)
	slow, _, _, _ := b.Subscribe(nil, false, 0, 2)
	fast, _, _, _ := b.Subscribe(nil, false, 0, 100)
	defer fast.Close()
	for range 50 {
		b.Publish(EventPresence, "changed", nil)
	}
	select {
	case <-slow.Done():
	default:
		t.Fatal("slow subscriber not dropped")
	}
	if r := slow.Reason(); !strings.Contains(r, "slow consumer") {
		t.Errorf("reason %q", r)
	}
	select {
	case <-fast.Done():
		t.Fatal("fast subscriber dropped")
	default:
	}
	if len(fast.C()) != 50 {
		t.Errorf("fast subscriber has %d events", len(fast.C()))
	}
	slow.Close() // after the drop: harmless
}

func TestEventBusDrop(t *testing.T) {
	b := NewBus(1, nil)
	s1, _, _, _ := b.Subscribe(nil, false, 0, 1)
	s2, _, _, _ := b.Subscribe([]string{EventBan}, false, 0, 1)
	b.Drop("stopping")
	for _, s := range []*Subscription{s1, s2} {
		select {
		case <-s.Done():
		default:
			t.Fatal("not dropped")
		}
		if s.Reason() != "stopping" {
			t.Errorf("reason %q", s.Reason())
		}
	}
	b.Publish(EventBan, "added", nil) // nobody left to tell
	if len(s2.C()) != 0 {
		t.Error("a dropped subscription got an event")
	}
}

func TestEventBusBoundedSubscribers(t *testing.T) {
	b := NewBus(1, nil)
	var subs []*Subscription
	for range maxSubscribers {
		s, _, _, err := b.Subscribe(nil, false, 0, 1)
		if err != nil {
			t.Fatal(err)
		}
		subs = append(subs, s)
	}
	if _, _, _, err := b.Subscribe(nil, false, 0, 1); err == nil {
		t.Fatal("subscriber over the bound accepted")
	}
	subs[0].Close()
	s, _, _, err := b.Subscribe(nil, false, 0, 1)
	if err != nil {
		t.Fatalf("after a close: %v", err)
	}
	s.Close()
}

// sseFrame is one message of a stream.
type sseFrame struct {
	event, id, data string
}

type sseReader struct {
	t  *testing.T
	br *bufio.Reader
}

// next reads the next message, skipping comments.
func (r *sseReader) next() sseFrame {
	r.t.Helper()
	var f sseFrame
	for {
		line, err := r.br.ReadString('\n')
		if err != nil {
			r.t.Fatalf("stream: %v (frame so far %+v)", err, f)
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			if f != (sseFrame{}) {
				return f
			}
		case strings.HasPrefix(line, ":"):
		case strings.HasPrefix(line, "event: "):
			f.event = line[len("event: "):]
		case strings.HasPrefix(line, "id: "):
			f.id = line[len("id: "):]
		case strings.HasPrefix(line, "data: "):
			f.data = line[len("data: "):]
		default:
			r.t.Fatalf("unexpected line %q", line)
		}
	}
}

func (r *sseReader) event() Event {
	r.t.Helper()
	f := r.next()
	var ev Event
	if f.event != "" || json.Unmarshal([]byte(f.data), &ev) != nil || f.id != strconv.FormatUint(ev.Seq, 10) {
		r.t.Fatalf("not an event: %+v", f)
	}
	return ev
}

func newEventsServer(t *testing.T, bus *Bus) (*fixture, *httptest.Server) {
	f := newFixture(t, Config{})
	f.prom = prometheus.NewRegistry()
	a, err := New(Config{}, Env{Store: f.st, Registrar: f.reg, Events: bus, Registerer: f.prom})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	return f, srv
}

func openStream(t *testing.T, srv *httptest.Server, query string, hdr http.Header) (*http.Response, *sseReader) {
	t.Helper()
	req, _ := http.NewRequest("GET", srv.URL+"/api/v1/events"+query, nil)
	for k, v := range hdr {
		req.Header[k] = v
	}
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { res.Body.Close() })
	return res, &sseReader{t: t, br: bufio.NewReader(res.Body)}
}

func bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

func TestEventStreamSSE(t *testing.T) {
	bus := NewBus(3, nil)
	f, srv := newEventsServer(t, bus)

	if res, _ := openStream(t, srv, "", nil); res.StatusCode != 401 {
		t.Fatalf("without a token: %d", res.StatusCode)
	}
	if res, _ := openStream(t, srv, "?types=call,bogus", bearer(f.roToken)); res.StatusCode != 400 {
		t.Fatalf("unknown type: %d", res.StatusCode)
	}
	if res, _ := openStream(t, srv, "?since=x", bearer(f.roToken)); res.StatusCode != 400 {
		t.Fatalf("bad since: %d", res.StatusCode)
	}

	// A read-only token may listen; the token may come in the query.
	res, r := openStream(t, srv, "?types=registration&access_token="+f.roToken, nil)
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %d %q", res.StatusCode, res.Header.Get("Content-Type"))
	}
	// The headers come after Subscribe: what is published now is seen.
	bus.Publish(EventCall, "started", nil)
	bus.Publish(EventRegistration, "added", map[string]string{"aor": "alice@example.com"})
	ev := r.event()
	if ev.Seq != 2 || ev.Type != EventRegistration || ev.Action != "added" || string(ev.Data) != `{"aor":"alice@example.com"}` {
		t.Fatalf("event %+v", ev)
	}

	// Resume with Last-Event-ID, as EventSource does: the kept events
	// after it, then live ones.
	for i := range 3 {
		bus.Publish(EventPresence, "changed", map[string]int{"n": i})
	}
	h := bearer(f.token)
	h.Set("Last-Event-ID", "3")
	_, r2 := openStream(t, srv, "", h)
	if ev := r2.event(); ev.Seq != 4 {
		t.Fatalf("resume from 3: first %+v", ev)
	}
	if ev := r2.event(); ev.Seq != 5 {
		t.Fatalf("resume from 3: second %+v", ev)
	}
	bus.Publish(EventBan, "added", nil)
	if ev := r2.event(); ev.Seq != 6 || ev.Type != EventBan {
		t.Fatalf("live after resume: %+v", ev)
	}

	// since= older than the ring: a gap, then the oldest kept.
	_, r3 := openStream(t, srv, "?since=1", bearer(f.token))
	g := r3.next()
	if g.event != "gap" || g.id != "" || g.data != `{"since":1,"first":4}` {
		t.Fatalf("gap frame %+v", g)
	}
	if ev := r3.event(); ev.Seq != 4 {
		t.Fatalf("after the gap: %+v", ev)
	}
}

// A stream whose client does not keep up gets a close event with the
// reason and ends.
func TestEventStreamSlowClientClosed(t *testing.T) {
	bus := NewBus(10, nil)
	f, srv := newEventsServer(t, bus)
	_, r := openStream(t, srv, "", bearer(f.token))
	// The client reads nothing while far more is published than its
	// queue and the socket buffers hold.
	for i := range subscriberQueue * 64 {
		bus.Publish(EventPresence, "changed", map[string]string{"pad": strings.Repeat("x", 200), "i": fmt.Sprint(i)})
	}
	for {
		fr := r.next()
		if fr.event == "close" {
			if !strings.Contains(fr.data, "slow consumer") {
				t.Fatalf("close frame %+v", fr)
			}
			break
		}
		if fr.event != "" {
			t.Fatalf("unexpected frame %+v", fr)
		}
	}
	if _, err := r.br.ReadString('\n'); err == nil {
		t.Fatal("stream goes on after close")
	}
	if n := gathered(t, f.prom, "hlas_api_event_streams_dropped_total"); n != 1 {
		t.Errorf("dropped streams counted %v", n)
	}
	if n, err := testutil.GatherAndCount(f.prom, "hlas_api_events_total"); err != nil || n != 1 {
		t.Errorf("hlas_api_events_total: %d series, %v", n, err)
	}
}

func TestEventStreamOff(t *testing.T) {
	f := newFixture(t, Config{})
	if code, _, _ := f.do(f.token, "GET", "/api/v1/events", ""); code != 501 {
		t.Fatalf("without a bus: %d", code)
	}
}

// FuzzEventsQuery: any query and Last-Event-ID is either refused with a
// 400 naming the field or read into known types and a seq.
func FuzzEventsQuery(f *testing.F) {
	f.Add("types=registration,call&since=42", "")
	f.Add("types=bogus", "7")
	f.Add("since=-1", "")
	f.Add("", "18446744073709551615")
	f.Add("types=,", "x")
	f.Fuzz(func(t *testing.T, query, lastID string) {
		q, err := url.ParseQuery(query)
		if err != nil {
			return
		}
		types, resume, since, e := parseEventsQuery(q, lastID)
		if e != nil {
			if e.Status != http.StatusBadRequest || e.Field == "" {
				t.Fatalf("error %+v", e)
			}
			return
		}
		for _, typ := range types {
			if !slices.Contains(eventTypes, typ) {
				t.Fatalf("type %q accepted", typ)
			}
		}
		if !resume && since != 0 {
			t.Fatalf("since %d without resume", since)
		}
		if resume && q.Get("since") == "" {
			if n, err := strconv.ParseUint(lastID, 10, 64); err != nil || n != since {
				t.Fatalf("Last-Event-ID %q read as %d", lastID, since)
			}
		}
	})
}

// gathered is the value of the one series of a counter or gauge.
func gathered(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			m := mf.GetMetric()[0]
			if m.Counter != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

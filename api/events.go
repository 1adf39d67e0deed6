package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hlas-voip/hlas/registrar"
)

// Event types and actions of the event stream (docs/api.md).
const (
	EventRegistration = "registration" // added, refreshed, removed
	EventCall         = "call"         // started, ringing, answered, ended
	EventBan          = "ban"          // added, removed
	EventPresence     = "presence"     // changed
	EventOrigination  = "origination"  // a click-to-call's progress
)

// eventTypes are the types ?types= may name.
var eventTypes = []string{EventRegistration, EventCall, EventBan, EventPresence, EventOrigination}

// Event is one thing that happened, as the stream delivers it.
type Event struct {
	// Seq grows by one per event published, from 1; a client resumes
	// with the last it saw.
	Seq    uint64          `json:"seq"`
	Type   string          `json:"type"`
	Action string          `json:"action"`
	Time   time.Time       `json:"time"`
	Data   json.RawMessage `json:"data,omitempty"`
}

// Defaults of the event bus.
const (
	DefaultEventsBuffer = 10000
	// subscriberQueue is how many events may wait for one client; a
	// client further behind is dropped rather than slowing publishers.
	subscriberQueue = 1024
	// maxSubscribers bounds the open streams (each holds a connection
	// and a goroutine of the HTTP server).
	maxSubscribers = 64
)

// Bus is the server's event bus: a ring of the last events for clients
// that resume, and bounded queues of the clients listening. Publishing
// never blocks: a client whose queue is full is dropped with a reason.
type Bus struct {
	mu   sync.Mutex
	ring []Event // event seq at ring[(seq-1)%len], the last n kept
	n    int
	next uint64 // seq of the next event
	subs map[*Subscription]struct{}
	slow int // subscriptions dropped for falling behind
	now  func() time.Time
}

// NewBus makes a bus keeping the last size events (default
// DefaultEventsBuffer when size <= 0); now is the clock (nil: time.Now).
func NewBus(size int, now func() time.Time) *Bus {
	if size <= 0 {
		size = DefaultEventsBuffer
	}
	if now == nil {
		now = time.Now
	}
	return &Bus{ring: make([]Event, size), next: 1, subs: map[*Subscription]struct{}{}, now: now}
}

// eventMetrics are the event stream's metrics (none without a bus).
func eventMetrics(b *Bus) []prometheus.Collector {
	if b == nil {
		return nil
	}
	return []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "hlas", Subsystem: "api", Name: "events_total",
			Help: "Events published to the event stream (the last seq)."}, func() float64 { return float64(b.LastSeq()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "hlas", Subsystem: "api", Name: "event_streams",
			Help: "Event streams open."}, func() float64 { return float64(b.stats().subs) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "hlas", Subsystem: "api", Name: "event_streams_dropped_total",
			Help: "Event streams dropped because their client fell a whole queue behind."}, func() float64 { return float64(b.stats().slow) }),
	}
}

type busStats struct{ subs, slow int }

func (b *Bus) stats() busStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	return busStats{subs: len(b.subs), slow: b.slow}
}

// Subscription is one client's view of the bus.
type Subscription struct {
	c      chan Event
	done   chan struct{}
	types  map[string]bool // nil: all
	reason string          // why dropped; under Bus.mu until done closed
	bus    *Bus
}

// C delivers the events published after Subscribe.
func (s *Subscription) C() <-chan Event { return s.c }

// Done is closed when the bus dropped the subscription; Reason says why.
func (s *Subscription) Done() <-chan struct{} { return s.done }

// Reason is why the subscription was dropped; read it after Done.
func (s *Subscription) Reason() string {
	s.bus.mu.Lock()
	defer s.bus.mu.Unlock()
	return s.reason
}

// Close ends the subscription; the bus forgets it.
func (s *Subscription) Close() {
	s.bus.mu.Lock()
	defer s.bus.mu.Unlock()
	s.bus.dropLocked(s, "closed")
}

func (s *Subscription) wants(typ string) bool { return s.types == nil || s.types[typ] }

// Gap says that events a client asked for are no longer kept.
type Gap struct {
	// Since is the seq the client saw last; First the oldest kept.
	Since uint64 `json:"since"`
	First uint64 `json:"first"`
}

// Publish records an event and hands it to every listening client that
// wants its type. data is marshalled to JSON (nil: no data).
func (b *Bus) Publish(typ, action string, data any) {
	var raw json.RawMessage
	if data != nil {
		var err error
		if raw, err = json.Marshal(data); err != nil {
			raw, _ = json.Marshal(map[string]string{"error": err.Error()})
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	ev := Event{Seq: b.next, Type: typ, Action: action, Time: b.now().UTC(), Data: raw}
	b.next++
	b.ring[(ev.Seq-1)%uint64(len(b.ring))] = ev
	if b.n < len(b.ring) {
		b.n++
	}
	for s := range b.subs {
		if !s.wants(typ) {
			continue
		}
		select {
		case s.c <- ev:
		default:
			b.slow++
			b.dropLocked(s, fmt.Sprintf("slow consumer: %d events queued unread", cap(s.c)))
		}
	}
}

func (b *Bus) dropLocked(s *Subscription, why string) {
	if _, ok := b.subs[s]; !ok {
		return
	}
	delete(b.subs, s)
	s.reason = why
	close(s.done)
}

// Drop ends every subscription with why (the server stopping: its HTTP
// shutdown waits for idle connections, which a stream never is).
func (b *Bus) Drop(why string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs {
		b.dropLocked(s, why)
	}
}

// LastSeq is the seq of the last event published (0: none yet).
func (b *Bus) LastSeq() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.next - 1
}

// errTooMany is Subscribe's answer over maxSubscribers.
var errTooMany = fmt.Errorf("too many event streams open (%d)", maxSubscribers)

// Subscribe starts listening for the types named (none: all). With
// resume, it returns the kept events after since as backlog, in order;
// a non-nil Gap when some of them are no longer kept. Events published
// after the call arrive on the subscription, none twice or missed. A
// since beyond the last seq (the server restarted) is a gap too.
func (b *Bus) Subscribe(types []string, resume bool, since uint64, queue int) (*Subscription, []Event, *Gap, error) {
	if queue <= 0 {
		queue = subscriberQueue
	}
	s := &Subscription{c: make(chan Event, queue), done: make(chan struct{}), bus: b}
	if len(types) > 0 {
		s.types = map[string]bool{}
		for _, t := range types {
			s.types[t] = true
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.subs) >= maxSubscribers {
		return nil, nil, nil, errTooMany
	}
	var backlog []Event
	var gap *Gap
	if resume {
		first := b.next - uint64(b.n) // oldest kept
		from := since + 1
		// A seq never issued means the server restarted (seqs start
		// again from 1): everything kept is news to the client.
		if from < first || since >= b.next {
			gap = &Gap{Since: since, First: first}
			from = first
		}
		for seq := from; seq < b.next; seq++ {
			ev := b.ring[(seq-1)%uint64(len(b.ring))]
			if s.wants(ev.Type) {
				backlog = append(backlog, ev)
			}
		}
	}
	b.subs[s] = struct{}{}
	return s, backlog, gap, nil
}

// Stream parameters.
const (
	eventsRoute = "GET /api/v1/events"
	// heartbeat is how often an idle stream gets a comment line, so
	// proxies and clients see it alive.
	heartbeat = 15 * time.Second
	// writeWait bounds one write to a client: a client that does not
	// read is dropped, not waited for.
	writeWait = 10 * time.Second
)

// wrapStream is wrap for the event stream: the token (also from
// ?access_token=, since a browser's EventSource cannot set headers) and
// the metrics, but neither the in-flight slot nor the timeout: a stream
// lasts, and the streams have their own bound.
func (a *API) wrapStream(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code := http.StatusOK
		defer func() { a.requests.WithLabelValues(rt.pattern, strconv.Itoa(code)).Inc() }()
		if tok := r.URL.Query().Get("access_token"); tok != "" && r.Header.Get("Authorization") == "" {
			r = r.Clone(r.Context())
			r.Header.Set("Authorization", "Bearer "+tok)
		}
		if e := a.authorize(r, false); e != nil {
			if e.Status == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="hlas"`)
			}
			code = e.Status
			writeError(w, e)
			return
		}
		if e := a.serveEvents(w, r); e != nil {
			code = e.Status
			writeError(w, e)
		}
	})
}

// events is the route's handler for the table; wrapStream serves it.
func (a *API) events(w http.ResponseWriter, r *http.Request) error {
	if e := a.serveEvents(w, r); e != nil {
		return e
	}
	return nil
}

// serveEvents is GET /api/v1/events: Server-Sent Events. An error is
// returned only before the stream began.
func (a *API) serveEvents(w http.ResponseWriter, r *http.Request) *Error {
	bus := a.env.Events
	if bus == nil {
		return fail(http.StatusNotImplemented, "", "the event stream is off")
	}
	if err := checkQuery(r, "since", "types", "access_token"); err != nil {
		return err.(*Error)
	}
	types, resume, since, e := parseEventsQuery(r.URL.Query(), r.Header.Get("Last-Event-ID"))
	if e != nil {
		return e
	}
	sub, backlog, gap, err := bus.Subscribe(types, resume, since, 0)
	if err != nil {
		w.Header().Set("Retry-After", "5")
		return fail(http.StatusServiceUnavailable, "", "%v", err)
	}
	defer sub.Close()

	rc := http.NewResponseController(w)
	// The server's read deadline would end the stream: no body follows.
	_ = rc.SetReadDeadline(time.Time{})
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	send := func(b []byte) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(writeWait))
		if _, err := w.Write(b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	// The first line tells the client where the stream is, so that one
	// that has seen nothing yet can resume from here.
	if !send(fmt.Appendf(nil, ": hlas events, last seq %d\n\n", bus.LastSeq())) {
		return nil
	}
	if gap != nil && !send(frame("gap", 0, gap)) {
		return nil
	}
	for _, ev := range backlog {
		if !send(frame("", ev.Seq, ev)) {
			return nil
		}
	}
	tick := time.NewTicker(heartbeat)
	defer tick.Stop()
	for {
		select {
		case ev := <-sub.C():
			if !send(frame("", ev.Seq, ev)) {
				return nil
			}
		case <-sub.Done():
			send(frame("close", 0, map[string]string{"reason": sub.Reason()}))
			return nil
		case <-tick.C:
			if !send([]byte(": keepalive\n\n")) {
				return nil
			}
		case <-r.Context().Done():
			return nil
		}
	}
}

// parseEventsQuery reads ?types= and ?since= (or Last-Event-ID).
func parseEventsQuery(q url.Values, lastEventID string) (types []string, resume bool, since uint64, _ *Error) {
	if s := q.Get("types"); s != "" {
		for _, t := range strings.Split(s, ",") {
			t = strings.TrimSpace(t)
			ok := false
			for _, k := range eventTypes {
				ok = ok || t == k
			}
			if !ok {
				return nil, false, 0, fail(http.StatusBadRequest, "types", "types: unknown event type %q (want %s)", t, strings.Join(eventTypes, ","))
			}
			types = append(types, t)
		}
	}
	sinceText, field := q.Get("since"), "since"
	if sinceText == "" {
		sinceText, field = lastEventID, "Last-Event-ID"
	}
	if sinceText != "" {
		n, err := strconv.ParseUint(sinceText, 10, 64)
		if err != nil {
			return nil, false, 0, fail(http.StatusBadRequest, field, "%s %q: want a sequence number", field, sinceText)
		}
		resume, since = true, n
	}
	return types, resume, since, nil
}

// frame is one SSE message: an event name for control messages (gap,
// close), an id for events so that EventSource resumes by itself.
func frame(name string, id uint64, v any) []byte {
	data, _ := json.Marshal(v)
	var b []byte
	if name != "" {
		b = append(b, "event: "+name+"\n"...)
	}
	if id != 0 {
		b = fmt.Appendf(b, "id: %d\n", id)
	}
	b = append(b, "data: "...)
	b = append(b, data...)
	return append(b, "\n\n"...)
}

// LiveRegistration is a registrar binding as the API shows it, for the
// server's registration events.
func LiveRegistration(b registrar.Binding) Registration { return liveRegistration(b) }

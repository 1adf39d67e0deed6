package server

import (
	"sync"

	"github.com/hlas-voip/hlas/sip/transport"
)

// wsFlows ends the registrations of browsers whose WebSocket closed. A
// browser's Contact is a .invalid name (RFC 7118 §5): nothing but its
// connection reaches it, so once that is gone its bindings only make
// calls to it wait; removed, they make them fail at once with 480 and
// show the user offline to the registration event package.
type wsFlows struct {
	s *Server

	mu   sync.Mutex
	aors map[*transport.Conn]map[string]struct{} // the AORs bound over each connection
	// closing are connections that closed with bindings to remove, for a
	// goroutine that runs only while there are some (as Conn.Send's
	// writer): the removal writes to the store and notifies, which the
	// goroutine that closed the connection (a worker's failed send, a
	// timer) must not wait for.
	closing []*transport.Conn
	running bool
}

// maxClosing bounds the connections waiting for their bindings to be
// removed; beyond it they are left to expire (calls to them fail with
// 480 anyway, their flow being gone).
const maxClosing = 1 << 16

func newWSFlows(s *Server) *wsFlows {
	return &wsFlows{s: s, aors: map[*transport.Conn]map[string]struct{}{}}
}

// changed is told of every AOR whose bindings changed (the registrar's
// OnChange): a binding over a WebSocket is watched from then on.
func (w *wsFlows) changed(aor string) {
	r := w.s.registrar
	if r == nil {
		return
	}
	for _, b := range r.Lookup(aor) {
		if b.Conn != nil && (b.Transport == transport.WS || b.Transport == transport.WSS) {
			w.watch(b.Conn, aor)
		}
	}
}

func (w *wsFlows) watch(c *transport.Conn, aor string) {
	w.mu.Lock()
	set := w.aors[c]
	first := set == nil
	if first {
		set = map[string]struct{}{}
		w.aors[c] = set
	}
	set[aor] = struct{}{}
	w.mu.Unlock()
	if first {
		c.OnClose(func() { w.queue(c) })
	}
}

// queue hands a closed connection to the remover goroutine, starting it
// when none runs.
func (w *wsFlows) queue(c *transport.Conn) {
	s := w.s
	w.mu.Lock()
	if len(w.closing) >= maxClosing {
		w.mu.Unlock()
		s.log.Warn("bindings over a closed websocket left to expire: too many closing at once")
		return
	}
	w.closing = append(w.closing, c)
	if w.running {
		w.mu.Unlock()
		return
	}
	w.running = true
	w.mu.Unlock()
	s.asyncMu.Lock()
	if s.noAsync { // stopping: the bindings stay, as the connection's peers would after a restart
		s.asyncMu.Unlock()
		w.mu.Lock()
		w.closing, w.running = nil, false
		w.mu.Unlock()
		return
	}
	s.async.Add(1)
	s.asyncMu.Unlock()
	go func() {
		defer s.async.Done()
		for {
			w.mu.Lock()
			if len(w.closing) == 0 {
				w.closing, w.running = nil, false
				w.mu.Unlock()
				return
			}
			c := w.closing[0]
			w.closing[0] = nil
			w.closing = w.closing[1:]
			w.mu.Unlock()
			w.closed(c)
		}
	}()
}

// closed removes the bindings still over c, as an unregistration would.
func (w *wsFlows) closed(c *transport.Conn) {
	w.mu.Lock()
	set := w.aors[c]
	delete(w.aors, c)
	w.mu.Unlock()
	r := w.s.registrar
	if r == nil {
		return
	}
	for aor := range set {
		for _, b := range r.Lookup(aor) {
			if b.Conn != c {
				continue
			}
			if _, err := r.Remove(aor, b.ID, b.Updated, "websocket connection closed"); err != nil {
				w.s.log.Warn("binding over a closed websocket not removed", "aor", aor, "err", err)
			}
		}
	}
}

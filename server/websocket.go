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
}

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
		c.OnClose(func() { w.closed(c) })
	}
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

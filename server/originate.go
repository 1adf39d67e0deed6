package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"

	"github.com/hlas-voip/hlas/api"
	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/transport"
	"github.com/hlas-voip/hlas/store"
	"github.com/hlas-voip/hlas/tpcc"
	"github.com/hlas-voip/hlas/ua"
)

// originator is click-to-call (POST /api/v1/calls): a third party call
// controller (package tpcc) whose user agent sends its INVITEs to the
// server's own UDP listener, over loopback, like any phone. Its legs are
// thus routed, forked, relayed, recorded and listed as every call is.
// Requests from its address pass the proxy's authentication: the
// operator who called the API has already been authenticated.
type originator struct {
	ua    *ua.UA
	ctl   *tpcc.Controller
	local netip.AddrPort // the user agent's address, as the server sees it
}

// startOriginator starts click-to-call with the API. Without a UDP
// listener there is none (POST /api/v1/calls answers 501).
func (s *Server) startOriginator() error {
	var target netip.AddrPort
	for _, a := range s.addrs { // s.mu is held: Start
		if a.Proto == transport.UDP {
			target = a.Addr
			break
		}
	}
	if !target.IsValid() {
		s.log.Info("click-to-call off: no UDP listener")
		return nil
	}
	ip := target.Addr().Unmap()
	switch {
	case ip.IsUnspecified() && ip.Is4():
		ip = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	case ip.IsUnspecified():
		ip = netip.IPv6Loopback()
	}
	target = netip.AddrPortFrom(ip, target.Port())
	// The user agent listens on loopback whatever the listener's address:
	// its requests are trusted, and no packet from the network can come
	// from a loopback source (the kernel drops them).
	local := "127.0.0.1:0"
	if ip.Is6() {
		local = "[::1]:0"
	}
	domain := ip.String()
	if len(s.cfg.Domains) > 0 {
		domain = s.cfg.Domains[0]
	}
	log := s.log.With("feature", "click-to-call")
	u, err := ua.New(ua.Config{
		Transport: "udp", Listen: local, User: "hlas@" + domain, DisplayName: "hlas",
		Server: target.String(), T1: s.cfg.T1, T2: s.cfg.T2, T4: s.cfg.T4,
		MaxCalls: 2 * s.cfg.API.maxOriginations(), Logger: log,
		UserAgent: s.cfg.ServerName,
		// A call to the controller itself is not one it placed.
		OnCall: func(c *ua.Call) { _ = c.Reject(403, "Forbidden") },
	})
	if err != nil {
		return fmt.Errorf("click-to-call: %w", err)
	}
	ae := s.apiEvents
	ctl, err := tpcc.New(tpcc.Config{
		UA: u, RingTimeout: s.cfg.API.RingTimeout, MaxCalls: s.cfg.API.maxOriginations(), Logger: log,
		OnEvent: func(e tpcc.Event) {
			if ae != nil {
				ae.bus.Publish(api.EventOrigination, e.State, originationData(e))
			}
		},
	})
	if err != nil {
		_ = u.Close()
		return err
	}
	s.orig.Store(&originator{ua: u, ctl: ctl, local: u.Addr()})
	log.Info("click-to-call", "ua", u.Addr().String(), "server", target.String())
	return nil
}

// closeOriginator hangs up the calls it placed, while the proxy still
// forwards their BYEs.
func (s *Server) closeOriginator() {
	if o := s.orig.Load(); o != nil {
		o.ctl.Close()
		_ = o.ua.Close()
	}
}

// own reports a request of a call the controller placed, from its user
// agent's loopback address: nothing else from that address is trusted.
func (o *originator) own(tx ServerTx, req *sip.Request) bool {
	return o != nil && tx.Transport() == transport.UDP && tx.Source() == o.local && o.ctl.Owns(req.CallID)
}

// originationData is an origination event's data.
func originationData(e tpcc.Event) map[string]any {
	d := map[string]any{"id": e.ID, "state": e.State, "call_id_a": e.CallIDA}
	if e.CallIDB != "" {
		d["call_id_b"] = e.CallIDB
	}
	if e.Leg != "" {
		d["leg"] = e.Leg
	}
	if e.Code != 0 {
		d["code"] = e.Code
	}
	if e.Reason != "" {
		d["reason"] = e.Reason
	}
	return d
}

// Originate implements api.Calls: from must be a subscriber of ours with
// a phone registered (else there is nobody to ring first).
func (cc callControl) Originate(ctx context.Context, from, to string) (api.Origination, error) {
	s := cc.s
	o := s.orig.Load()
	if o == nil {
		return api.Origination{}, &api.Error{Status: http.StatusNotImplemented, Message: "click-to-call needs a UDP listener"}
	}
	aor, ok := s.localAOR(from)
	if !ok {
		return api.Origination{}, &api.Error{Status: http.StatusBadRequest, Field: "from",
			Message: fmt.Sprintf("from %q is not a user of this server's domains", from)}
	}
	user, domain, _ := strings.Cut(aor, "@")
	if _, err := s.store.User(ctx, user, domain); errors.Is(err, store.ErrNotFound) {
		return api.Origination{}, &api.Error{Status: http.StatusNotFound, Field: "from", Message: fmt.Sprintf("no subscriber %s", aor)}
	} else if err != nil {
		return api.Origination{}, err
	}
	if len(s.registrar.Lookup(aor)) == 0 {
		return api.Origination{}, &api.Error{Status: http.StatusConflict, Field: "from", Message: fmt.Sprintf("%s has no registered phone", aor)}
	}
	call, err := o.ctl.Originate(ctx, "sip:"+aor, to, tpcc.Options{})
	switch {
	case errors.Is(err, tpcc.ErrBusy), errors.Is(err, tpcc.ErrClosed):
		return api.Origination{}, &api.Error{Status: http.StatusServiceUnavailable, Message: err.Error()}
	case err != nil:
		return api.Origination{}, &api.Error{Status: http.StatusBadRequest, Field: "to", Message: err.Error()}
	}
	a, _ := call.CallIDs()
	return api.Origination{ID: call.ID(), From: aor, To: to, CallID: a, State: call.State()}, nil
}

// localAOR turns "alice", "alice@example.test" or "sip:alice@example.test"
// into an AOR of one of the server's domains, as the list server reads
// its members (listAOR).
func (s *Server) localAOR(in string) (string, bool) {
	in = strings.TrimSpace(in)
	if !strings.Contains(in, ":") {
		if !strings.Contains(in, "@") {
			if len(s.cfg.Domains) == 0 {
				return "", false
			}
			in += "@" + s.cfg.Domains[0]
		}
		in = "sip:" + in
	}
	return s.listAOR(in)
}

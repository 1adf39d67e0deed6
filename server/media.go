package server

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hlas-voip/hlas/media"
	"github.com/hlas-voip/hlas/media/plane"
	"github.com/hlas-voip/hlas/media/relay"
	"github.com/hlas-voip/hlas/media/rtpengine"
	"github.com/hlas-voip/hlas/proxy"
)

// Media is the media section: which calls get their RTP relayed, and by
// what (docs/media.md).
//
//	media:
//	  relay: auto          # auto | always | never
//	  engine: builtin      # builtin | rtpengine:udp:127.0.0.1:2223
//	  port_min: 30000
//	  port_max: 39999
//	  timeout: 60s         # no RTP for that long ends the call (BYE both ways)
//	  kernel: auto         # auto | on | off: forward latched RTP in the kernel (tcx BPF)
//	  interfaces:          # a server behind a 1:1 NAT: bind one address, advertise another
//	    - { bind: 10.0.0.5, advertise: 203.0.113.5 }
type Media struct {
	// Relay is the policy: auto (the default) relays a call when a party
	// is behind NAT or the two sides' address families differ; always;
	// never.
	Relay proxy.MediaPolicy `yaml:"relay"`
	// Engine is builtin (the default: the relay in this process) or
	// rtpengine:udp:HOST:PORT, an rtpengine's NG control socket.
	Engine string `yaml:"engine"`
	// PortMin and PortMax bound the built-in relay's UDP ports (RTP on
	// even ports, RTCP on the next). Default 30000-39999.
	PortMin int `yaml:"port_min"`
	PortMax int `yaml:"port_max"`
	// Readers is the built-in relay's reader goroutines. Default one per
	// CPU.
	Readers int `yaml:"readers"`
	// Kernel is the built-in relay's kernel fast path for latched RTP:
	// auto (the default) uses it where it loads (Linux 6.6+, root or
	// CAP_BPF with CAP_NET_ADMIN), on refuses to start without it, off
	// relays everything in userspace (docs/media-plane.md).
	Kernel string `yaml:"kernel"`
	// LatchWindow is how long after a party's SDP the built-in relay
	// follows that party's packets to a new source address (symmetric
	// latching, RFC 7362). Default: the data plane's.
	LatchWindow time.Duration `yaml:"latch_window"`
	// Timeout ends an answered call when one of its parties sent no RTP
	// or RTCP for that long: a BYE to each, and its record with the reason
	// media-timeout. Default 60s; a negative value turns it off.
	Timeout time.Duration `yaml:"timeout"`
	// HoldTimeout replaces Timeout while a stream is on hold. Default 1h.
	HoldTimeout time.Duration `yaml:"hold_timeout"`
	// Interfaces map the server's addresses to the addresses written in
	// SDP; by default the relay binds and advertises the address the
	// call's SIP uses towards each party.
	Interfaces []relay.Interface `yaml:"interfaces"`
	// RTPEngineTimeout bounds one NG request to rtpengine. Default: the
	// client's.
	RTPEngineTimeout time.Duration `yaml:"rtpengine_timeout"`
	// RTPEngineFlags are extra NG flags for rtpengine's offer and answer.
	RTPEngineFlags []string `yaml:"rtpengine_flags"`
	// RTPEnginePoll is how often each call is asked about, to find the
	// calls rtpengine ended at its own --timeout (no media), which the
	// proxy then ends like the built-in relay's. Default 10s.
	RTPEnginePoll time.Duration `yaml:"rtpengine_poll"`
}

// validate checks the media section.
func (m Media) validate() error {
	switch m.Relay {
	case "", proxy.MediaAuto, proxy.MediaAlways, proxy.MediaNever:
	default:
		return fmt.Errorf("media.relay %q: want auto, always or never", m.Relay)
	}
	if _, _, err := m.engine(); err != nil {
		return err
	}
	if m.RTPEnginePoll < 0 {
		return fmt.Errorf("media.rtpengine_poll %v is negative", m.RTPEnginePoll)
	}
	if err := m.plane().Validate(); err != nil {
		return fmt.Errorf("media: %w", err)
	}
	for i, in := range m.Interfaces {
		if !in.Bind.IsValid() {
			return fmt.Errorf("media.interfaces[%d]: bind is required", i)
		}
	}
	return nil
}

// engine splits Engine into its kind and address.
func (m Media) engine() (kind, addr string, err error) {
	switch {
	case m.Engine == "" || m.Engine == "builtin":
		return "builtin", "", nil
	case strings.HasPrefix(m.Engine, "rtpengine:"):
		addr = strings.TrimPrefix(m.Engine, "rtpengine:")
		if addr == "" {
			return "", "", errors.New("media.engine rtpengine: needs an address (rtpengine:udp:127.0.0.1:2223)")
		}
		return "rtpengine", addr, nil
	}
	return "", "", fmt.Errorf("media.engine %q: want builtin or rtpengine:udp:HOST:PORT", m.Engine)
}

// mediaEnder hands the relay's inactivity timeouts to the proxy, which is
// built after the relay.
type mediaEnder struct{ px atomic.Pointer[proxy.Proxy] }

func (e *mediaEnder) end(t media.Timeout) {
	if px := e.px.Load(); px != nil {
		px.EndMedia(t)
	}
}

// openMedia starts the media engine, unless the policy is never.
func (s *Server) openMedia(log *slog.Logger) (media.Engine, error) {
	m := s.cfg.Media
	if m.Relay == proxy.MediaNever {
		return nil, nil
	}
	kind, addr, err := m.engine()
	if err != nil {
		return nil, err
	}
	if kind == "rtpengine" {
		c, err := rtpengine.New(rtpengine.Config{
			Address: addr, Timeout: m.RTPEngineTimeout, Flags: m.RTPEngineFlags,
			PollInterval: m.RTPEnginePoll, OnTimeout: s.mediaEnd.end,
			Logger: log, Registerer: s.reg,
		})
		if err != nil {
			return nil, fmt.Errorf("media.engine: %w", err)
		}
		return c, nil
	}
	r, err := relay.New(relay.Config{
		Plane:      m.plane(),
		Interfaces: m.Interfaces, Timeout: m.Timeout, HoldTimeout: m.HoldTimeout,
		OnTimeout: s.mediaEnd.end, Logger: log, Registerer: s.reg,
	})
	if err != nil {
		return nil, fmt.Errorf("media relay: %w", err)
	}
	return r, nil
}

// plane is the data plane's part of the section.
func (m Media) plane() plane.Config {
	return plane.Config{PortMin: m.PortMin, PortMax: m.PortMax, Readers: m.Readers, LatchWindow: m.LatchWindow, Kernel: m.Kernel}
}

package server

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/hlas-voip/hlas/media/relay"
)

// A media section New would refuse is refused by Validate, naming the key.
func TestMediaConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		m    Media
		want string // "" valid; else a substring of the error
	}{
		{"defaults", Media{}, ""},
		{"rtpengine", Media{Relay: "always", Engine: "rtpengine:udp:127.0.0.1:2223", RTPEnginePoll: time.Second}, ""},
		{"port range", Media{PortMin: 40000, PortMax: 40001}, ""},
		{"policy", Media{Relay: "sometimes"}, "media.relay"},
		{"engine", Media{Engine: "rtpproxy:127.0.0.1:7722"}, "media.engine"},
		{"rtpengine without address", Media{Engine: "rtpengine:"}, "media.engine"},
		{"port_min alone", Media{PortMin: 40000}, "port_max"},
		{"port out of range", Media{PortMin: 40000, PortMax: 70000}, "port_max"},
		{"no pair", Media{PortMin: 40001, PortMax: 40001}, "pair"},
		{"negative latch window", Media{LatchWindow: -time.Second}, "latch_window"},
		{"negative poll", Media{RTPEnginePoll: -time.Second}, "rtpengine_poll"},
		{"interface without bind", Media{Interfaces: []relay.Interface{{Advertise: netip.MustParseAddr("203.0.113.5")}}}, "bind"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.m.validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("error %v, want one naming %q", err, tc.want)
			}
		})
	}
}

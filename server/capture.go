package server

import (
	"fmt"
	"log/slog"
	"net"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hlas-voip/hlas/capture/hep"
	"github.com/hlas-voip/hlas/sip/transport"
)

// CaptureConfig sends a copy of every SIP message received and sent, with
// its addresses and time, to a HEP v3 collector (Homer, heplify-server,
// sngrep -L), decrypted for TLS and WSS. Capturing never blocks the SIP
// path: messages wait in a bounded queue for one sending goroutine, and
// are dropped and counted when it is full. See docs/capture.md.
type CaptureConfig struct {
	// HEP is the collector, udp:host:port (an IPv6 host in brackets).
	// Empty, the default, captures nothing.
	HEP string `yaml:"hep"`
	// NodeID is the capture agent id the collector files the messages
	// under (HEP chunk 12). Default 0.
	NodeID uint32 `yaml:"node_id"`
	// Password is the collector's auth key (HEP chunk 14); empty sends
	// none.
	Password string `yaml:"password"`
	// Queue is how many messages may wait to be sent, at most 1048576.
	// Default 4096.
	Queue int `yaml:"queue"`
}

// maxCaptureQueue bounds CaptureConfig.Queue: each slot keeps a buffer
// of up to 16 KiB once used.
const maxCaptureQueue = 1 << 20

// on reports whether capture is configured.
func (c CaptureConfig) on() bool { return c.HEP != "" }

// collector returns the host:port of HEP.
func (c CaptureConfig) collector() (string, error) {
	rest, ok := strings.CutPrefix(c.HEP, "udp:")
	if !ok {
		return "", fmt.Errorf("config capture.hep %q: want udp:host:port", c.HEP)
	}
	host, port, err := net.SplitHostPort(rest)
	if err != nil || host == "" || port == "" {
		return "", fmt.Errorf("config capture.hep %q: want udp:host:port", c.HEP)
	}
	return rest, nil
}

// validate checks the capture section.
func (c CaptureConfig) validate() error {
	if c.Queue < 0 || c.Queue > maxCaptureQueue {
		return fmt.Errorf("config capture.queue %d: want 0 (the default) to %d", c.Queue, maxCaptureQueue)
	}
	if !c.on() {
		return nil
	}
	_, err := c.collector()
	return err
}

// newCapture builds the HEP sender when capture is on, hooks it into the
// transport and registers its metrics. The socket opens in startCapture.
func (s *Server) newCapture(tcfg *transport.Config, log *slog.Logger) error {
	c := s.cfg.Capture
	if !c.on() {
		return nil
	}
	addr, err := c.collector()
	if err != nil {
		return err
	}
	snd, err := hep.NewSender(hep.Config{Addr: addr, NodeID: c.NodeID, Password: c.Password, Queue: c.Queue, Logger: log})
	if err != nil {
		return fmt.Errorf("config capture: %w", err)
	}
	s.capture = snd
	tcfg.Capture = snd.Capture
	const dropHelp = "Captured messages not sent to the HEP collector, by reason (queue_full, send_error)."
	s.reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "hlas", Subsystem: "capture", Name: "hep_sent_total",
			Help: "Captured messages sent to the HEP collector.",
		}, func() float64 { return float64(snd.Stats().Sent) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "hlas", Subsystem: "capture", Name: "hep_dropped_total", Help: dropHelp,
			ConstLabels: prometheus.Labels{"reason": "queue_full"},
		}, func() float64 { return float64(snd.Stats().QueueFull) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "hlas", Subsystem: "capture", Name: "hep_dropped_total", Help: dropHelp,
			ConstLabels: prometheus.Labels{"reason": "send_error"},
		}, func() float64 { return float64(snd.Stats().SendErrors) }),
	)
	return nil
}

// startCapture opens the socket to the collector.
func (s *Server) startCapture() error {
	if s.capture == nil {
		return nil
	}
	if err := s.capture.Start(); err != nil {
		return fmt.Errorf("capture: %w", err)
	}
	return nil
}

// closeCapture sends what is queued and closes the socket; it runs once
// the transport, which captures, is closed.
func (s *Server) closeCapture() error {
	if s.capture == nil {
		return nil
	}
	return s.capture.Close()
}

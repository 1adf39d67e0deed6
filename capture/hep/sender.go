package hep

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultQueue is the default Config.Queue.
const DefaultQueue = 4096

// slotKeep bounds the buffer a queue slot keeps between packets: a rare
// huge message does not pin its size in every slot it passes through.
const slotKeep = 16 << 10

// Config configures a Sender.
type Config struct {
	// Addr is the collector's UDP address, host:port.
	Addr string
	// NodeID is the capture agent id sent with every packet (chunk 12).
	NodeID uint32
	// Password is the collector's auth key (chunk 14); empty sends none.
	Password string
	// Queue is how many packets may wait for the sending goroutine;
	// beyond it Capture drops and counts. Default 4096.
	Queue int
	// Logger receives the sender's logs, with feature=capture. Nil
	// discards them.
	Logger *slog.Logger
}

// Stats are a Sender's counters since it started.
type Stats struct {
	// Sent counts packets the collector's socket accepted.
	Sent uint64
	// QueueFull counts messages dropped because the queue was full.
	QueueFull uint64
	// SendErrors counts packets lost to a failed write, or that could not
	// be encoded (a message too long for one HEP packet).
	SendErrors uint64
}

// slot is one queued packet, encoded.
type slot struct{ buf []byte }

// Sender encodes captured messages into a fixed pool of queue slots and
// sends them from one goroutine, so that the goroutines that capture
// never wait on the network: a full queue drops the message. Its methods
// are safe for concurrent use.
type Sender struct {
	cfg   Config
	log   *slog.Logger
	free  chan *slot // slots to fill; Capture takes, the sender returns
	ready chan *slot // slots to send, in order
	done  chan struct{}
	exit  chan struct{} // closed when the sending goroutine has returned

	mu     sync.Mutex // Start and Close
	conn   *net.UDPConn
	closed bool

	sent, queueFull, sendErrors atomic.Uint64
}

// NewSender checks cfg and sets up the queue. Messages captured before
// Start wait in the queue (and are dropped once it is full).
func NewSender(cfg Config) (*Sender, error) {
	if cfg.Queue < 0 {
		return nil, fmt.Errorf("hep: queue %d is negative", cfg.Queue)
	}
	if _, _, err := net.SplitHostPort(cfg.Addr); err != nil {
		return nil, fmt.Errorf("hep: collector %q: %w", cfg.Addr, err)
	}
	if cfg.Queue == 0 {
		cfg.Queue = DefaultQueue
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Sender{
		cfg:   cfg,
		log:   cfg.Logger.With("feature", "capture"),
		free:  make(chan *slot, cfg.Queue),
		ready: make(chan *slot, cfg.Queue),
		done:  make(chan struct{}),
		exit:  make(chan struct{}),
	}
	slots := make([]slot, cfg.Queue)
	for i := range slots {
		s.free <- &slots[i]
	}
	return s, nil
}

// Start resolves the collector's address, opens the socket and starts
// the sending goroutine.
func (s *Sender) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return errors.New("hep: sender closed")
	case s.conn != nil:
		return errors.New("hep: sender already started")
	}
	ua, err := net.ResolveUDPAddr("udp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("hep: collector %s: %w", s.cfg.Addr, err)
	}
	conn, err := net.DialUDP("udp", nil, ua)
	if err != nil {
		return fmt.Errorf("hep: collector %s: %w", s.cfg.Addr, err)
	}
	s.conn = conn
	go s.run()
	s.log.Info("capturing to HEP collector", "addr", ua.String(), "node_id", s.cfg.NodeID, "queue", s.cfg.Queue)
	return nil
}

// Capture queues one message for the collector; it has the signature of
// the transport's Config.Capture hook. out says the message was sent from
// local to remote, else received by local from remote; proto is the
// transport (UDP, TCP, TLS, WS, WSS: all but UDP travel as TCP). data is
// copied, never kept. It never blocks: with the queue full the message
// is dropped and counted.
func (s *Sender) Capture(out bool, proto string, local, remote netip.AddrPort, data []byte) {
	var sl *slot
	select {
	case sl = <-s.free:
	default:
		s.queueFull.Add(1)
		return
	}
	p := Packet{
		IPProtocol: IPProtoTCP,
		Src:        remote, Dst: local,
		Time:      time.Now(),
		ProtoType: ProtoSIP,
		NodeID:    s.cfg.NodeID,
		Password:  s.cfg.Password,
		Payload:   data,
	}
	if proto == "UDP" {
		p.IPProtocol = IPProtoUDP
	}
	if out {
		p.Src, p.Dst = local, remote
	}
	b, err := p.Append(sl.buf[:0])
	if err != nil {
		s.sendErrors.Add(1)
		s.free <- sl // cannot block: the slot came from free
		return
	}
	sl.buf = b
	s.ready <- sl // cannot block: there are only as many slots as room
}

// run sends queued packets until Close, then what is still queued.
func (s *Sender) run() {
	defer close(s.exit)
	for {
		select {
		case sl := <-s.ready:
			s.send(sl)
		case <-s.done:
			for {
				select {
				case sl := <-s.ready:
					s.send(sl)
				default:
					return
				}
			}
		}
	}
}

// send writes one packet and gives its slot back.
func (s *Sender) send(sl *slot) {
	_, err := s.conn.Write(sl.buf)
	if err != nil {
		// ECONNREFUSED from an earlier packet (no collector listening)
		// and a full socket buffer land here alike: the packet is lost.
		// The first loss is worth a warning, the rest only counting.
		if s.sendErrors.Add(1) == 1 {
			s.log.Warn("hep send failed", "err", err)
		} else {
			s.log.Debug("hep send failed", "err", err)
		}
	} else {
		s.sent.Add(1)
	}
	if cap(sl.buf) > slotKeep {
		sl.buf = nil
	}
	s.free <- sl
}

// Stats returns the counters.
func (s *Sender) Stats() Stats {
	return Stats{Sent: s.sent.Load(), QueueFull: s.queueFull.Load(), SendErrors: s.sendErrors.Load()}
}

// Close sends what is queued, stops the sending goroutine and closes the
// socket. Capture after Close counts drops once the queue is full.
func (s *Sender) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.conn == nil {
		return nil
	}
	close(s.done)
	<-s.exit
	return s.conn.Close()
}

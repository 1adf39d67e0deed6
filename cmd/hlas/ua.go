package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hlas-voip/hlas/server"
	"github.com/hlas-voip/hlas/sip"
	"github.com/hlas-voip/hlas/sip/resolve"
	"github.com/hlas-voip/hlas/ua"
)

const uaUsage = `usage: hlas ua <command> [flags] [target]

commands:
  register   register with --server, refresh until SIGINT/SIGTERM (or
             --duration), then unregister; --once registers and exits
  call       call target, hang up after --duration
  answer     listen on --local and answer calls (--code, --ring, --max-calls)
  message    send a MESSAGE with --body to target
  options    send OPTIONS to target (default: --server)

Each response received prints one line ("<- 180 Ringing"); the exit status
is 0 on success, 1 on a final response >= 300, a timeout or an error, and 2
on bad usage. hlas ua <command> -h lists the flags.
`

// uaFlags are the flags every ua command takes.
type uaFlags struct {
	user, password, authUser, display string
	server, transport, local          string
	rel100, logLevel                  string
	dns                               string
	q, advertise                      string
	registerFirst                     bool
	once                              bool
	expires, timeout, duration, t1    time.Duration
	drain                             time.Duration
	// answer
	code     int
	ring     time.Duration
	maxCalls int
	// message
	body, contentType string
}

func (f *uaFlags) register(fs *flag.FlagSet, cmd string) {
	fs.StringVar(&f.user, "user", "hlas@localhost", "address of record, user@domain")
	fs.StringVar(&f.password, "password", "", "password for digest authentication")
	fs.StringVar(&f.authUser, "auth-user", "", "digest username (default: the user part of --user)")
	fs.StringVar(&f.display, "display", "", "display name")
	fs.StringVar(&f.server, "server", "", "outbound proxy / registrar host:port")
	fs.StringVar(&f.transport, "transport", "udp", "udp, tcp or tls")
	fs.StringVar(&f.local, "local", "", "local host:port (default an ephemeral port on 127.0.0.1, or 0.0.0.0 for a non-loopback server)")
	fs.StringVar(&f.advertise, "contact", "", "host:port written in Contact and Via instead of the local address (a NAT's public side)")
	fs.StringVar(&f.rel100, "100rel", "supported", "reliable provisional responses: supported, require or off")
	fs.StringVar(&f.dns, "dns", "", "comma-separated DNS servers (host[:port]) for RFC 3263 lookups (default those of /etc/resolv.conf)")
	fs.StringVar(&f.logLevel, "log-level", "warn", "debug, info, warn or error (logs go to stderr)")
	fs.DurationVar(&f.expires, "expires", time.Hour, "registration expiry")
	fs.DurationVar(&f.timeout, "timeout", 60*time.Second, "give up (and CANCEL a call) after this long without a final response")
	fs.DurationVar(&f.t1, "t1", 500*time.Millisecond, "SIP timer T1; T2 and T4 scale with it when set")
	fs.DurationVar(&f.drain, "drain", 0, "on exit, wait up to this long for transactions to finish")
	switch cmd {
	case "call", "answer", "register":
		fs.StringVar(&f.q, "q", "", "q-value of the registered Contact, 0 to 1 (RFC 3261 §10.2.1.2)")
	}
	switch cmd {
	case "call", "answer":
		fs.BoolVar(&f.registerFirst, "register", false, "register with --server first (and unregister on exit)")
	}
	switch cmd {
	case "call":
		fs.DurationVar(&f.duration, "duration", 0, "hang up after this long (0: at once)")
	case "register":
		fs.DurationVar(&f.duration, "duration", 0, "stay registered this long, then unregister (0: until SIGINT/SIGTERM)")
		fs.BoolVar(&f.once, "once", false, "register once and exit, leaving the binding at the registrar until it expires")
	case "answer":
		fs.IntVar(&f.code, "code", 200, "final response to send: 200 answers, 486, 603, ... reject")
		fs.DurationVar(&f.ring, "ring", 0, "ring (180) this long before the final response")
		fs.IntVar(&f.maxCalls, "max-calls", 0, "exit after this many calls (0: until SIGINT/SIGTERM)")
	case "message":
		fs.StringVar(&f.body, "body", "hello", "message text")
		fs.StringVar(&f.contentType, "type", "text/plain", "Content-Type of the message")
	}
}

// parseInterleaved parses flags and positional arguments in any order.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// uaMain runs `hlas ua ...` until SIGINT or SIGTERM.
func uaMain(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return uaMainContext(ctx, args, stdout, stderr)
}

// uaMainContext runs `hlas ua ...` until ctx ends: the tests stop a
// registration by cancelling, not by signalling the whole test binary.
func uaMainContext(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, uaUsage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd := args[0]
	switch cmd {
	case "register", "call", "answer", "message", "options":
	default:
		fmt.Fprintf(stderr, "hlas ua: unknown command %q\n%s", cmd, uaUsage)
		return 2
	}
	var f uaFlags
	fs := flag.NewFlagSet("hlas ua "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	f.register(fs, cmd)
	pos, err := parseInterleaved(fs, args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2
	}
	target := ""
	switch {
	case len(pos) == 1:
		target = pos[0]
	case len(pos) > 1:
		fmt.Fprintf(stderr, "hlas ua %s: one target expected, got %q\n", cmd, pos)
		return 2
	}
	if target == "" && (cmd == "call" || cmd == "message") && f.server == "" {
		fmt.Fprintf(stderr, "hlas ua %s: a target is needed\n", cmd)
		return 2
	}
	if target == "" && cmd == "options" {
		if f.server == "" {
			fmt.Fprintln(stderr, "hlas ua options: a target or --server is needed")
			return 2
		}
		target = "sip:" + f.server
	}
	if f.once && f.duration > 0 {
		fmt.Fprintln(stderr, "hlas ua register: --once and --duration exclude each other")
		return 2
	}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	r := &uaRun{f: f, out: stdout, stderr: stderr, stop: stop}
	return r.run(ctx, cmd, target)
}

// uaRun is one ua command's state.
type uaRun struct {
	f      uaFlags
	out    io.Writer
	stderr io.Writer
	stop   context.CancelFunc
	main   string // the method whose responses print without a suffix

	mu    sync.Mutex
	calls int
}

func (r *uaRun) printf(format string, a ...any) {
	r.mu.Lock()
	fmt.Fprintf(r.out, format+"\n", a...)
	r.mu.Unlock()
}

func (r *uaRun) config(cmd string) (ua.Config, error) {
	f := r.f
	local := f.local
	if local == "" {
		local = "127.0.0.1:0"
		if host, _, err := net.SplitHostPort(f.server); err == nil {
			if a, err := netip.ParseAddr(host); err == nil && !a.IsLoopback() {
				local = "0.0.0.0:0"
			}
		}
	}
	cfg := ua.Config{
		Transport:   f.transport,
		Listen:      local,
		User:        f.user,
		AuthUser:    f.authUser,
		Password:    f.password,
		DisplayName: f.display,
		Server:      f.server,
		Expires:     f.expires,
		Q:           f.q,
		Advertise:   f.advertise,
		T1:          f.t1,
		Rel100:      ua.Rel100(f.rel100),
		Logger:      slog.New(slog.NewTextHandler(r.stderr, &slog.HandlerOptions{Level: server.LogLevel(f.logLevel)})),
	}
	switch cfg.Rel100 {
	case ua.Rel100Supported, ua.Rel100Require, ua.Rel100Off:
	default:
		return cfg, fmt.Errorf("--100rel %q: want supported, require or off", f.rel100)
	}
	// Next hops by RFC 3263 (NAPTR, SRV, A/AAAA, /etc/hosts first) with
	// failover; names the DNS does not know fall back to the system
	// resolver.
	var dcfg resolve.Config
	if f.dns != "" {
		dcfg.Servers = strings.Split(f.dns, ",")
	}
	dnsr, err := resolve.New(dcfg)
	if err != nil {
		return cfg, fmt.Errorf("--dns %q: %w", f.dns, err)
	}
	cfg.DNS = dnsr
	if f.t1 != 500*time.Millisecond && f.t1 > 0 {
		cfg.T2, cfg.T4, cfg.TimerD = 8*f.t1, 10*f.t1, 64*f.t1
	}
	cfg.OnResponse = func(req *sip.Request, res *sip.Response) {
		if req.Method == r.main {
			r.printf("<- %d %s", res.StatusCode, res.Reason)
		} else {
			r.printf("<- %d %s (%s)", res.StatusCode, res.Reason, req.Method)
		}
	}
	cfg.OnMessage = func(req *sip.Request) {
		r.printf("<- MESSAGE from %s: %s", req.From.URI.String(), strings.TrimSpace(string(req.Body)))
	}
	cfg.OnRequest = func(_ *ua.Call, req *sip.Request) {
		if req.Method != sip.ACK {
			r.printf("<- %s", req.Method)
		}
	}
	if cmd == "answer" {
		cfg.OnCall = r.answer
	}
	return cfg, nil
}

func (r *uaRun) run(ctx context.Context, cmd, target string) int {
	cfg, err := r.config(cmd)
	if err != nil {
		fmt.Fprintln(r.stderr, "hlas ua:", err)
		return 2
	}
	r.main = map[string]string{"register": sip.REGISTER, "call": sip.INVITE, "answer": "", "message": sip.MESSAGE, "options": sip.OPTIONS}[cmd]
	if cmd == "answer" && r.f.code != 200 && (r.f.code < 300 || r.f.code > 699) {
		fmt.Fprintf(r.stderr, "hlas ua answer: --code %d: want 200 or 300-699\n", r.f.code)
		return 2
	}
	if r.f.registerFirst && r.f.server == "" {
		fmt.Fprintf(r.stderr, "hlas ua %s: --register needs --server\n", cmd)
		return 2
	}
	u, err := ua.New(cfg)
	if err != nil {
		fmt.Fprintln(r.stderr, "hlas ua:", err)
		return 1
	}
	if r.f.registerFirst {
		if code := r.registerOnce(ctx, u); code != 0 {
			r.shutdown(u)
			return code
		}
	}
	code := 0
	switch cmd {
	case "register":
		code = r.register(ctx, u)
	case "call":
		code = r.call(ctx, u, target)
	case "answer":
		r.printf("listening on %s %s as %s", strings.ToLower(u.Transport()), u.Addr(), u.Contact().URI.String())
		<-ctx.Done()
	case "message":
		c, cancel := context.WithTimeout(ctx, r.f.timeout)
		r.printf("-> MESSAGE %s", target)
		_, err = u.Message(c, target, r.f.contentType, []byte(r.f.body))
		cancel()
		code = r.result(err)
	case "options":
		c, cancel := context.WithTimeout(ctx, r.f.timeout)
		r.printf("-> OPTIONS %s", target)
		_, err = u.Options(c, target)
		cancel()
		code = r.result(err)
	}
	if r.f.registerFirst {
		r.unregister(u)
	}
	r.shutdown(u)
	return code
}

// result prints why a request failed and picks the exit status.
func (r *uaRun) result(err error) int {
	if err == nil {
		return 0
	}
	var se *ua.StatusError
	if !errors.As(err, &se) { // a status line was printed already
		r.printf("error: %v", err)
	}
	return 1
}

// shutdown closes the UA, first letting transactions finish for up to
// --drain, and prints what the UA still held: the load tests read it.
func (r *uaRun) shutdown(u *ua.UA) {
	deadline := time.Now().Add(r.f.drain)
	for time.Now().Before(deadline) {
		s := u.Stats()
		if s.Transactions.ServerActive == 0 && s.Transactions.ClientActive == 0 && s.Dialogs == 0 && s.Calls == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	s := u.Stats()
	_ = u.Close()
	r.printf("stats: server_tx=%d client_tx=%d dialogs=%d calls=%d calls_handled=%d goroutines=%d",
		s.Transactions.ServerActive, s.Transactions.ClientActive, s.Dialogs, s.Calls, r.handled(), runtime.NumGoroutine())
}

func (r *uaRun) handled() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls
}

// registerOnce registers the UA's Contact and prints the outcome.
func (r *uaRun) registerOnce(ctx context.Context, u *ua.UA) int {
	c, cancel := context.WithTimeout(ctx, r.f.timeout)
	defer cancel()
	r.printf("-> REGISTER %s", u.AOR().String())
	if _, err := u.Register(c); err != nil {
		return r.result(err)
	}
	r.printf("registered %s at %s, expires %s", u.AOR().String(), u.Contact().URI.String(), u.Registered())
	return 0
}

// unregister removes the binding --register made; run's shutdown follows.
func (r *uaRun) unregister(u *ua.UA) {
	c, cancel := context.WithTimeout(context.Background(), r.f.timeout)
	defer cancel()
	r.printf("-> REGISTER %s (expires 0)", u.AOR().String())
	_, _ = u.Unregister(c)
}

// register registers and, unless --once, stays: the UA refreshes the
// binding at half its granted expiry (each refresh prints its response)
// until --duration passes or ctx ends, then the binding is removed. A
// registration left behind would point calls at a port nobody listens
// on, so --once says plainly what it leaves.
func (r *uaRun) register(ctx context.Context, u *ua.UA) int {
	if code := r.registerOnce(ctx, u); code != 0 {
		return code
	}
	if r.f.once {
		granted := u.Registered()
		r.printf("left behind: the registrar sends calls for %s to %s for %s (until %s), and nothing listens there once this exits;"+
			" without --once, hlas ua register stays, refreshes and unregisters when stopped",
			u.AOR().String(), u.Contact().URI.String(), granted, time.Now().Add(granted).UTC().Format(time.RFC3339))
		return 0
	}
	if r.f.duration > 0 {
		r.printf("staying registered for %s, refreshing every %s", r.f.duration, u.Registered()/2)
	} else {
		r.printf("staying registered, refreshing every %s; SIGINT or SIGTERM unregisters", u.Registered()/2)
	}
	var until <-chan time.Time
	if r.f.duration > 0 {
		t := time.NewTimer(r.f.duration)
		defer t.Stop()
		until = t.C
	}
	select {
	case <-ctx.Done():
	case <-until:
	}
	c2, cancel2 := context.WithTimeout(context.Background(), r.f.timeout)
	defer cancel2()
	r.printf("-> REGISTER %s (expires 0)", u.AOR().String())
	if _, err := u.Unregister(c2); err != nil {
		return r.result(err)
	}
	return 0
}

func (r *uaRun) call(ctx context.Context, u *ua.UA, target string) int {
	if target == "" {
		target = "sip:" + r.f.server
	}
	setup, cancel := context.WithTimeout(ctx, r.f.timeout)
	defer cancel()
	r.printf("-> INVITE %s", target)
	c, err := u.Call(setup, target)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			r.printf("timeout after %s: cancelled", r.f.timeout)
		}
		return r.result(err)
	}
	r.printf("call established")
	var t <-chan time.Time
	if r.f.duration > 0 {
		t = time.After(r.f.duration)
	} else {
		t = time.After(0)
	}
	select {
	case <-c.Done():
		r.printf("call ended by the peer")
		return 0
	case <-ctx.Done():
	case <-t:
	}
	hc, hcancel := context.WithTimeout(context.Background(), r.f.timeout)
	defer hcancel()
	r.printf("-> BYE")
	if err := c.Hangup(hc); err != nil {
		r.printf("error: hangup: %v", err)
		return 1
	}
	r.printf("call ended")
	return 0
}

// answer handles one incoming call for `hlas ua answer`.
func (r *uaRun) answer(c *ua.Call) {
	req := c.Request()
	r.printf("<- INVITE from %s to %s", req.From.URI.String(), req.URI.String())
	defer func() {
		<-c.Done()
		reason := "hung up"
		if err := c.Err(); err != nil {
			reason = err.Error()
		}
		r.printf("call ended: %s", reason)
		r.mu.Lock()
		r.calls++
		n := r.calls
		r.mu.Unlock()
		if r.f.maxCalls > 0 && n >= r.f.maxCalls {
			r.stop()
		}
	}()
	ctx := c.Context()
	if r.f.code == 200 || r.f.ring > 0 {
		if err := c.Ring(ctx); err != nil {
			r.printf("error: 180: %v", err)
			return
		}
		r.printf("-> 180 Ringing")
	}
	if r.f.ring > 0 {
		select {
		case <-c.Done():
			return
		case <-time.After(r.f.ring):
		}
	}
	if r.f.code != 200 {
		r.printf("-> %d %s", r.f.code, sip.StatusText(r.f.code))
		_ = c.Reject(r.f.code, "")
		return
	}
	r.printf("-> 200 OK")
	if err := c.Answer(ctx); err != nil {
		r.printf("error: answer: %v", err)
		return
	}
	r.printf("call established")
}

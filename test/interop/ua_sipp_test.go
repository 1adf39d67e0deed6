//go:build interop

package interop

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// uaProc is one running `hlas ua ...` process.
type uaProc struct {
	cmd    *exec.Cmd
	output *outputBuffer
	exited chan struct{}
	err    error
}

// startUA runs `hlas ua args...` and, for a listening command, waits for
// its "listening on" line.
func startUA(t *testing.T, listening bool, args ...string) *uaProc {
	t.Helper()
	p := &uaProc{output: &outputBuffer{limit: 8 << 20}, exited: make(chan struct{})}
	p.cmd = exec.Command(hlasBin, append([]string{"ua"}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = p.output, p.output
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Logf("started hlas ua (pid %d): %s", p.cmd.Process.Pid, strings.Join(args, " "))
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			p.cmd.Process.Kill()
			<-p.exited
		}
		out := p.output.String()
		if strings.Contains(out, "WARNING: DATA RACE") || strings.Contains(out, "panic: ") {
			t.Errorf("hlas ua raced or panicked:\n%s", p.output.Tail(maxLoggedOutput))
		}
	})
	if listening {
		deadline := time.Now().Add(readyTimeout)
		for !strings.Contains(p.output.String(), "listening on") {
			if time.Now().After(deadline) {
				t.Fatalf("hlas ua did not start listening:\n%s", p.output.String())
			}
			select {
			case <-p.exited:
				t.Fatalf("hlas ua exited: %v\n%s", p.err, p.output.String())
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	return p
}

// wait waits for the process to exit and returns its exit code.
func (p *uaProc) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(timeout):
		t.Errorf("hlas ua still running after %v; killing it", timeout)
		p.cmd.Process.Kill()
		<-p.exited
	}
	if p.cmd.ProcessState == nil {
		return -1
	}
	return p.cmd.ProcessState.ExitCode()
}

// sippRun is one running sipp process.
type sippRun struct {
	cmd  *exec.Cmd
	out  bytes.Buffer
	dir  string
	done chan error
}

// startSipp runs sipp with args (a -sf scenario path relative to
// testdata, or -sn) from localIP on a free port.
func startSipp(t *testing.T, localIP string, args ...string) (*sippRun, int) {
	t.Helper()
	port, err := freePort(localIP, false)
	if err != nil {
		t.Fatal(err)
	}
	s := &sippRun{dir: t.TempDir(), done: make(chan error, 1)}
	for i, a := range args {
		if i > 0 && args[i-1] == "-sf" {
			abs, _ := filepath.Abs(filepath.Join("testdata", a))
			args[i] = abs
		}
	}
	full := append([]string{"-i", localIP, "-p", strconv.Itoa(port), "-nostdin",
		"-trace_err", "-error_file", filepath.Join(s.dir, "errors.log")}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	s.cmd = exec.CommandContext(ctx, "sipp", full...)
	s.cmd.Dir = s.dir
	s.cmd.Stdout, s.cmd.Stderr = &s.out, &s.out
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Logf("started sipp %s", strings.Join(full, " "))
	go func() { s.done <- s.cmd.Wait() }()
	return s, port
}

// wait requires sipp to exit 0.
func (s *sippRun) wait(t *testing.T) {
	t.Helper()
	if err := <-s.done; err != nil {
		t.Errorf("sipp exited: %v\n%s", err, tail(s.out.String(), 4000))
		if b, err := os.ReadFile(filepath.Join(s.dir, "errors.log")); err == nil {
			t.Logf("sipp errors:\n%s", tail(string(b), 6000))
		}
	}
}

var statsLine = regexp.MustCompile(`stats: server_tx=(\d+) client_tx=(\d+) dialogs=(\d+) calls=(\d+) calls_handled=(\d+) goroutines=(\d+)`)

// checkAtRest requires the exit stats line of `hlas ua` to show no
// transactions, dialogs or calls, calls handled calls, and only the
// goroutines of main and signal handling.
func checkAtRest(t *testing.T, out string, calls int) {
	t.Helper()
	m := statsLine.FindStringSubmatch(out)
	if m == nil {
		t.Errorf("no stats line in:\n%s", tail(out, 4000))
		return
	}
	if m[1] != "0" || m[2] != "0" || m[3] != "0" || m[4] != "0" {
		t.Errorf("left behind: %s", m[0])
	}
	if calls >= 0 && m[5] != strconv.Itoa(calls) {
		t.Errorf("handled %s calls, want %d", m[5], calls)
	}
	if g, _ := strconv.Atoi(m[6]); g > 4 {
		t.Errorf("%d goroutines left after Close", g)
	}
}

func uaListenAddr(t *testing.T) string {
	port, err := freePort("127.0.0.1", false)
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

var uaTransports = []struct{ name, sipp string }{{"udp", "u1"}, {"tcp", "t1"}}

// sipp's built-in uac scenario calls `hlas ua answer`.
func TestUAAnswerSippUAC(t *testing.T) {
	for _, tr := range uaTransports {
		t.Run(tr.name, func(t *testing.T) {
			addr := uaListenAddr(t)
			const calls = 10
			ua := startUA(t, true, "answer", "--transport", tr.name, "--local", addr,
				"--max-calls", strconv.Itoa(calls), "--t1", "50ms", "--drain", "10s")
			s, _ := startSipp(t, "127.0.0.1", "-sn", "uac", "-t", tr.sipp, "-m", strconv.Itoa(calls), "-r", "20",
				"-timeout", "30s", "-timeout_error", addr)
			s.wait(t)
			if code := ua.wait(t, 30*time.Second); code != 0 {
				t.Errorf("hlas ua answer exit %d", code)
			}
			out := ua.output.String()
			checkAtRest(t, out, calls)
			if t.Failed() {
				t.Logf("hlas ua output:\n%s", tail(out, 6000))
			}
		})
	}
}

// `hlas ua call` against sipp's built-in uas scenario.
func TestUACallSippUAS(t *testing.T) {
	for _, tr := range uaTransports {
		t.Run(tr.name, func(t *testing.T) {
			s, port := startSipp(t, "127.0.0.1", "-sn", "uas", "-t", tr.sipp, "-m", "1", "-timeout", "30s", "-timeout_error")
			time.Sleep(300 * time.Millisecond) // sipp binds
			target := fmt.Sprintf("sip:service@127.0.0.1:%d", port)
			if tr.name == "tcp" {
				target += ";transport=tcp"
			}
			// --drain keeps the process (and its TCP connection) until the
			// INVITE transaction ends, past sipp's final 4 s timewait: sipp
			// counts a call whose connection closes during it as failed.
			ua := startUA(t, false, "call", "--transport", tr.name, "--duration", "300ms", "--t1", "100ms", "--drain", "15s", target)
			code := ua.wait(t, 30*time.Second)
			s.wait(t)
			out := ua.output.String()
			if code != 0 || !strings.Contains(out, "<- 180 Ringing") || !strings.Contains(out, "<- 200 OK\n") ||
				!strings.Contains(out, "<- 200 OK (BYE)") {
				t.Errorf("hlas ua call exit %d:\n%s", code, out)
			}
			checkAtRest(t, out, 0)
		})
	}
}

// A call cancelled before answer: sipp plays the callee (testdata/
// uas_cancel.xml) and the caller (testdata/uac_cancel.xml).
func TestUACancelSipp(t *testing.T) {
	t.Run("hlas cancels", func(t *testing.T) {
		s, port := startSipp(t, "127.0.0.1", "-sf", "uas_cancel.xml", "-m", "1", "-timeout", "30s", "-timeout_error")
		time.Sleep(300 * time.Millisecond)
		ua := startUA(t, false, "call", "--timeout", "1s", fmt.Sprintf("sip:service@127.0.0.1:%d", port))
		code := ua.wait(t, 30*time.Second)
		s.wait(t)
		out := ua.output.String()
		if code != 1 || !strings.Contains(out, "<- 487 Request Terminated") {
			t.Errorf("exit %d, want 1 after a 487:\n%s", code, out)
		}
		// Timer D keeps the INVITE client transaction 32 s (RFC 3261
		// §17.1.1.2) whatever T1 is; the server side is checked below.
	})
	t.Run("sipp cancels", func(t *testing.T) {
		addr := uaListenAddr(t)
		ua := startUA(t, true, "answer", "--local", addr, "--ring", "10s", "--max-calls", "3", "--t1", "50ms", "--drain", "10s")
		s, _ := startSipp(t, "127.0.0.1", "-sf", "uac_cancel.xml", "-m", "3", "-r", "10", "-timeout", "30s", "-timeout_error", addr)
		s.wait(t)
		if code := ua.wait(t, 30*time.Second); code != 0 {
			t.Errorf("exit %d", code)
		}
		out := ua.output.String()
		if strings.Count(out, "call ended: ua: call cancelled") != 3 {
			t.Errorf("calls not cancelled:\n%s", out)
		}
		checkAtRest(t, out, 3)
	})
}

// RFC 3262 against sipp: reliable 180, PRACK, in both directions.
func TestUAPrackSipp(t *testing.T) {
	t.Run("sipp UAC requires 100rel", func(t *testing.T) {
		addr := uaListenAddr(t)
		ua := startUA(t, true, "answer", "--local", addr, "--max-calls", "5", "--t1", "50ms", "--drain", "10s")
		s, _ := startSipp(t, "127.0.0.1", "-sf", "uac_prack.xml", "-m", "5", "-r", "10", "-timeout", "30s", "-timeout_error", addr)
		s.wait(t)
		if code := ua.wait(t, 30*time.Second); code != 0 {
			t.Errorf("exit %d", code)
		}
		out := ua.output.String()
		if strings.Count(out, "<- PRACK") != 5 {
			t.Errorf("PRACKs not seen:\n%s", out)
		}
		checkAtRest(t, out, 5)
	})
	t.Run("sipp UAS sends a reliable 180", func(t *testing.T) {
		s, port := startSipp(t, "127.0.0.1", "-sf", "uas_prack.xml", "-m", "1", "-timeout", "30s", "-timeout_error")
		time.Sleep(300 * time.Millisecond)
		ua := startUA(t, false, "call", "--duration", "200ms", fmt.Sprintf("sip:service@127.0.0.1:%d", port))
		code := ua.wait(t, 30*time.Second)
		s.wait(t)
		out := ua.output.String()
		if code != 0 || !strings.Contains(out, "<- 200 OK (PRACK)") {
			t.Errorf("exit %d:\n%s", code, out)
		}
	})
}

// Load: 2000 calls at 100 calls/s from sipp's uac through `hlas ua
// answer` leave no transactions, dialogs, calls or goroutines behind.
func TestUALoadSipp(t *testing.T) {
	const calls = 2000
	addr := uaListenAddr(t)
	ua := startUA(t, true, "answer", "--local", addr, "--max-calls", strconv.Itoa(calls), "--t1", "50ms", "--drain", "15s")
	s, _ := startSipp(t, "127.0.0.1", "-sn", "uac", "-m", strconv.Itoa(calls), "-r", "100", "-l", "300",
		"-timeout", "120s", "-timeout_error", addr)
	s.wait(t)
	if code := ua.wait(t, 60*time.Second); code != 0 {
		t.Errorf("exit %d", code)
	}
	checkAtRest(t, ua.output.String(), calls)
	if t.Failed() {
		t.Logf("hlas ua output (tail):\n%s", ua.output.Tail(4000))
	}
}

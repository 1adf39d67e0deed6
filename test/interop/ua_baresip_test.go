//go:build interop

package interop

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// baresipDebianPackage provides /usr/bin/baresip with the g711, ausine,
// aufile, account and menu modules, and no GUI.
const baresipDebianPackage = "baresip-core"

// baresipConfig writes a configuration directory for a headless baresip
// on loopback: no audio device (a 440 Hz sine as source, a WAV file as
// player), G.711 only, one account that answers calls automatically.
func baresipConfig(t *testing.T, listen string) string {
	t.Helper()
	return baresipConfigWith(t, listen, baresipOptions{})
}

// baresipOptions adjusts baresipConfigWith; the zero value is
// baresipConfig's.
type baresipOptions struct {
	// rtpPorts is the RTP port range, "40100-40300" if empty.
	rtpPorts string
	// accounts is the accounts file; empty: baresip@127.0.0.1, answering
	// automatically with G.711.
	accounts string
	// extra are more lines for the config file, after the modules.
	extra []string
}

// baresipConfigWith is baresipConfig with the changes in opts.
func baresipConfigWith(t *testing.T, listen string, opts baresipOptions) string {
	t.Helper()
	if opts.rtpPorts == "" {
		opts.rtpPorts = "40100-40300"
	}
	if opts.accounts == "" {
		opts.accounts = "<sip:baresip@127.0.0.1>;regint=0;answermode=auto;audio_codecs=PCMU/8000/1,PCMA/8000/1\n"
	}
	if _, err := exec.LookPath("baresip"); err != nil {
		t.Fatalf("baresip is required but not installed (%v); install the Debian package %q", err, baresipDebianPackage)
	}
	dir := t.TempDir()
	config := strings.Join(append([]string{
		"poll_method epoll",
		"sip_listen " + listen,
		"sip_trans_def udp",
		// ausine produces 48 kHz stereo only; the audio core resamples.
		"audio_source ausine,440",
		"audio_player aufile," + filepath.Join(dir, "received.wav"),
		"audio_alert aufile," + filepath.Join(dir, "none.wav"),
		"ausrc_srate 48000",
		"auplay_srate 48000",
		"ausrc_channels 2",
		"auplay_channels 2",
		"rtp_ports " + opts.rtpPorts,
		"module_path /usr/lib/baresip/modules",
		"module g711.so",
		"module ausine.so",
		"module aufile.so",
		"module_app account.so",
		"module_app menu.so",
	}, opts.extra...), "\n") + "\n"
	for name, body := range map[string]string{"config": config, "accounts": opts.accounts} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// startBaresip runs baresip for at most life, with commands run at start.
func startBaresip(t *testing.T, dir string, life time.Duration, commands ...string) (*outputBuffer, chan error) {
	t.Helper()
	args := []string{"-f", dir, "-t", strconv.Itoa(int(life / time.Second))}
	for _, c := range commands {
		args = append(args, "-e", c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), life+20*time.Second)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, "baresip", args...)
	out := &outputBuffer{limit: 4 << 20}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Logf("started baresip (pid %d) %s", cmd.Process.Pid, strings.Join(args, " "))
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	deadline := time.Now().Add(readyTimeout)
	for !strings.Contains(out.String(), "baresip is ready") {
		if time.Now().After(deadline) {
			t.Fatalf("baresip not ready:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return out, done
}

// `hlas ua call` calls baresip, which answers automatically.
func TestBaresipAnswersHlasCall(t *testing.T) {
	for _, tr := range []string{"udp", "tcp"} {
		t.Run(tr, func(t *testing.T) {
			listen := uaListenAddr(t)
			out, done := startBaresip(t, baresipConfig(t, listen), 6*time.Second)
			target := "sip:baresip@" + listen
			if tr == "tcp" {
				target += ";transport=tcp"
			}
			ua := startUA(t, false, "call", "--transport", tr, "--duration", "1s", target)
			code := ua.wait(t, 30*time.Second)
			uaOut := ua.output.String()
			if code != 0 || !strings.Contains(uaOut, "<- 200 ") || !strings.Contains(uaOut, "<- 200 OK (BYE)") {
				t.Errorf("hlas ua call exit %d:\n%s", code, uaOut)
			}
			if err := <-done; err != nil {
				t.Errorf("baresip: %v", err)
			}
			bs := out.String()
			if !strings.Contains(bs, "Call established") || !strings.Contains(bs, "terminated") {
				t.Errorf("baresip did not see the call:\n%s", tail(bs, 4000))
			}
		})
	}
}

// baresip calls `hlas ua answer` and hangs up when it quits.
func TestBaresipCallsHlasAnswer(t *testing.T) {
	addr := uaListenAddr(t)
	ua := startUA(t, true, "answer", "--local", addr, "--max-calls", "1", "--t1", "50ms", "--drain", "10s")
	out, done := startBaresip(t, baresipConfig(t, uaListenAddr(t)), 3*time.Second,
		fmt.Sprintf("/dial sip:hlas@%s", addr))
	if err := <-done; err != nil {
		t.Errorf("baresip: %v", err)
	}
	if code := ua.wait(t, 30*time.Second); code != 0 {
		t.Errorf("hlas ua answer exit %d", code)
	}
	uaOut := ua.output.String()
	if !strings.Contains(uaOut, "call established") || !strings.Contains(uaOut, "<- BYE") {
		t.Errorf("hlas ua answer:\n%s", uaOut)
	}
	checkAtRest(t, uaOut, 1)
	if bs := out.String(); !strings.Contains(bs, "Call established") {
		t.Errorf("baresip:\n%s", tail(bs, 4000))
	}
}

//go:build interop

package interop

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// WebRTC in a real browser: JsSIP and SIP.js, bundled by esbuild from
// npm (testdata/webrtc), run in Debian's headless Chromium driven by
// puppeteer-core (testdata/webrtc/driver.mjs). The page is alice on a
// wss listener of `hlas serve` (RFC 7118), with Chromium's fake
// microphone playing a 1 kHz sine; bob is baresip over UDP, sending a
// 440 Hz sine. hlas bridges the two kinds of media: DTLS-SRTP with ICE
// towards the browser, plain RTP towards bob. Each call must carry audio
// both ways: RTP packets counted by the page's RTCPeerConnection and by
// baresip (at hang-up), and each side's tone heard by the other, in the
// page's decoded audio and in the recording bob's baresip writes. A
// screenshot of the page in each call goes to $HLAS_TEST_OUTPUT, or a
// directory under the system's temporary one; the test logs where.
//
// The npm packages are pinned by testdata/webrtc/package-lock.json and
// installed by `npm ci` there (.ci/run does it); the test fails, not
// skips, without them. Test names start with WebRTC.

const (
	// webrtcDir holds the page sources, the driver and node_modules.
	webrtcDir = "testdata/webrtc"
	// chromiumPath is Debian's Chromium (package chromium).
	chromiumPath = "/usr/bin/chromium"
	// webrtcStep bounds each step in the browser: loading, registering,
	// a call being set up, audio reaching a count, a call ending.
	// Chromium under -race and -parallel 8 on two cores is slow to start.
	webrtcStep = 60 * time.Second
	// webrtcMinPackets is the RTP packets each side must have sent and
	// received in a call: a second of G.711 at 20 ms.
	webrtcMinPackets = 50
	// bobToneHz is the sine bob sends (baresipConfigWith: ausine,440).
	bobToneHz = 440
	// aliceToneHz is the sine the browser's fake microphone plays.
	aliceToneHz = 1000
	// toneSlackHz is how far a measured tone may be from the one sent:
	// the page's analyser has 6 Hz bins, the test's scan 5 Hz steps.
	toneSlackHz = 15
	// webrtcDomain is hlas's domain; both users are in it.
	webrtcDomain = "example.test"
)

// webrtcPasswords are the subscribers' passwords (`hlas user add`).
var webrtcPasswords = map[string]string{"alice": "alice-in-a-browser", "bob": "bob-on-a-desk"}

// requireWebRTCTools fails the test unless node, Chromium and the npm
// packages are installed, and returns the absolute path of webrtcDir.
func requireWebRTCTools(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(webrtcDir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatalf("node is required but not installed (%v); install Node.js 20 or later (Debian package nodejs)", err)
	}
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("%s is required (%v); install the Debian package chromium", chromiumPath, err)
	}
	for _, pkg := range []string{"jssip", "sip.js", "esbuild", "puppeteer-core"} {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", pkg, "package.json")); err != nil {
			t.Fatalf("the npm package %s is not installed in %s (%v); run `npm ci` there "+
				"(e.g. `npm ci --prefix test/interop/testdata/webrtc` from the repository root)", pkg, dir, err)
		}
	}
	return dir
}

// webrtcLab is one hlas with a wss and a UDP listener, the page served
// over HTTP, and bob.
type webrtcLab struct {
	hlas      *server
	wss       string // the wss listener, host:port
	spki      string // base64 SHA-256 of the certificate's public key, for Chromium
	pageURL   string // http://127.0.0.1:port/index.html
	dir       string // webrtcDir, absolute
	fakeAudio string // the WAV file the browser's fake microphone plays
	bob       *webrtcBob
}

// newWebRTCLab builds the page, starts hlas with alice and bob as
// subscribers, and bob registered through it.
func newWebRTCLab(t *testing.T) *webrtcLab {
	t.Helper()
	l := &webrtcLab{dir: requireWebRTCTools(t)}
	l.pageURL = serveWebRTCPage(t, l.dir)
	l.fakeAudio = filepath.Join(t.TempDir(), "alice-tone.wav")
	writeToneWAV(t, l.fakeAudio, aliceToneHz)

	cert, key, spki, pool := webrtcCert(t)
	l.spki = spki
	udpPort, err := freePort("127.0.0.1", false)
	if err != nil {
		t.Fatal(err)
	}
	wssPort, err := freePort("127.0.0.1", false)
	if err != nil {
		t.Fatal(err)
	}
	udp := net.JoinHostPort("127.0.0.1", strconv.Itoa(udpPort))
	l.wss = net.JoinHostPort("127.0.0.1", strconv.Itoa(wssPort))
	listen := []string{"udp:" + udp, "wss:" + l.wss}

	data := t.TempDir()
	for _, u := range []string{"alice", "bob"} {
		if out, err := hlasCmd(t, "", "user", "add", u+"@"+webrtcDomain, "--password", webrtcPasswords[u], "--data", data); err != nil {
			t.Fatalf("hlas user add %s: %v\n%s", u, err, out)
		}
	}
	// The listeners are in the file for the record; startServerWith
	// passes the same on the command line, which wins.
	yaml := fmt.Sprintf("domain: [ %s ]\nlisten: [ %q, %q ]\ntls_cert: %q\ntls_key: %q\nmedia: { relay: auto }\n",
		webrtcDomain, listen[0], listen[1], cert, key)
	path := filepath.Join(t.TempDir(), "hlas.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("hlas config:\n%s", yaml)
	l.hlas = startServerWith(t, serverConfig{listen: listen, args: []string{"--config", path, "--data", data}})
	waitWSS(t, l.hlas, l.wss, pool)

	l.bob = startWebRTCBob(t, udp)
	return l
}

// webrtcCert writes a certificate for 127.0.0.1 and its key into a
// temporary directory; it returns their paths, the base64 SHA-256 of the
// certificate's SubjectPublicKeyInfo (what Chromium's
// --ignore-certificate-errors-spki-list takes) and a pool trusting it.
func webrtcCert(t *testing.T) (certPath, keyPath, spki string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "hlas interop wss"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certPath, keyPath = filepath.Join(dir, "wss.crt"), filepath.Join(dir, "wss.key")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certPath, keyPath, base64.StdEncoding.EncodeToString(sum[:]), pool
}

// waitWSS waits until the wss listener completes a TLS handshake with
// the test's certificate.
func waitWSS(t *testing.T, s *server, addr string, pool *x509.CertPool) {
	t.Helper()
	var err error
	ok := waitFor(readyTimeout, func() bool {
		var c *tls.Conn
		c, err = tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", addr, &tls.Config{RootCAs: pool})
		if err == nil {
			// Closed by a reset: a connection in TIME_WAIT would keep
			// its port from programs that bind without SO_REUSEADDR,
			// such as baresip's TLS listener next to its SIP port.
			c.NetConn().(*net.TCPConn).SetLinger(0)
			c.Close()
		}
		return err == nil || s.hasExited()
	})
	if !ok || err != nil {
		t.Fatalf("the wss listener %s does not complete a TLS handshake with the test's certificate: %v", addr, err)
	}
}

// serveWebRTCPage bundles the pages (build.mjs, esbuild) into a temporary
// directory and serves it on loopback until the test ends. 127.0.0.1
// over HTTP is a secure context, as getUserMedia and WebRTC need. It
// returns the URL of the page.
func serveWebRTCPage(t *testing.T, dir string) string {
	t.Helper()
	out := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "node", "build.mjs", out)
	build.Dir = dir
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("node build.mjs (bundling the pages with esbuild) in %s: %v\n%s", dir, err, b)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/", http.FileServer(http.Dir(out)))
	mux.HandleFunc("/favicon.ico", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String() + "/index.html"
}

// webrtcOutputDir is where the screenshots go: $HLAS_TEST_OUTPUT if set,
// else a directory of the (top-level) test's own under the temporary
// directory, which the test leaves for a person to look at.
func webrtcOutputDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("HLAS_TEST_OUTPUT")
	if dir == "" {
		top, _, _ := strings.Cut(t.Name(), "/")
		dir = filepath.Join(os.TempDir(), "hlas-webrtc-"+fileSafe(top))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// fileSafe turns a test name into a file name.
func fileSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' {
			return r
		}
		return '_'
	}, s)
}

// writeToneWAV writes one second of a sine at hz as 16-bit mono 48 kHz
// WAV; Chromium's fake microphone plays it in a loop.
func writeToneWAV(t *testing.T, path string, hz float64) {
	t.Helper()
	const rate = 48000
	pcm := make([]byte, 2*rate)
	for i := range rate {
		v := int16(12000 * math.Sin(2*math.Pi*hz*float64(i)/rate))
		binary.LittleEndian.PutUint16(pcm[2*i:], uint16(v))
	}
	var h []byte
	h = append(h, "RIFF"...)
	h = binary.LittleEndian.AppendUint32(h, uint32(36+len(pcm)))
	h = append(h, "WAVEfmt "...)
	h = binary.LittleEndian.AppendUint32(h, 16)
	h = binary.LittleEndian.AppendUint16(h, 1) // PCM
	h = binary.LittleEndian.AppendUint16(h, 1) // mono
	h = binary.LittleEndian.AppendUint32(h, rate)
	h = binary.LittleEndian.AppendUint32(h, 2*rate) // bytes a second
	h = binary.LittleEndian.AppendUint16(h, 2)      // bytes a frame
	h = binary.LittleEndian.AppendUint16(h, 16)     // bits a sample
	h = append(h, "data"...)
	h = binary.LittleEndian.AppendUint32(h, uint32(len(pcm)))
	if err := os.WriteFile(path, append(h, pcm...), 0o644); err != nil {
		t.Fatal(err)
	}
}

// readWAV returns the first channel of a 16-bit PCM WAV file and its
// sample rate. A data chunk whose size was never filled in (a recording
// still open) is read to the end of the file.
func readWAV(path string) ([]float64, int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, err
	}
	if len(b) < 12 || string(b[:4]) != "RIFF" || string(b[8:12]) != "WAVE" {
		return nil, 0, fmt.Errorf("%s: not a WAV file", path)
	}
	var channels, bits, rate int
	for off := 12; off+8 <= len(b); {
		id, size := string(b[off:off+4]), int(binary.LittleEndian.Uint32(b[off+4:]))
		body := b[off+8:]
		switch {
		case id == "fmt " && len(body) >= 16:
			if format := binary.LittleEndian.Uint16(body); format != 1 {
				return nil, 0, fmt.Errorf("%s: WAV format %d, want PCM", path, format)
			}
			channels = int(binary.LittleEndian.Uint16(body[2:]))
			rate = int(binary.LittleEndian.Uint32(body[4:]))
			bits = int(binary.LittleEndian.Uint16(body[14:]))
		case id == "data":
			if bits != 16 || channels < 1 || rate <= 0 {
				return nil, 0, fmt.Errorf("%s: %d bits, %d channels at %d Hz; want 16-bit PCM", path, bits, channels, rate)
			}
			if size == 0 || size > len(body) {
				size = len(body)
			}
			frame := 2 * channels
			samples := make([]float64, size/frame)
			for i := range samples {
				samples[i] = float64(int16(binary.LittleEndian.Uint16(body[i*frame:]))) / 32768
			}
			return samples, rate, nil
		}
		off += 8 + size + size&1
	}
	return nil, 0, fmt.Errorf("%s: no data chunk", path)
}

// strongestTone returns the frequency (in 5 Hz steps from 100 Hz to
// 3.9 kHz, below the Nyquist frequency of G.711) with the most power in
// samples, by the Goertzel algorithm, and the signal's RMS level.
func strongestTone(samples []float64, rate int) (hz, rms float64) {
	var sum float64
	for _, v := range samples {
		sum += v * v
	}
	rms = math.Sqrt(sum / float64(max(len(samples), 1)))
	best := -1.0
	for f := 100.0; f <= 3900; f += 5 {
		coeff := 2 * math.Cos(2*math.Pi*f/float64(rate))
		var s1, s2 float64
		for _, v := range samples {
			s1, s2 = v+coeff*s1-s2, s1
		}
		if p := s1*s1 + s2*s2 - coeff*s1*s2; p > best {
			best, hz = p, f
		}
	}
	return hz, rms
}

// webrtcBob is baresip registered as bob over UDP: it answers calls
// automatically, takes commands on its console (the cons module, over
// UDP), records the audio it decodes in each call (the sndfile module:
// dump-TIME-dec.wav in recordings) and prints each call's RTP statistics
// when the call ends (rtp_stats).
type webrtcBob struct {
	out        *outputBuffer
	console    string
	recordings string
}

// startWebRTCBob starts bob with hlas at server (host:port) as outbound
// proxy and waits until hlas accepted his registration.
func startWebRTCBob(t *testing.T, server string) *webrtcBob {
	t.Helper()
	b := &webrtcBob{console: uaListenAddr(t), recordings: t.TempDir()}
	dir := baresipConfigWith(t, baresipListenAddr(t), baresipOptions{
		rtpPorts: "40900-41100",
		accounts: fmt.Sprintf("<sip:bob@%s>;auth_pass=%s;outbound=\"sip:%s\";regint=300;answermode=auto;"+
			"audio_codecs=PCMU/8000/1,PCMA/8000/1\n", webrtcDomain, webrtcPasswords["bob"], server),
		extra: []string{
			"module cons.so",
			"cons_listen " + b.console,
			"module sndfile.so",
			"snd_path " + b.recordings,
			"rtp_stats yes",
		},
	})
	b.out, _ = startBaresip(t, dir, 10*time.Minute)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("bob (baresip) output:\n%s", tail(b.out.String(), 8000))
		}
	})
	if !waitFor(readyTimeout, func() bool { return strings.Contains(b.out.String(), "200 OK") }) {
		t.Fatalf("bob (baresip) did not register with hlas at %s", server)
	}
	return b
}

// baresipListenAddr returns a loopback address for baresip's SIP
// listeners: a port free for UDP and TCP, and the one after it free for
// TCP, where baresip puts its TLS listener. Both are below the kernel's
// ephemeral range, so that no connection of a test running beside it
// takes the second between the check and baresip's bind (CI saw
// "sock_bind: Address already in use" for the TLS port).
func baresipListenAddr(t *testing.T) string {
	t.Helper()
	for range 100 {
		port, err := freePort("127.0.0.1", true)
		if err != nil {
			t.Fatal(err)
		}
		if port < 65535 && portFree("127.0.0.1", port+1) {
			return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		}
	}
	t.Fatal("no two free ports in a row on 127.0.0.1")
	return ""
}

// command sends a console command ("/dial sip:...", "/hangup").
func (b *webrtcBob) command(t *testing.T, cmd string) {
	t.Helper()
	consoleCommand(t, b.console, cmd, 100*time.Millisecond)
}

// count is how often s is in bob's output so far.
func (b *webrtcBob) count(s string) int {
	return strings.Count(b.out.String(), s)
}

// rtpStatsRE matches the packet line of baresip's RTP statistics, which
// it prints when a call ends: "packets:  TRANSMIT  RECEIVE".
var rtpStatsRE = regexp.MustCompile(`(?m)^packets:\s+(\d+)\s+(\d+)`)

// callStats waits for the statistics of bob's n-th call (from 1) and
// returns the RTP packets he sent and received in it.
func (b *webrtcBob) callStats(n int, timeout time.Duration) (sent, received int, ok bool) {
	ok = waitFor(timeout, func() bool {
		m := rtpStatsRE.FindAllStringSubmatch(b.out.String(), -1)
		if len(m) < n {
			return false
		}
		sent, _ = strconv.Atoi(m[n-1][1])
		received, _ = strconv.Atoi(m[n-1][2])
		return true
	})
	return sent, received, ok
}

// heard returns the strongest tone and the level of what bob decoded in
// his n-th call (from 1), in up to a second from half a second in (the
// start may hold the set-up's silence), and how long the recording is.
func (b *webrtcBob) heard(n int) (hz, rms, seconds float64, err error) {
	files, err := filepath.Glob(filepath.Join(b.recordings, "dump-*-dec.wav"))
	if err != nil {
		return 0, 0, 0, err
	}
	if len(files) < n {
		return 0, 0, 0, fmt.Errorf("%d recordings in %s, want %d", len(files), b.recordings, n)
	}
	sort.Strings(files) // by the time in their names
	samples, rate, err := readWAV(files[n-1])
	if err != nil {
		return 0, 0, 0, err
	}
	seconds = float64(len(samples)) / float64(rate)
	if len(samples) < rate {
		return 0, 0, seconds, fmt.Errorf("%s holds only %.1fs", files[n-1], seconds)
	}
	hz, rms = strongestTone(samples[rate/2:min(len(samples), rate*3/2)], rate)
	return hz, rms, seconds, nil
}

// webrtcBrowser is the node driver (driver.mjs) and the Chromium it runs.
type webrtcBrowser struct {
	cmd         *exec.Cmd
	stdin       io.WriteCloser
	out         *outputBuffer // everything the driver printed
	userDataDir string
	done        chan struct{} // closed when the driver has been waited for
	err         error         // cmd.Wait's, valid after done

	mu     sync.Mutex
	events []webrtcEvent
}

// webrtcTone is the strongest frequency in the page's received audio.
type webrtcTone struct {
	Hz int `json:"hz"`
	DB int `json:"db"`
}

// webrtcEvent is one EVENT line of the driver: the page's events and
// statistics samples, and the driver's own.
type webrtcEvent struct {
	At         time.Time
	Event      string `json:"event"`
	Cause      string `json:"cause"`
	Code       int    `json:"code"`
	Error      string `json:"error"`
	Originator string `json:"originator"`
	Direction  string `json:"direction"`
	From       string `json:"from"`
	PID        int    `json:"pid"`
	Version    string `json:"version"`
	Secure     bool   `json:"secure"`
	Status     int    `json:"status"`
	// Statistics samples ("stats").
	Label string `json:"label"`
	In    struct {
		Packets int         `json:"packets"`
		Bytes   int         `json:"bytes"`
		Lost    int         `json:"lost"`
		Codec   string      `json:"codec"`
		Energy  float64     `json:"energy"`
		Tone    *webrtcTone `json:"tone"`
	} `json:"in"`
	Out struct {
		Packets int    `json:"packets"`
		Bytes   int    `json:"bytes"`
		Codec   string `json:"codec"`
	} `json:"out"`
	ICE  string `json:"ice"`
	DTLS string `json:"dtls"`
	SRTP string `json:"srtp"`
	Pair string `json:"pair"`
}

// String summarises a statistics sample for logs.
func (e webrtcEvent) String() string {
	tone := "none"
	if e.In.Tone != nil {
		tone = fmt.Sprintf("%d Hz at %d dB", e.In.Tone.Hz, e.In.Tone.DB)
	}
	return fmt.Sprintf("received %d packets (%s, lost %d, energy %.4f, strongest tone %s), sent %d (%s); ICE %s, DTLS %s %s, pair %s",
		e.In.Packets, e.In.Codec, e.In.Lost, e.In.Energy, tone, e.Out.Packets, e.Out.Codec, e.ICE, e.DTLS, e.SRTP, e.Pair)
}

// startWebRTCBrowser runs the driver on the page for user (alice) at the lab's
// wss listener with library lib ("jssip" or "sipjs"), and waits until
// the page has loaded. The browser is closed when the test ends, and no
// Chromium process may be left behind.
func startWebRTCBrowser(t *testing.T, l *webrtcLab, lib, user string) *webrtcBrowser {
	t.Helper()
	q := url.Values{
		"lib":      {lib},
		"ws":       {"wss://" + l.wss},
		"uri":      {"sip:" + user + "@" + webrtcDomain},
		"user":     {user},
		"password": {webrtcPasswords[user]},
	}
	b := &webrtcBrowser{out: &outputBuffer{limit: 16 << 20}, userDataDir: t.TempDir(), done: make(chan struct{})}
	args := []string{"driver.mjs", "--chromium", chromiumPath, "--user-data-dir", b.userDataDir,
		"--spki", l.spki, "--fake-audio", l.fakeAudio, "--timeout", strconv.Itoa(int(webrtcStep / time.Millisecond)),
		"--url", l.pageURL + "?" + q.Encode()}
	b.cmd = exec.Command("node", args...)
	b.cmd.Dir = l.dir
	// Its own process group, so that the cleanup can end whatever the
	// driver started; and if the test process dies, the driver dies too.
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	b.cmd.Stderr = b.out
	stdout, err := b.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if b.stdin, err = b.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Logf("started the browser driver (pid %d): node %s", b.cmd.Process.Pid, strings.Join(args, " "))
	go b.read(stdout)
	t.Cleanup(func() { b.stop(t) })

	if ev := b.wait(t, "loaded", 1); ev.Status != http.StatusOK || !ev.Secure {
		t.Fatalf("page %s: HTTP status %d, secure context %v; want 200, and a secure context for WebRTC",
			l.pageURL, ev.Status, ev.Secure)
	}
	t.Logf("%s (pid %d) loaded %s", b.first("browser").Version, b.first("browser").PID, l.pageURL)
	return b
}

// read collects the driver's output and its events until it ends.
func (b *webrtcBrowser) read(stdout io.Reader) {
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		b.out.Write([]byte(line + "\n"))
		if js, ok := strings.CutPrefix(line, "EVENT "); ok {
			ev := webrtcEvent{At: time.Now()}
			if err := json.Unmarshal([]byte(js), &ev); err != nil {
				ev.Event, ev.Error = "error", fmt.Sprintf("unreadable event %q: %v", js, err)
			}
			b.mu.Lock()
			b.events = append(b.events, ev)
			b.mu.Unlock()
		}
	}
	io.Copy(io.Discard, stdout) // a line too long for the scanner
	b.err = b.cmd.Wait()
	close(b.done)
}

// exited reports whether the driver has ended.
func (b *webrtcBrowser) exited() bool {
	select {
	case <-b.done:
		return true
	default:
		return false
	}
}

// mark is the number of events so far, to look at the later ones only.
func (b *webrtcBrowser) mark() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.events)
}

// eventsOf returns the events named name so far.
func (b *webrtcBrowser) eventsOf(name string) []webrtcEvent {
	b.mu.Lock()
	defer b.mu.Unlock()
	var evs []webrtcEvent
	for _, e := range b.events {
		if e.Event == name {
			evs = append(evs, e)
		}
	}
	return evs
}

// first returns the first event named name, or the zero event.
func (b *webrtcBrowser) first(name string) webrtcEvent {
	if evs := b.eventsOf(name); len(evs) > 0 {
		return evs[0]
	}
	return webrtcEvent{}
}

// failure returns the first event from index since on that ends a step
// early: an error, a refused registration or call, a call that ended
// (unless the step waits for that), the WebSocket or the browser gone.
func (b *webrtcBrowser) failure(since int) (webrtcEvent, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, e := range b.events[min(since, len(b.events)):] {
		switch e.Event {
		case "error", "registrationFailed", "failed", "ended", "disconnected", "done":
			return e, true
		}
	}
	return webrtcEvent{}, false
}

// until waits until cond holds, the page reports a failure (from event
// index since on), or the driver ends; it fails the test with what
// (what was awaited) unless cond held.
func (b *webrtcBrowser) until(t *testing.T, since int, what string, cond func() bool) {
	t.Helper()
	var bad webrtcEvent
	var failed bool
	held := false
	waitFor(webrtcStep, func() bool {
		if held = cond(); held {
			return true
		}
		bad, failed = b.failure(since)
		return failed || b.exited()
	})
	if held {
		return
	}
	why := fmt.Sprintf("not within %v", webrtcStep)
	switch {
	case failed:
		why = fmt.Sprintf("the page reported %s (cause %q, code %d, error %q)", bad.Event, bad.Cause, bad.Code, bad.Error)
	case b.exited():
		why = fmt.Sprintf("the browser driver ended (%v)", b.err)
	}
	t.Fatalf("browser: %s: %s; the browser's, hlas's and bob's output follow", what, why)
}

// wait waits for the n-th event named name, failures counted from the
// start (for the steps before the first call), and returns it.
func (b *webrtcBrowser) wait(t *testing.T, name string, n int) webrtcEvent {
	t.Helper()
	return b.waitSince(t, name, n, 0)
}

// waitSince waits for the n-th event named name, failures counted from
// event index since on, and returns it.
func (b *webrtcBrowser) waitSince(t *testing.T, name string, n, since int) webrtcEvent {
	t.Helper()
	var got webrtcEvent
	b.until(t, since, fmt.Sprintf("waiting for %q event number %d", name, n), func() bool {
		evs := b.eventsOf(name)
		if len(evs) >= n {
			got = evs[n-1]
			return true
		}
		return false
	})
	return got
}

// waitMedia waits for a statistics sample (from event index since on)
// in which the page received and sent more than webrtcMinPackets RTP
// packets and hears bob's tone, and returns it.
func (b *webrtcBrowser) waitMedia(t *testing.T, since int) webrtcEvent {
	t.Helper()
	var last webrtcEvent
	b.until(t, since, fmt.Sprintf("waiting for more than %d RTP packets each way and bob's %d Hz tone", webrtcMinPackets, bobToneHz),
		func() bool {
			b.mu.Lock()
			for _, e := range b.events[since:] {
				if e.Event == "stats" {
					last = e
				}
			}
			b.mu.Unlock()
			return last.In.Packets > webrtcMinPackets && last.Out.Packets > webrtcMinPackets &&
				last.In.Tone != nil && math.Abs(float64(last.In.Tone.Hz-bobToneHz)) <= toneSlackHz
		})
	return last
}

// command sends the driver a command (see driver.mjs).
func (b *webrtcBrowser) command(t *testing.T, cmd map[string]string) {
	t.Helper()
	line, _ := json.Marshal(cmd)
	if _, err := b.stdin.Write(append(line, '\n')); err != nil {
		t.Fatalf("browser driver: send %s: %v", line, err)
	}
}

// screenshot saves the page as a PNG named after the test in the
// test's output directory.
func (b *webrtcBrowser) screenshot(t *testing.T) {
	t.Helper()
	path := filepath.Join(webrtcOutputDir(t), fileSafe(t.Name())+".png")
	n, since := len(b.eventsOf("screenshot")), b.mark()
	b.command(t, map[string]string{"cmd": "screenshot", "path": path})
	b.waitSince(t, "screenshot", n+1, since)
	t.Logf("screenshot: %s", path)
}

// stop quits the driver (which closes Chromium), ends its process group
// if it does not go, and fails the test if any process of this browser
// (found by its user data directory) outlives it.
func (b *webrtcBrowser) stop(t *testing.T) {
	if !b.exited() {
		// A driver that ends meanwhile makes the write fail: no matter.
		io.WriteString(b.stdin, `{"cmd":"quit"}`+"\n")
		b.stdin.Close()
		select {
		case <-b.done:
		case <-time.After(20 * time.Second):
			t.Errorf("the browser driver did not quit within 20 s; killing it and its browser")
			syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
			<-b.done
		}
	}
	// Chromium runs in a process group of its own (puppeteer detaches
	// it): end that too, whatever the driver managed.
	if pid := b.first("browser").PID; pid > 0 {
		defer syscall.Kill(-pid, syscall.SIGKILL)
	}
	var left []int
	waitFor(10*time.Second, func() bool {
		left = processesWith(b.userDataDir)
		return len(left) == 0
	})
	if len(left) > 0 {
		t.Errorf("Chromium processes %v outlived the browser driver; killing them", left)
		for _, pid := range left {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if t.Failed() {
		t.Logf("browser driver output (pid %d, exit %v):\n%s", b.cmd.Process.Pid, b.err, b.out.Tail(60000))
	}
}

// processesWith returns the processes whose command line contains s.
func processesWith(s string) []int {
	dirs, _ := os.ReadDir("/proc")
	var pids []int
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		if err == nil && strings.Contains(string(cmdline), s) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// webrtcCall is one call between the page (alice) and bob, in either
// direction.
type webrtcCall struct {
	name       string // the subtest's
	aliceCalls bool   // alice calls bob; else bob calls alice
	aliceHangs bool   // alice hangs up; else bob does
}

// run makes the call, waits until audio flowed both ways in the
// browser, screenshots the page, hangs up, and checks what bob counted
// and heard.
func (c webrtcCall) run(t *testing.T, l *webrtcLab, b *webrtcBrowser) {
	bob := l.bob
	since := b.mark()
	incoming := len(b.eventsOf("incoming"))
	confirmed := len(b.eventsOf("confirmed"))
	ended := len(b.eventsOf("ended"))
	established := bob.count("Call established")
	calls := len(rtpStatsRE.FindAllString(bob.out.String(), -1))

	if c.aliceCalls {
		b.command(t, map[string]string{"cmd": "call", "target": "sip:bob@" + webrtcDomain})
	} else {
		bob.command(t, "/dial sip:alice@"+webrtcDomain)
		in := b.waitSince(t, "incoming", incoming+1, since)
		if !strings.Contains(in.From, "bob@"+webrtcDomain) {
			t.Errorf("the page's incoming call is from %q, want bob", in.From)
		}
	}
	b.waitSince(t, "confirmed", confirmed+1, since)
	if !waitFor(webrtcStep, func() bool { return bob.count("Call established") > established }) {
		t.Fatalf("the page's call is up but bob did not see it established")
	}
	s := b.waitMedia(t, since)
	t.Logf("browser: %v", s)
	if s.DTLS != "connected" || s.SRTP == "" {
		t.Errorf("the browser's media is not DTLS-SRTP: DTLS %q, SRTP cipher %q", s.DTLS, s.SRTP)
	}
	b.screenshot(t)

	if c.aliceHangs {
		b.command(t, map[string]string{"cmd": "hangup"})
	} else {
		bob.command(t, "/hangup")
	}
	end := b.waitSince(t, "ended", ended+1, b.mark())
	wantBy := "remote"
	if c.aliceHangs {
		wantBy = "local"
	}
	if end.Originator != "" && end.Originator != wantBy { // SIP.js does not say who ended it
		t.Errorf("the page's call ended by the %s side (%s), want %s", end.Originator, end.Cause, wantBy)
	}
	sent, received, ok := bob.callStats(calls+1, webrtcStep)
	if !ok {
		t.Fatalf("bob printed no RTP statistics for the call: it did not end there")
	}
	t.Logf("bob: sent %d RTP packets, received %d", sent, received)
	if sent <= webrtcMinPackets || received <= webrtcMinPackets {
		t.Errorf("bob sent %d and received %d RTP packets in the call, want more than %d each way",
			sent, received, webrtcMinPackets)
	}
	// The recording is complete once the call is gone: baresip closes it
	// with the call, around when it prints the statistics.
	var hz, rms, seconds float64
	var err error
	for range 5 {
		if hz, rms, seconds, err = bob.heard(calls + 1); err == nil && math.Abs(hz-aliceToneHz) <= toneSlackHz {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	switch {
	case err != nil:
		t.Errorf("bob's recording: %v", err)
	case math.Abs(hz-aliceToneHz) > toneSlackHz:
		t.Errorf("bob heard mostly %.0f Hz (RMS %.4f in %.1fs), want the browser's %d Hz tone", hz, rms, seconds, aliceToneHz)
	default:
		t.Logf("bob heard %.0f Hz (RMS %.4f) in %.1fs of recording", hz, rms, seconds)
	}
}

// TestWebRTCJsSIP: JsSIP in Chromium registers over wss, calls bob
// (baresip over UDP) and hangs up; then bob calls it, it answers, and
// bob hangs up. Audio flows both ways in both calls.
func TestWebRTCJsSIP(t *testing.T) {
	// Not parallel with the rest of the suite: Chromium alone keeps a
	// core busy while it starts.
	l := newWebRTCLab(t)
	b := startWebRTCBrowser(t, l, "jssip", "alice")
	b.wait(t, "registered", 1)
	for _, c := range []webrtcCall{
		{name: "alice calls bob", aliceCalls: true, aliceHangs: true},
		{name: "bob calls alice"},
	} {
		if !t.Run(c.name, func(t *testing.T) { c.run(t, l, b) }) {
			break // the page may still be in the failed call
		}
	}
}

// TestWebRTCSIPjs: SIP.js in Chromium registers over wss and calls bob,
// with audio both ways; alice hangs up.
func TestWebRTCSIPjs(t *testing.T) {
	l := newWebRTCLab(t)
	b := startWebRTCBrowser(t, l, "sipjs", "alice")
	b.wait(t, "registered", 1)
	webrtcCall{aliceCalls: true, aliceHangs: true}.run(t, l, b)
}

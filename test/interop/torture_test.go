//go:build interop

package interop

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// tortureWait bounds the wait for the response to one torture message, and
// so is how long a message that gets no response costs.
const tortureWait = time.Second

// tortureMessage is one file of the RFC 4475 / RFC 5118 corpus.
type tortureMessage struct {
	name string // file name without .sip, the key of the expectation tables
	data []byte // the exact bytes, sent unchanged
}

// TestTortureCorpus sends every torture message as it is, once as a single
// UDP datagram and once over a fresh TCP connection, and compares the
// status code of the final response with torture_expected_test.go. After
// the messages each server must still be running and answer OPTIONS.
//
// Several messages share a transaction key (top Via branch and sent-by and
// CSeq method, RFC 3261 §17.2.3), such as cparam01 and cparam02. A server
// with a transaction layer rightly takes the second for a retransmission of
// the first, so the messages are split into batches without a shared key
// and each batch gets its own server; the bytes are never changed.
func TestTortureCorpus(t *testing.T) {
	messages := loadTortureCorpus(t)
	batches := batchByTransaction(messages)
	t.Logf("%d messages in %d batches (one server per batch and transport)", len(messages), len(batches))

	t.Run("udp", func(t *testing.T) {
		for _, batch := range batches {
			srv := startServer(t)
			for _, m := range batch {
				t.Run(m.name, func(t *testing.T) {
					got := sendTortureUDP(t, srv.UDP4, m)
					checkTortureStatus(t, m.name, "udp", got, expected[m.name])
				})
			}
			checkStillServing(t, srv)
		}
	})
	t.Run("tcp", func(t *testing.T) {
		for _, batch := range batches {
			srv := startServer(t)
			for _, m := range batch {
				t.Run(m.name, func(t *testing.T) {
					want, ok := expectedTCP[m.name]
					if !ok {
						want = expected[m.name]
					}
					got := sendTortureTCP(t, srv.TCP4, m)
					checkTortureStatus(t, m.name, "tcp", got, want)
				})
			}
			checkStillServing(t, srv)
		}
	})
}

// checkTortureStatus compares the final response to a torture message
// with the expectation.
func checkTortureStatus(t *testing.T, name, transport string, got *response, want int) {
	t.Helper()
	code := 0
	if got != nil {
		code = got.StatusCode
	}
	if code != want {
		line := ""
		if got != nil {
			line = fmt.Sprintf(" (%q)", got.StartLine)
		}
		t.Errorf("%s.sip over %s: got %s%s, want %s", name, transport, describeStatus(code), line, describeStatus(want))
	}
}

// checkStillServing fails the test unless srv runs and answers an OPTIONS
// to itself with 200.
func checkStillServing(t *testing.T, srv *server) {
	t.Helper()
	srv.assertRunning(t)
	req := optionsRequest{Target: srv.UDP4, RPort: true}
	resp, _ := exchangeUDP(t, srv.UDP4, &req, true)
	if resp == nil || resp.StatusCode != 200 {
		t.Errorf("after the torture messages hlas no longer answers OPTIONS with 200: %+v", resp)
	}
}

// sendTortureUDP sends m as one datagram and returns the final response (or
// the last provisional one), nil if none came within tortureWait.
//
// The socket is bound to the port of the message's top Via sent-by (5060
// when it has none), on 127.0.0.1. The sent-by hosts are not ours, so by
// RFC 3261 §18.2.2 the response goes to the received address (the source,
// 127.0.0.1) and the sent-by port; a server that answers to the source port
// instead reaches the same socket.
func sendTortureUDP(t *testing.T, server string, m tortureMessage) *response {
	t.Helper()
	dst, err := net.ResolveUDPAddr("udp", server)
	if err != nil {
		t.Fatal(err)
	}
	port := topViaPort(m.data)
	var conn *net.UDPConn
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		conn, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bind 127.0.0.1:%d (the top Via sent-by port of %s.sip, where the response is due): %v", port, m.name, err)
		}
	}
	defer conn.Close()
	if _, err := conn.WriteToUDP(m.data, dst); err != nil {
		t.Fatal(err)
	}
	match := answersMessage(m.data)
	var ignored []string
	resp, err := readUDPResponse(conn, time.Now().Add(tortureWait), func(r *response) bool {
		if match(r) {
			return true
		}
		ignored = append(ignored, fmt.Sprintf("%s (Call-ID %s, CSeq %s)", r.StartLine, r.Get("call-id"), r.Get("cseq")))
		return false
	})
	if err != nil {
		t.Errorf("%s.sip over udp: %v", m.name, err)
	}
	if len(ignored) > 0 {
		t.Logf("%s.sip over udp: ignored responses to other requests: %q", m.name, ignored)
	}
	return resp
}

// answersMessage returns a filter that accepts a response only if its
// Call-ID and CSeq number are those of msg (any of them, when msg has
// several; no condition for a field msg lacks). Over UDP a server
// retransmits its final response to an INVITE until the ACK that the test
// never sends (RFC 3261 §17.2.1), and the sockets of consecutive messages
// share ports, so a late copy for an earlier message must not count.
func answersMessage(msg []byte) func(*response) bool {
	callIDs := headerValues(msg, "call-id", "i")
	var cseqs []string
	for _, v := range headerValues(msg, "cseq") {
		if f := strings.Fields(v); len(f) > 0 {
			cseqs = append(cseqs, strings.TrimLeft(f[0], "0"))
		}
	}
	return func(r *response) bool {
		if len(callIDs) > 0 && !slices.Contains(callIDs, r.Get("call-id")) {
			return false
		}
		if f := strings.Fields(r.Get("cseq")); len(cseqs) > 0 && len(f) > 0 && !slices.Contains(cseqs, strings.TrimLeft(f[0], "0")) {
			return false
		}
		return true
	}
}

// sendTortureTCP writes m on a fresh connection and returns the first final
// response (or the last provisional one), nil if none came within
// tortureWait or the server closed the connection first. A message with
// broken framing (a Content-Length beyond its end) makes a stream server
// wait for more bytes; the deadline covers that.
func sendTortureTCP(t *testing.T, server string, m tortureMessage) *response {
	t.Helper()
	conn, err := net.DialTimeout("tcp4", server, tortureWait)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write(m.data); err != nil {
		t.Fatal(err)
	}
	resp, err := readStreamResponse(conn, time.Now().Add(tortureWait))
	if err != nil {
		t.Errorf("%s.sip over tcp: %v", m.name, err)
	}
	return resp
}

// loadTortureCorpus reads the corpus and checks that it and the expectation
// tables cover each other.
func loadTortureCorpus(t *testing.T) []tortureMessage {
	t.Helper()
	dir := tortureDir(t)
	paths, err := filepath.Glob(filepath.Join(dir, "*.sip"))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatalf("no .sip files in %s", dir)
	}
	slices.Sort(paths)
	var messages []tortureMessage
	seen := map[string]bool{}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimSuffix(filepath.Base(p), ".sip")
		seen[name] = true
		if _, ok := expected[name]; !ok {
			t.Errorf("%s: no entry in expected (torture_expected_test.go)", p)
			continue
		}
		messages = append(messages, tortureMessage{name, data})
	}
	for name := range expected {
		if !seen[name] {
			t.Errorf("expected has %q but %s has no %s.sip", name, dir, name)
		}
	}
	for name := range expectedTCP {
		if !seen[name] {
			t.Errorf("expectedTCP has %q but %s has no %s.sip", name, dir, name)
		}
	}
	return messages
}

// tortureDir locates the corpus: $HLAS_CONFORMANCE_DIR if set, else the
// copy in the repository (sip/testdata/torture), else shared/conformance/
// messages in a directory above the module root.
func tortureDir(t *testing.T) string {
	t.Helper()
	if dir := os.Getenv("HLAS_CONFORMANCE_DIR"); dir != "" {
		return dir
	}
	inRepo := filepath.Join(moduleRoot, "sip", "testdata", "torture")
	if isDir(inRepo) {
		return inRepo
	}
	for dir := moduleRoot; ; {
		candidate := filepath.Join(dir, "shared", "conformance", "messages")
		if isDir(candidate) {
			return candidate
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	t.Fatalf("torture corpus not found: set HLAS_CONFORMANCE_DIR, or provide %s or shared/conformance/messages above %s", inRepo, moduleRoot)
	return ""
}

func isDir(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}

// batchByTransaction splits messages, in order, into as few batches as
// greedy placement gives, such that no two messages in a batch share a
// transaction key.
func batchByTransaction(messages []tortureMessage) [][]tortureMessage {
	var batches [][]tortureMessage
	var keys []map[string]bool
	for _, m := range messages {
		key := transactionKey(m.data)
		i := 0
		for ; i < len(batches); i++ {
			if key == "" || !keys[i][key] {
				break
			}
		}
		if i == len(batches) {
			batches = append(batches, nil)
			keys = append(keys, map[string]bool{})
		}
		batches[i] = append(batches[i], m)
		if key != "" {
			keys[i][key] = true
		}
	}
	return batches
}

var (
	// viaSentBy finds the sent-by in a Via value, tolerating the LWS that
	// RFC 3261 allows around "/" (as in wsinv.sip).
	viaSentBy = regexp.MustCompile(`(?i)^\s*SIP\s*/\s*[^/\s]+\s*/\s*[A-Z0-9-]+\s+(\[[^\]]*\]|[^\s;:,]+)(?:\s*:\s*(\d+))?`)
	// viaBranch finds the branch parameter in a Via value.
	viaBranch = regexp.MustCompile(`(?i);\s*branch\s*=\s*([^;,\s]+)`)
)

// transactionKey approximates the key a server matches a request's
// transaction by: for an RFC 3261 branch (magic cookie) the branch, the
// sent-by (default port made explicit, so matching is conservative) and the
// CSeq method (RFC 3261 §17.2.3); otherwise the Call-ID, which RFC 2543
// matching includes. It returns "" for responses and for messages too
// broken to have a key.
func transactionKey(msg []byte) string {
	if bytes.HasPrefix(msg, []byte("SIP/")) {
		return ""
	}
	via := headerValue(msg, "via", "v")
	if i := strings.IndexByte(via, ','); i >= 0 {
		via = via[:i]
	}
	if m := viaBranch.FindStringSubmatch(via); m != nil && strings.HasPrefix(m[1], "z9hG4bK") && len(m[1]) > len("z9hG4bK") {
		sentBy := viaSentBy.FindStringSubmatch(via)
		if sentBy == nil {
			return ""
		}
		port := sentBy[2]
		if port == "" {
			port = "5060"
		}
		method := ""
		if f := strings.Fields(headerValue(msg, "cseq")); len(f) == 2 {
			method = f[1]
		}
		return strings.Join([]string{m[1], strings.ToLower(sentBy[1]), port, method}, "|")
	}
	if callID := headerValue(msg, "call-id", "i"); callID != "" {
		return "rfc2543|" + callID
	}
	return ""
}

// topViaPort returns the port of the top Via sent-by of msg, 5060 when it
// has none or the Via cannot be read.
func topViaPort(msg []byte) int {
	m := viaSentBy.FindStringSubmatch(headerValue(msg, "via", "v"))
	if m == nil || m[2] == "" {
		return 5060
	}
	port, err := strconv.Atoi(m[2])
	if err != nil || port <= 0 || port > 65535 {
		return 5060
	}
	return port
}

// headerValue returns the unfolded value of the first header field of msg
// with one of the given names (case-insensitive, LWS before the colon
// allowed), "" if there is none.
func headerValue(msg []byte, names ...string) string {
	if v := headerValues(msg, names...); len(v) > 0 {
		return v[0]
	}
	return ""
}

// headerValues returns the unfolded values of every header field of msg
// with one of the given names, in order.
func headerValues(msg []byte, names ...string) []string {
	head, _, _ := bytes.Cut(msg, []byte("\r\n\r\n"))
	lines := strings.Split(string(head), "\r\n")
	var values []string
	for i := 1; i < len(lines); i++ {
		name, value, ok := strings.Cut(lines[i], ":")
		if !ok || !slices.Contains(names, strings.ToLower(strings.TrimSpace(name))) {
			continue
		}
		for i+1 < len(lines) && lines[i+1] != "" && (lines[i+1][0] == ' ' || lines[i+1][0] == '\t') {
			i++
			value += " " + strings.TrimSpace(lines[i])
		}
		values = append(values, strings.TrimSpace(value))
	}
	return values
}

package server

import (
	"bufio"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hlas-voip/hlas/sip"
)

// tortureAnswers is what hlas answers to each RFC 4475 / RFC 5118 message
// while it routes nothing: the hosts in them are not its own, so valid
// requests get 404 and invalid ones what the RFC prescribes. 0 means no
// answer (responses match no transaction; some messages have no usable Via).
// Where the RFC allows either, hlas is liberal with what is only cosmetic.
var tortureAnswers = map[string]int{
	"wsinv":                         404, // 3.1.1.1 valid, tortuous whitespace
	"intmeth":                       404, // 3.1.1.2 unknown method: a proxy routes it (404 here)
	"esc01":                         404, // 3.1.1.3
	"escnull":                       404, // 3.1.1.4
	"esc02":                         404, // 3.1.1.5 RE%47IST%45R is an unknown method, routed
	"lwsdisp":                       404, // 3.1.1.6
	"longreq":                       404, // 3.1.1.7
	"dblreq":                        404, // 3.1.1.8 the trailing INVITE in the datagram is ignored
	"semiuri":                       404, // 3.1.1.9
	"transports":                    404, // 3.1.1.10
	"mpart01":                       404, // 3.1.1.11
	"unreason":                      0,   // 3.1.1.12 response
	"noreason":                      0,   // 3.1.1.13 response
	"badinv01":                      400, // 3.1.2.1 extraneous separators
	"clerr":                         400, // 3.1.2.2 Content-Length larger than the datagram
	"ncl":                           400, // 3.1.2.3 negative Content-Length
	"scalar02":                      400, // 3.1.2.4 CSeq out of range
	"scalarlg":                      0,   // 3.1.2.5 response
	"quotbal":                       400, // 3.1.2.6
	"ltgtruri":                      400, // 3.1.2.7
	"lwsruri":                       400, // 3.1.2.8
	"lwsstart":                      404, // 3.1.2.9 extra SP accepted (liberal, allowed by the RFC)
	"trws":                          404, // 3.1.2.10 trailing SP accepted (liberal, allowed by the RFC)
	"escruri":                       400, // 3.1.2.11
	"baddate":                       404, // 3.1.2.12 Date is not used, so not rejected
	"regbadct":                      400, // 3.1.2.13
	"badaspec":                      400, // 3.1.2.14
	"baddn":                         400, // 3.1.2.15 (archive copy without the closing blank line)
	"baddn-crlf":                    400, // 3.1.2.15
	"badvers":                       505, // 3.1.2.16
	"mismatch01":                    400, // 3.1.2.17
	"mismatch02":                    501, // 3.1.2.18 501 preferred over 400
	"bigcode":                       0,   // 3.1.2.19 response
	"badbranch":                     404, // 3.2.1 processed with RFC 2543 matching
	"insuf":                         400, // 3.3.1
	"unkscm":                        416, // 3.3.2
	"novelsc":                       416, // 3.3.3
	"unksm2":                        404, // 3.3.4 proxy role: routed like any request
	"bext01":                        420, // 3.3.5 proxy role: Proxy-Require
	"invut":                         404, // 3.3.6 proxy role: Content-Type is not its concern
	"regaut01":                      404, // 3.3.7
	"multi01":                       400, // 3.3.8
	"mcl01":                         400, // 3.3.9
	"bcast":                         0,   // 3.3.10 response
	"zeromf":                        483, // 3.3.11
	"cparam01":                      404, // 3.3.12
	"cparam02":                      404, // 3.3.13
	"regescrt":                      404, // 3.3.14
	"sdp01":                         404, // 3.3.15
	"inv2543":                       404, // 3.4.1
	"rfc4475-test":                  0,   // archive test.dat: no SIP version, no Via
	"ipv6-good":                     404, // RFC 5118 4.1
	"ipv6-bad":                      400, // 4.2
	"port-ambiguous":                404, // 4.3
	"port-unambiguous":              404, // 4.4
	"via-received-param-with-delim": 404, // 4.5
	"via-received-param-no-delim":   404, // 4.5
	"ipv6-in-sdp":                   404, // 4.6
	"mult-ip-in-header":             404, // 4.7
	"mult-ip-in-sdp":                404, // 4.8
	"ipv4-mapped-ipv6":              404, // 4.9
	"ipv6-bug-abnf-3-colons":        404, // 4.10 tolerated
	"ipv6-correct-abnf-2-colons":    404, // 4.10
}

// tortureTCP overrides tortureAnswers on a stream, where Content-Length
// frames the message: a declared body that never comes is waited for.
var tortureTCP = map[string]int{
	"clerr":   0,   // waits for 9999 body bytes
	"baddn":   0,   // no empty line ends the header section: still waiting
	"inv2543": 400, // a body without Content-Length cannot be framed on a stream (RFC 3261 §18.3)
}

func tortureFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("../sip/testdata/torture/*.sip")
	if err != nil || len(files) == 0 {
		t.Fatalf("no torture messages: %v", err)
	}
	return files
}

func TestTortureMessages(t *testing.T) {
	files := tortureFiles(t)
	if len(files) != len(tortureAnswers) {
		t.Errorf("%d files, %d expectations", len(files), len(tortureAnswers))
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".sip")
		want, ok := tortureAnswers[name]
		if !ok {
			t.Errorf("%s: no expectation", name)
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		// A fresh server for each message: several of them share a
		// transaction key (branch, sent-by, method) and would otherwise be
		// absorbed as retransmissions of each other. Responses go to the
		// source port so the test can read them; the Via hosts are fictitious.
		t.Run("UDP "+name, func(t *testing.T) {
			srv := startServer(t, Config{ForceRPort: true})
			wait := 5 * time.Second
			if want == 0 {
				wait = 200 * time.Millisecond
			}
			checkTorture(t, want, udpExchange(t, srv.addr(t, "UDP", false), string(data), wait))
			a := srv.addr(t, "UDP", false)
			if res := udpExchange(t, a, request("OPTIONS", "sip:"+a.String(), "c.invalid", ""), 5*time.Second); res == nil || res.StatusCode != 200 {
				t.Fatalf("server no longer answers OPTIONS: %v", res)
			}
		})
		t.Run("TCP "+name, func(t *testing.T) {
			srv := startServer(t, Config{})
			if w, ok := tortureTCP[name]; ok {
				want = w
			}
			conn, err := net.Dial("tcp", srv.addr(t, "TCP", false).String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := conn.Write(data); err != nil {
				t.Fatal(err)
			}
			if want == 0 {
				_ = conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
				if b, err := bufio.NewReader(conn).ReadString('\n'); err == nil {
					t.Fatalf("got %q, want no response", b)
				}
				return
			}
			checkTorture(t, want, readStreamResponse(t, conn, bufio.NewReader(conn)))
		})
	}
}

func checkTorture(t *testing.T, want int, res *sip.Response) {
	t.Helper()
	switch {
	case want == 0 && res != nil:
		t.Fatalf("got %d %s, want no response", res.StatusCode, res.Reason)
	case want != 0 && res == nil:
		t.Fatalf("no response, want %d", want)
	case res != nil && res.StatusCode != want:
		t.Fatalf("got %d %s (%s), want %d", res.StatusCode, res.Reason, res.Get("Warning"), want)
	}
}

//go:build interop

package interop

import (
	"bytes"
	"context"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// sipsakTimeout bounds one sipsak run.
const sipsakTimeout = 40 * time.Second

// sipsakFinal matches the final reply sipsak reports with -vv.
var sipsakFinal = regexp.MustCompile(`(?m)^\s*SIP/2\.0 200\b`)

// TestSipsakOPTIONS runs sipsak's default mode (one OPTIONS to the given
// URI), which exits 0 only on a 200 (sipsak(1), RETURN VALUES). sipsak
// 0.9.8.1 has no IPv6 URI support, so this is IPv4 only.
func TestSipsakOPTIONS(t *testing.T) {
	// Four-digit ports: sipsak 0.9.8.1 truncates five-digit ones in the
	// Request-URI (see serverConfig.lowPorts).
	srv := startServerWith(t, serverConfig{lowPorts: true})
	tests := []struct {
		name string
		args []string
	}{
		{"udp", nil},
		{"tcp", []string{"-E", "tcp"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// -H keeps sipsak's Via and Contact on loopback whatever the
			// host name resolves to; -vv prints the reply.
			args := append([]string{"-vv", "-H", "127.0.0.1", "-s", "sip:" + srv.UDP4}, tt.args...)
			out, err := runSipsak(t, args...)
			if err != nil || !sipsakFinal.MatchString(out) {
				t.Errorf("sipsak %s: exit %v, want 0 and a 200 OK in the output:\n%s",
					strings.Join(args, " "), err, tail(out, 6000))
			}
		})
	}
}

// runSipsak runs sipsak with args and returns its output.
func runSipsak(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), sipsakTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sipsak", args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

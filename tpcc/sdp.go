package tpcc

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/hlas-voip/hlas/media/sdpedit"
)

// origin is the o= line the controller writes towards one leg: its own
// session id and a version that grows with every description the leg is
// given (RFC 3264 §8), whichever party the description comes from.
type origin struct {
	sessID  uint64
	version uint64
	addr    netip.Addr // the controller's address, for o=
}

// line returns the next o= line.
func (o *origin) line() string {
	o.version++
	typ, a := "IP4", o.addr.Unmap()
	if a.Is6() {
		typ = "IP6"
	}
	return "o=hlas " + strconv.FormatUint(o.sessID, 10) + " " + strconv.FormatUint(o.version, 10) + " IN " + typ + " " + a.String()
}

// errSDP is a session description the controller cannot pass on.
var errSDP = errors.New("tpcc: unusable session description")

// lines splits a description into its lines (CRLF or LF), without the
// empty one after the last line end.
func lines(b []byte) ([]string, error) {
	if len(b) == 0 || len(b) > sdpedit.MaxSize {
		return nil, fmt.Errorf("%w: %d bytes", errSDP, len(b))
	}
	ls := strings.Split(string(b), "\n")
	for i, l := range ls {
		ls[i] = strings.TrimSuffix(l, "\r")
	}
	for len(ls) > 0 && ls[len(ls)-1] == "" {
		ls = ls[:len(ls)-1]
	}
	if len(ls) == 0 || ls[0] != "v=0" {
		return nil, fmt.Errorf("%w: no v=0 first", errSDP)
	}
	return ls, nil
}

func join(ls []string) []byte { return []byte(strings.Join(ls, "\r\n") + "\r\n") }

// reorigin returns a description from one party as the controller passes
// it to the other (RFC 3725 §4): the same media, under the o= line of the
// receiving leg. Every other line leaves as it came.
func reorigin(b []byte, o *origin) ([]byte, error) {
	if _, err := sdpedit.Parse(b); err != nil {
		return nil, fmt.Errorf("%w: %w", errSDP, err)
	}
	ls, err := lines(b)
	if err != nil {
		return nil, err
	}
	for i, l := range ls {
		if strings.HasPrefix(l, "o=") {
			ls[i] = o.line()
			return join(ls), nil
		}
	}
	return nil, fmt.Errorf("%w: no o= line", errSDP)
}

// holdAnswer answers offer with a description that accepts every offered
// stream but exchanges no media: connection address 0.0.0.0 (:: for
// IPv6), the "black hole" of RFC 3725 §4.4's first answer, together with
// a=inactive, the hold of RFC 3264 §8.4, so that neither a phone that only
// looks at the address nor one that only looks at the direction sends.
// Each stream keeps the offered formats and their rtpmap and fmtp lines
// (the answer lists a subset of the offer's, RFC 3264 §6.1); a stream the
// offer disabled (port 0) stays disabled.
func holdAnswer(offer []byte, o *origin) ([]byte, error) {
	d, err := sdpedit.Parse(offer)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errSDP, err)
	}
	ls, err := lines(offer)
	if err != nil {
		return nil, err
	}
	if len(d.Streams) == 0 {
		return nil, fmt.Errorf("%w: no m= line", errSDP)
	}
	bh := "IN IP4 0.0.0.0"
	for _, s := range d.Streams {
		if s.Addr.Is6() && !s.Addr.Is4In6() {
			bh = "IN IP6 ::"
			break
		}
	}
	out := []string{"v=0", o.line(), "s=-", "c=" + bh, "t=0 0"}
	si := -1
	for _, l := range ls {
		if strings.HasPrefix(l, "m=") {
			si++
			f := strings.Fields(l[2:])
			if len(f) < 4 {
				return nil, fmt.Errorf("%w: m= line %q", errSDP, l)
			}
			port := "9" // discard (RFC 8866 §5.14 examples); nothing is sent anyway
			if d.Streams[si].Port == 0 {
				port = "0"
			}
			out = append(out, "m="+f[0]+" "+port+" "+strings.Join(f[2:], " "))
			if port != "0" {
				out = append(out, "a=inactive")
			}
			continue
		}
		if si >= 0 && d.Streams[si].Port != 0 && (strings.HasPrefix(l, "a=rtpmap:") || strings.HasPrefix(l, "a=fmtp:")) {
			out = append(out, l)
		}
	}
	return join(out), nil
}

// stream is what a party's description says of one m-line for the
// comparison in sameMedia.
type stream struct {
	media, proto, dir string
	port              int
	addr              netip.Addr
	formats           []string
}

// streams reads the media of a description.
func streams(b []byte) ([]stream, error) {
	d, err := sdpedit.Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errSDP, err)
	}
	ls, err := lines(b)
	if err != nil {
		return nil, err
	}
	out := make([]stream, 0, len(d.Streams))
	for _, l := range ls {
		if !strings.HasPrefix(l, "m=") {
			continue
		}
		if len(out) == len(d.Streams) {
			return nil, fmt.Errorf("%w: m= lines", errSDP)
		}
		s := d.Streams[len(out)]
		var formats []string
		if f := strings.Fields(l[2:]); len(f) > 3 {
			formats = f[3:]
		}
		out = append(out, stream{media: s.Media, proto: s.Proto, dir: s.Direction, port: s.Port, addr: s.Addr, formats: formats})
	}
	return out, nil
}

// sameMedia reports whether two descriptions of one party agree on what
// the other party needs to know: per stream the address, port, protocol,
// direction and formats. It decides whether a party's final answer (RFC
// 3725 §4.4) must be given to the other party in a new offer.
func sameMedia(a, b []byte) bool {
	sa, err := streams(a)
	if err != nil {
		return false
	}
	sb, err := streams(b)
	if err != nil || len(sa) != len(sb) {
		return false
	}
	for i := range sa {
		x, y := sa[i], sb[i]
		if x.media != y.media || x.proto != y.proto || x.port != y.port || x.port != 0 && (x.addr != y.addr || x.dir != y.dir || !slices.Equal(x.formats, y.formats)) {
			return false
		}
	}
	return true
}

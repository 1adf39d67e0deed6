package sdpedit

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"testing"

	"github.com/hlas-voip/hlas/media"
	"github.com/pion/sdp/v3"
)

// FuzzParseRewrite: Parse never panics and fails only with ErrBadSDP;
// whatever it accepts, Rewrite with an endpoint for every stream accepts,
// and the output reads back with the same streams, moved to the relay.
// Where pion/sdp reads the input, it reads the output too and finds
// the relay's ports and addresses there.
func FuzzParseRewrite(f *testing.F) {
	for _, s := range samples() {
		f.Add([]byte(s))
	}
	f.Add([]byte("v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\nm=audio 4000/2 RTP/AVP 0\ni=x\na=rtcp:4001\nm=video 0 RTP/AVP 31\nc=IN IP4 h.example"))
	f.Fuzz(func(t *testing.T, body []byte) {
		d, err := Parse(body)
		if err != nil {
			if !errors.Is(err, media.ErrBadSDP) {
				t.Fatalf("error %v does not wrap ErrBadSDP", err)
			}
			return
		}
		eps := endpointsFor(d.Streams)
		out, err := d.Rewrite(eps)
		if err != nil {
			t.Fatalf("Rewrite: %v", err)
		}
		d2, err := Parse(out)
		if err != nil {
			t.Fatalf("output does not parse: %v\n%q", err, out)
		}
		if len(d2.Streams) != len(d.Streams) {
			t.Fatalf("%d streams after rewrite, want %d", len(d2.Streams), len(d.Streams))
		}
		for i, st := range d.Streams {
			got := d2.Streams[i]
			if got.Media != st.Media || got.Proto != st.Proto || got.Direction != st.Direction ||
				got.ClockRate != st.ClockRate || got.RTCPMux != st.RTCPMux {
				t.Fatalf("stream %d changed:\n%+v\n%+v", i, st, got)
			}
			if st.Port == 0 {
				if got.Port != 0 {
					t.Fatalf("disabled stream %d now on port %d", i, got.Port)
				}
				continue
			}
			want := eps[i].Addr.Unmap()
			if st.Addr.IsUnspecified() {
				want = unspecified(want)
			}
			rtcp := eps[i].RTCP
			if rtcp == 0 {
				rtcp = eps[i].RTP + 1
			}
			if got.Port != eps[i].RTP || got.Addr != want || got.RTCP.Port() != uint16(rtcp) || got.RTCP.Addr() != want {
				t.Fatalf("stream %d: %+v, want %s port %d rtcp %d", i, got, want, eps[i].RTP, rtcp)
			}
		}
		again, err := d2.Rewrite(eps)
		if err != nil || string(again) != string(out) {
			t.Fatalf("second rewrite differs (%v):\n%q\n%q", err, out, again)
		}
		// pion/sdp reads some inputs differently once their line ends are
		// CRLF (a t= field after a space at the end of the body), so it
		// is asked about the input as this package writes it untouched.
		kept, err := d.Rewrite(make([]Endpoint, len(d.Streams)))
		if err != nil {
			t.Fatalf("Rewrite without endpoints: %v", err)
		}
		var p sdp.SessionDescription
		if p.Unmarshal(kept) == nil {
			if err := pionAgrees(d.Streams, eps, out); err != nil {
				t.Fatalf("%v\n%q", err, out)
			}
		}
	})
}

// FuzzConvert: whatever Parse accepts, Convert with every stream turned
// into the other profile (or, by the flags, some kept) either writes a
// description that reads back with each stream as promised — converted
// streams on the relay with the receiver's proto, ICE and DTLS, their
// formats, direction and every line the conversion does not name in
// order; the rest disabled or rewritten as by Rewrite — or refuses it as
// too big. pion/sdp reads the output where it reads the input.
func FuzzConvert(f *testing.F) {
	for _, s := range samples() {
		f.Add([]byte(s), uint8(0))
	}
	f.Add([]byte(chromeMaxBundle), uint8(1))
	f.Add([]byte(linphoneOffer+"m=audio 7080 RTP/SAVP 0\r\na=fingerprint:sha-256 AB:CD\r\nm=audio 0 UDP/TLS/RTP/SAVPF 0\r\n"), uint8(3))
	setups := []string{"actpass", "active", "passive"}
	f.Fuzz(func(t *testing.T, body []byte, flags uint8) {
		d, err := Parse(body)
		if err != nil {
			return
		}
		eps := endpointsFor(d.Streams)
		bs := make([]Bridge, len(d.Streams))
		for i, st := range d.Streams {
			switch {
			case flags&1 != 0 && i%2 == 1:
			case st.WebRTC:
				bs[i] = Bridge{To: Plain}
			default:
				bs[i] = toBrowser(setups[i%3], strconv.Itoa(i))
				bs[i].Bundle = flags&2 != 0
			}
		}
		out, err := d.Convert(eps, bs)
		if err != nil {
			if errors.Is(err, media.ErrBadSDP) && !errors.Is(err, ErrEndpoint) {
				return // the output would exceed MaxSize
			}
			t.Fatalf("Convert: %v", err)
		}
		d2, err := Parse(out)
		if err != nil {
			t.Fatalf("output does not parse: %v\n%q", err, out)
		}
		if len(d2.Streams) != len(d.Streams) {
			t.Fatalf("%d streams after conversion, want %d", len(d2.Streams), len(d.Streams))
		}
		for i, st := range d.Streams {
			got, b := d2.Streams[i], bs[i]
			if got.Media != st.Media {
				t.Fatalf("stream %d: media %q, want %q", i, got.Media, st.Media)
			}
			if b.To == Keep {
				if got.Proto != st.Proto || got.Direction != st.Direction || got.ClockRate != st.ClockRate || got.RTCPMux != st.RTCPMux {
					t.Fatalf("kept stream %d changed:\n%+v\n%+v", i, st, got)
				}
				continue
			}
			if st.Port == 0 || !d.Bridgeable(i, b.To) {
				if got.Port != 0 {
					t.Fatalf("stream %d not bridgeable, on port %d", i, got.Port)
				}
				continue
			}
			if got.Port != eps[i].RTP || got.Addr != eps[i].Addr.Unmap() || got.Direction != st.Direction || got.ClockRate != st.ClockRate {
				t.Fatalf("stream %d: %+v from %+v, endpoint %+v", i, got, st, eps[i])
			}
			if !slices.Equal(slices.Collect(d2.formats(i)), slices.Collect(d.formats(i))) {
				t.Fatalf("stream %d: formats changed", i)
			}
			tr := d2.Transport(i)
			switch b.To {
			case Plain:
				rtcp := eps[i].RTCP
				if rtcp == 0 {
					rtcp = eps[i].RTP + 1
				}
				if got.Proto != "RTP/AVP" || got.RTCPMux || got.WebRTC || tr != (Transport{}) || got.RTCP.Port() != uint16(rtcp) {
					t.Fatalf("stream %d towards a phone: %+v %+v", i, got, tr)
				}
			case WebRTC:
				want := Transport{Ufrag: b.Ufrag, Pwd: b.Pwd, Fingerprint: b.Fingerprint, Setup: b.Setup, Mid: b.Mid}
				if got.Proto != "UDP/TLS/RTP/SAVPF" || !got.RTCPMux || !got.WebRTC || tr != want || !d2.Bridgeable(i, Plain) {
					t.Fatalf("stream %d towards a browser: %+v %+v", i, got, tr)
				}
			}
			if err := keptInOrder(d, i, d2); err != nil {
				t.Fatalf("stream %d: %v\n%q", i, err, out)
			}
		}
		d3, _ := Parse(body)
		again, err := d3.Convert(eps, bs)
		if err != nil || string(again) != string(out) {
			t.Fatalf("second conversion differs (%v)", err)
		}
		kept, err := d.Rewrite(make([]Endpoint, len(d.Streams)))
		if err != nil {
			t.Fatalf("Rewrite without endpoints: %v", err)
		}
		var p sdp.SessionDescription
		if p.Unmarshal(kept) == nil {
			if err := pionReadsConverted(d, eps, bs, out); err != nil {
				t.Fatalf("%v\n%q", err, out)
			}
		}
	})
}

// keptInOrder checks that every line of stream i of in that a conversion
// leaves alone is in stream i of out, in the same order.
func keptInOrder(in *Description, i int, out *Description) error {
	src, dst := &in.media[i], &out.media[i]
	j := dst.start + 1
	for k := src.start + 1; k < src.end; k++ {
		if in.lines[k].kind != kPlain {
			continue
		}
		l := in.line(k)
		for j < dst.end && out.line(j) != l {
			j++
		}
		if j == dst.end {
			return fmt.Errorf("line %q lost or out of order", l)
		}
		j++
	}
	return nil
}

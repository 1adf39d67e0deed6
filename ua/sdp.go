package ua

import (
	"errors"
	"net/netip"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"
)

// ContentTypeSDP is the media type of session descriptions (RFC 3264).
const ContentTypeSDP = "application/sdp"

// codec is one audio payload format hlas offers.
type codec struct {
	pt   int
	name string // encoding name as in rtpmap
	rate int
	fmtp string
}

// audioCodecs are offered in this order: PCMU, PCMA and RFC 4733
// telephone-event.
var audioCodecs = []codec{
	{0, "PCMU", 8000, ""},
	{8, "PCMA", 8000, ""},
	{101, "telephone-event", 8000, "0-16"},
}

// sdpBase returns the session-level part of a description (RFC 4566 §5).
func sdpBase(host string, sessID, version uint64) *sdp.SessionDescription {
	addrType := "IP4"
	if a, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil && a.Is6() && !a.Is4In6() {
		addrType = "IP6"
		host = a.String()
	}
	return &sdp.SessionDescription{
		Origin: sdp.Origin{Username: "hlas", SessionID: sessID, SessionVersion: version,
			NetworkType: "IN", AddressType: addrType, UnicastAddress: host},
		SessionName:           "hlas",
		ConnectionInformation: &sdp.ConnectionInformation{NetworkType: "IN", AddressType: addrType, Address: &sdp.Address{Address: host}},
		TimeDescriptions:      []sdp.TimeDescription{{Timing: sdp.Timing{}}},
	}
}

func audioMedia(port int, codecs []codec) *sdp.MediaDescription {
	m := &sdp.MediaDescription{MediaName: sdp.MediaName{Media: "audio", Port: sdp.RangedPort{Value: port}, Protos: []string{"RTP", "AVP"}}}
	for _, c := range codecs {
		m.MediaName.Formats = append(m.MediaName.Formats, strconv.Itoa(c.pt))
	}
	for _, c := range codecs {
		m.Attributes = append(m.Attributes, sdp.NewAttribute("rtpmap", strconv.Itoa(c.pt)+" "+c.name+"/"+strconv.Itoa(c.rate)))
		if c.fmtp != "" {
			m.Attributes = append(m.Attributes, sdp.NewAttribute("fmtp", strconv.Itoa(c.pt)+" "+c.fmtp))
		}
	}
	m.Attributes = append(m.Attributes, sdp.NewAttribute("ptime", "20"), sdp.NewPropertyAttribute("sendrecv"))
	return m
}

// Offer builds an SDP offer (RFC 3264 §5) with one audio stream on port
// offering PCMU, PCMA and telephone-event. Media itself is not handled by
// the user agent.
func Offer(host string, port int, sessID, version uint64) []byte {
	s := sdpBase(host, sessID, version)
	s.MediaDescriptions = []*sdp.MediaDescription{audioMedia(port, audioCodecs)}
	b, _ := s.Marshal()
	return b
}

// ErrNoCommonCodec is an offer the user agent cannot answer: no audio
// stream with PCMU or PCMA (answer 488, RFC 3261 §13.3.1.3).
var ErrNoCommonCodec = errors.New("ua: no acceptable audio codec in the offer")

// Answer builds the SDP answer to offer (RFC 3264 §6): each m-line is
// answered in order; the first audio stream keeps the offered PCMU and
// PCMA formats and telephone-event (with the offerer's payload type),
// every other stream is rejected with port 0.
func Answer(offer []byte, host string, port int, sessID, version uint64) ([]byte, error) {
	var o sdp.SessionDescription
	if err := o.Unmarshal(offer); err != nil {
		return nil, err
	}
	s := sdpBase(host, sessID, version)
	accepted := false
	for _, m := range o.MediaDescriptions {
		if m.MediaName.Media != "audio" || accepted {
			s.MediaDescriptions = append(s.MediaDescriptions, &sdp.MediaDescription{MediaName: sdp.MediaName{
				Media: m.MediaName.Media, Port: sdp.RangedPort{Value: 0}, Protos: m.MediaName.Protos, Formats: m.MediaName.Formats}})
			continue
		}
		var picked []codec
		for _, f := range m.MediaName.Formats {
			pt, err := strconv.Atoi(f)
			if err != nil {
				continue
			}
			name, rate := rtpmapOf(m, pt)
			for _, c := range audioCodecs {
				if strings.EqualFold(name, c.name) && (rate == 0 || rate == c.rate) {
					c.pt = pt
					picked = append(picked, c)
				}
			}
		}
		if len(picked) == 0 || picked[0].name == "telephone-event" {
			return nil, ErrNoCommonCodec
		}
		accepted = true
		s.MediaDescriptions = append(s.MediaDescriptions, audioMedia(port, picked))
	}
	if !accepted {
		return nil, ErrNoCommonCodec
	}
	b, err := s.Marshal()
	return b, err
}

// rtpmapOf returns the encoding name and clock rate of a payload type:
// from its rtpmap attribute, else the static table of RFC 3551 §6.
func rtpmapOf(m *sdp.MediaDescription, pt int) (string, int) {
	prefix := strconv.Itoa(pt) + " "
	for _, a := range m.Attributes {
		if a.Key == "rtpmap" && strings.HasPrefix(a.Value, prefix) {
			enc := strings.TrimSpace(a.Value[len(prefix):])
			name, rest, _ := strings.Cut(enc, "/")
			rateS, _, _ := strings.Cut(rest, "/")
			rate, _ := strconv.Atoi(rateS)
			return name, rate
		}
	}
	switch pt {
	case 0:
		return "PCMU", 8000
	case 8:
		return "PCMA", 8000
	}
	return "", 0
}

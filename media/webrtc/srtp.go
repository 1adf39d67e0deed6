package webrtc

import (
	"errors"
	"fmt"

	"github.com/pion/dtls/v3"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"

	"github.com/hlas-voip/hlas/media/plane"
)

// replayWindow is the SRTP and SRTCP replay window (RFC 3711 §3.3.2
// asks for at least 64 packets).
const replayWindow = 64

// srtpKeys are the two SRTP contexts of a session: dec for what the
// browser sends, enc for what it receives. The plane calls unprotect and
// protect with the leg's lock held, so the contexts (not safe for
// concurrent use) and the scratch headers are used one call at a time.
type srtpKeys struct {
	profile  srtp.ProtectionProfile
	dec, enc *srtp.Context
	// What protection adds to an RTP and to an RTCP packet: the
	// authentication tag, and for RTCP the SRTCP index (RFC 3711 §3.4).
	rtpOverhead, rtcpOverhead int
	// Scratch headers, so that parsing reuses their slices.
	decRTP, encRTP rtp.Header
	rtcpHdr        rtcp.Header
	// The SSRCs each direction has carried: pion/srtp keeps state for
	// every SSRC it sees for the context's life, and the phone's side
	// is plain, unauthenticated RTP, so a stream of new SSRCs would grow
	// it without end. Beyond maxSSRCs new ones are refused.
	encSSRC, decSSRC ssrcSet
}

// maxSSRCs bounds the SSRCs one direction of a leg may carry. A phone
// sends one per stream and may change it at a re-INVITE; no call comes
// near this.
const maxSSRCs = 256

// errTooManySSRCs refuses a packet of one SSRC too many.
var errTooManySSRCs = errors.New("webrtc: too many SSRCs on one leg")

// ssrcSet is a small set of SSRCs, searched linearly (most legs carry
// one or two).
type ssrcSet struct{ ids []uint32 }

func (s *ssrcSet) has(ssrc uint32) bool {
	for _, id := range s.ids {
		if id == ssrc {
			return true
		}
	}
	return false
}

func (s *ssrcSet) full() bool { return len(s.ids) >= maxSSRCs }

// admit reports whether ssrc may be carried, adding it if there is room.
func (s *ssrcSet) admit(ssrc uint32) bool {
	for _, id := range s.ids {
		if id == ssrc {
			return true
		}
	}
	if len(s.ids) >= maxSSRCs {
		return false
	}
	s.ids = append(s.ids, ssrc)
	return true
}

// packetSSRC is the SSRC of an RTP packet (bytes 8-11) or the sender SSRC
// of an RTCP one (bytes 4-7); ok false when the packet is too short.
func packetSSRC(pkt []byte, isRTCP bool) (uint32, bool) {
	off := 8
	if isRTCP {
		off = 4
	}
	if len(pkt) < off+4 {
		return 0, false
	}
	return uint32(pkt[off])<<24 | uint32(pkt[off+1])<<16 | uint32(pkt[off+2])<<8 | uint32(pkt[off+3]), true
}

// newSRTPKeys derives the keys from a completed handshake: the
// EXTRACTOR-dtls_srtp exporter of RFC 5764 §4.2, split into the client's
// and the server's write keys.
func newSRTPKeys(conn *dtls.Conn, client bool) (*srtpKeys, error) {
	p, ok := conn.SelectedSRTPProtectionProfile()
	if !ok {
		return nil, errors.New("webrtc: DTLS: no SRTP protection profile negotiated (use_srtp, RFC 5764 §4.1.2)")
	}
	state, ok := conn.ConnectionState()
	if !ok {
		return nil, errors.New("webrtc: DTLS: no connection state")
	}
	cfg := srtp.Config{Profile: srtp.ProtectionProfile(p)}
	if err := cfg.ExtractSessionKeysFromDTLS(&state, client); err != nil {
		return nil, fmt.Errorf("webrtc: SRTP keys: %w", err)
	}
	return newSRTPKeysFrom(cfg.Profile, cfg.Keys)
}

// newSRTPKeysFrom builds the contexts from exported keys.
func newSRTPKeysFrom(profile srtp.ProtectionProfile, keys srtp.SessionKeys) (*srtpKeys, error) {
	dec, err := srtp.CreateContext(keys.RemoteMasterKey, keys.RemoteMasterSalt, profile,
		srtp.SRTPReplayProtection(replayWindow), srtp.SRTCPReplayProtection(replayWindow))
	if err != nil {
		return nil, fmt.Errorf("webrtc: SRTP context: %w", err)
	}
	enc, err := srtp.CreateContext(keys.LocalMasterKey, keys.LocalMasterSalt, profile)
	if err != nil {
		return nil, fmt.Errorf("webrtc: SRTP context: %w", err)
	}
	rtpTag, err := profile.AuthTagRTPLen()
	if err != nil {
		return nil, err
	}
	rtcpTag, err := profile.AuthTagRTCPLen()
	if err != nil {
		return nil, err
	}
	aead, err := profile.AEADAuthTagLen()
	if err != nil {
		return nil, err
	}
	return &srtpKeys{
		profile: profile, dec: dec, enc: enc,
		rtpOverhead:  rtpTag + aead,
		rtcpOverhead: rtcpTag + aead + 4,
	}, nil
}

// errNotInPlace would be pion/srtp writing elsewhere than asked.
var errNotInPlace = errors.New("webrtc: SRTP did not work in place")

// unprotect authenticates and decrypts pkt in place (RFC 3711 §3.3).
func (k *srtpKeys) unprotect(pkt []byte, isRTCP bool) (int, error) {
	// Counted once authenticated (pion too keeps state only then), so
	// forged packets cannot fill the set.
	ssrc, ok := packetSSRC(pkt, isRTCP)
	if !ok || !k.decSSRC.has(ssrc) && k.decSSRC.full() {
		return 0, errTooManySSRCs
	}
	var out []byte
	var err error
	if isRTCP {
		out, err = k.dec.DecryptRTCP(pkt, pkt, &k.rtcpHdr)
	} else {
		out, err = k.dec.DecryptRTP(pkt, pkt, &k.decRTP)
	}
	if err != nil {
		return 0, err
	}
	k.decSSRC.admit(ssrc)
	if len(out) > len(pkt) || len(out) > 0 && &out[0] != &pkt[0] {
		return 0, errNotInPlace
	}
	return len(out), nil
}

// protect encrypts pkt in place, the tag going into its spare capacity.
func (k *srtpKeys) protect(pkt []byte, isRTCP bool) (int, error) {
	if len(pkt) == 0 {
		return 0, errors.New("webrtc: empty packet")
	}
	over := k.rtpOverhead
	if isRTCP {
		over = k.rtcpOverhead
	}
	if len(pkt)+over > cap(pkt) {
		return 0, plane.ErrTooBig
	}
	if ssrc, ok := packetSSRC(pkt, isRTCP); !ok || !k.encSSRC.admit(ssrc) {
		return 0, errTooManySSRCs
	}
	var out []byte
	var err error
	if isRTCP {
		out, err = k.enc.EncryptRTCP(pkt[:0], pkt, &k.rtcpHdr)
	} else {
		out, err = k.enc.EncryptRTP(pkt[:0], pkt, &k.encRTP)
	}
	if err != nil {
		return 0, err
	}
	if len(out) > cap(pkt) || len(out) > 0 && &out[0] != &pkt[:1][0] {
		return 0, errNotInPlace
	}
	return len(out), nil
}

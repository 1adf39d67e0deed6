package webrtc

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"

	"github.com/hlas-voip/hlas/media/plane"
)

var profiles = []srtp.ProtectionProfile{srtp.ProtectionProfileAeadAes128Gcm, srtp.ProtectionProfileAes128CmHmacSha1_80}

// testKeys returns the relay's keys and the browser's (the same master
// keys, the other way round) for profile.
func testKeys(t testing.TB, profile srtp.ProtectionProfile) (relay, browser *srtpKeys) {
	t.Helper()
	keyLen, _ := profile.KeyLen()
	saltLen, _ := profile.SaltLen()
	rnd := func(n int) []byte {
		b := make([]byte, n)
		rand.Read(b)
		return b
	}
	k := srtp.SessionKeys{LocalMasterKey: rnd(keyLen), LocalMasterSalt: rnd(saltLen), RemoteMasterKey: rnd(keyLen), RemoteMasterSalt: rnd(saltLen)}
	mirror := srtp.SessionKeys{LocalMasterKey: k.RemoteMasterKey, LocalMasterSalt: k.RemoteMasterSalt, RemoteMasterKey: k.LocalMasterKey, RemoteMasterSalt: k.LocalMasterSalt}
	relay, err := newSRTPKeysFrom(profile, k)
	if err != nil {
		t.Fatal(err)
	}
	browser, err = newSRTPKeysFrom(profile, mirror)
	if err != nil {
		t.Fatal(err)
	}
	return relay, browser
}

func rtpBytes(t testing.TB, seq uint16, payload []byte) []byte {
	t.Helper()
	b, err := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: seq, Timestamp: 160 * uint32(seq), SSRC: 0xabcdef}, Payload: payload}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// RFC 3711 both ways, in place, for both profiles WebRTC negotiates;
// replays and tampering are refused.
func TestSRTPInPlace(t *testing.T) {
	for _, profile := range profiles {
		t.Run(profile.String(), func(t *testing.T) {
			relay, browser := testKeys(t, profile)
			rr, err := (&rtcp.ReceiverReport{SSRC: 1, Reports: []rtcp.ReceptionReport{{SSRC: 0xabcdef, TotalLost: 3}}}).Marshal()
			if err != nil {
				t.Fatal(err)
			}
			for _, tt := range []struct {
				name  string
				plain []byte
				rtcp  bool
			}{
				{"RTP", rtpBytes(t, 1, bytes.Repeat([]byte{0xd5}, 160)), false},
				{"RTCP", rr, true},
			} {
				// Browser to relay.
				buf := make([]byte, len(tt.plain), 2048)
				copy(buf, tt.plain)
				n, err := browser.protect(buf, tt.rtcp)
				if err != nil {
					t.Fatal(err)
				}
				over := browser.rtpOverhead
				if tt.rtcp {
					over = browser.rtcpOverhead
				}
				if n != len(tt.plain)+over {
					t.Errorf("%s: protected to %d bytes, want %d", tt.name, n, len(tt.plain)+over)
				}
				wire := append([]byte(nil), buf[:n]...)
				m, err := relay.unprotect(buf[:n], tt.rtcp)
				if err != nil {
					t.Fatalf("%s: %v", tt.name, err)
				}
				if !bytes.Equal(buf[:m], tt.plain) {
					t.Errorf("%s: decrypted %x, want %x", tt.name, buf[:m], tt.plain)
				}
				// RFC 3711 §3.3.2: a replay is refused.
				if _, err := relay.unprotect(append([]byte(nil), wire...), tt.rtcp); err == nil {
					t.Errorf("%s: replay accepted", tt.name)
				}
				// Relay to browser.
				copy(buf, tt.plain)
				n, err = relay.protect(buf[:len(tt.plain)], tt.rtcp)
				if err != nil {
					t.Fatal(err)
				}
				m, err = browser.unprotect(buf[:n], tt.rtcp)
				if err != nil || !bytes.Equal(buf[:m], tt.plain) {
					t.Errorf("%s: relay to browser: %v", tt.name, err)
				}
			}
			// Tampered: the last byte of the tag.
			buf := make([]byte, 0, 2048)
			buf = append(buf, rtpBytes(t, 9, []byte("hello"))...)
			n, err := browser.protect(buf, false)
			if err != nil {
				t.Fatal(err)
			}
			buf = buf[:n]
			buf[n-1] ^= 1
			if _, err := relay.unprotect(buf, false); err == nil {
				t.Error("tampered packet accepted")
			}
			// No room for the tag.
			full := rtpBytes(t, 10, make([]byte, 100))
			if _, err := relay.protect(full[:len(full):len(full)], false); !errors.Is(err, plane.ErrTooBig) {
				t.Errorf("no room: %v, want ErrTooBig", err)
			}
			// Not RTP at all.
			if _, err := relay.protect(append(make([]byte, 0, 64), 0x80, 0), false); err == nil {
				t.Error("a 2-byte packet protected")
			}
		})
	}
}

// FuzzUnprotect: SRTP and SRTCP from a validated source reach the
// decryption whatever they hold. Nothing must crash it, and only what
// the browser protected passes authentication, decrypted to what it
// protected.
func FuzzUnprotect(f *testing.F) {
	relay, browser := testKeys(f, srtp.ProtectionProfileAes128CmHmacSha1_80)
	genuine := map[string][]byte{} // protected -> plain
	for seq, isRTCP := range []bool{false, true} {
		plain := rtpBytes(f, uint16(seq), []byte("seed"))
		if isRTCP {
			plain = []byte{0x80, 201, 0, 1, 0, 0, 0, 1}
		}
		buf := append(make([]byte, 0, 2048), plain...)
		n, err := browser.protect(buf, isRTCP)
		if err != nil {
			f.Fatal(err)
		}
		genuine[string(buf[:n])] = plain
		f.Add(append([]byte(nil), buf[:n]...), isRTCP)
	}
	f.Fuzz(func(t *testing.T, b []byte, isRTCP bool) {
		in := append(make([]byte, 0, len(b)), b...)
		m, err := relay.unprotect(in, isRTCP)
		if err != nil {
			return
		}
		plain, ok := genuine[string(b)]
		if !ok {
			t.Fatalf("%x passed authentication", b)
		}
		if !bytes.Equal(in[:m], plain) {
			t.Fatalf("decrypted to %x, want %x", in[:m], plain)
		}
	})
}

// The phone's side is plain RTP: a stream of new SSRCs must not grow the
// SRTP state without end. Beyond maxSSRCs a new one is refused; the
// SSRCs already carried go on.
func TestSRTPSSRCBound(t *testing.T) {
	relay, _ := testKeys(t, profiles[0])
	payload := bytes.Repeat([]byte{0xd5}, 160)
	protect := func(ssrc uint32) error {
		p := rtpBytes(t, 1, payload)
		binary.BigEndian.PutUint32(p[8:12], ssrc)
		buf := make([]byte, len(p), 2048)
		copy(buf, p)
		_, err := relay.protect(buf, false)
		return err
	}
	for ssrc := range uint32(maxSSRCs) {
		if err := protect(ssrc + 1); err != nil {
			t.Fatalf("SSRC %d: %v", ssrc+1, err)
		}
	}
	if err := protect(maxSSRCs + 1); !errors.Is(err, errTooManySSRCs) {
		t.Fatalf("SSRC %d: %v, want errTooManySSRCs", maxSSRCs+1, err)
	}
	if err := protect(1); err != nil {
		t.Fatalf("a known SSRC after the bound: %v", err)
	}
}

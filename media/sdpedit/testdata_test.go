package sdpedit

import "strings"

// crlf turns the LF-ended literals below into wire form.
func crlf(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }

// Descriptions as the named clients send them (addresses moved to the
// documentation ranges).
var (
	baresipOffer = crlf(`v=0
o=- 1434281356 3424924931 IN IP4 192.168.1.70
s=-
c=IN IP4 192.168.1.70
t=0 0
a=tool:baresip 3.10.1
m=audio 10538 RTP/AVP 96 9 0 8 101
b=AS:88
a=rtpmap:96 opus/48000/2
a=fmtp:96 stereo=1;sprop-stereo=1
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=rtcp-rsize
a=ptime:20
a=sendrecv
a=label:1
a=ssrc:2519633004 cname:ee0e7fa0-cfd3-4bd8-a7e0-04ac3db6c2b6
m=video 10540 RTP/AVP 97
b=AS:2000
a=rtpmap:97 H264/90000
a=fmtp:97 packetization-mode=1;profile-level-id=42e01f
a=rtcp-fb:* nack pli
a=sendrecv
a=label:2
`)

	linphoneOffer = crlf(`v=0
o=alice 3416 1287 IN IP4 192.168.0.15
s=Talk
c=IN IP4 198.51.100.7
t=0 0
a=ice-pwd:31ec21eb38b2ec6d36e8dc7b
a=ice-ufrag:0cc1a7a8
a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics
a=record:off
m=audio 7078 RTP/AVP 96 97 0 8 101
a=rtpmap:96 opus/48000/2
a=fmtp:96 useinbandfec=1
a=rtpmap:97 speex/16000
a=fmtp:97 vbr=on
a=rtpmap:101 telephone-event/8000
a=rtcp:7079
a=candidate:1 1 UDP 2130706303 192.168.0.15 7078 typ host
a=candidate:1 2 UDP 2130706302 192.168.0.15 7079 typ host
a=candidate:2 1 UDP 1694498687 198.51.100.7 7078 typ srflx raddr 192.168.0.15 rport 7078
a=candidate:2 2 UDP 1694498686 198.51.100.7 7079 typ srflx raddr 192.168.0.15 rport 7079
a=rtcp-fb:* trr-int 1000
a=rtcp-fb:* ccm tmmbr
`)

	webrtcOffer = crlf(`v=0
o=- 4611731400430051336 2 IN IP4 127.0.0.1
s=-
t=0 0
a=group:BUNDLE 0 1 2
a=extmap-allow-mixed
a=msid-semantic: WMS 7d3a1d5e
m=audio 52000 UDP/TLS/RTP/SAVPF 111 0 126
c=IN IP4 198.51.100.20
a=rtcp:9 IN IP4 0.0.0.0
a=candidate:842163049 1 udp 1677729535 198.51.100.20 52000 typ srflx raddr 10.0.0.5 rport 52000 generation 0 network-cost 999
a=candidate:1467250027 1 udp 2122260223 10.0.0.5 52000 typ host generation 0 network-cost 999
a=end-of-candidates
a=ice-ufrag:8hhY
a=ice-pwd:asd88fgpdd777uzjYhagZg
a=ice-options:trickle
a=fingerprint:sha-256 19:E2:1C:3B:4B:9F:81:E6:B8:5C:F4:A5:A8:D8:73:04:BB:05:2F:70:9F:04:A9:0E:05:E9:26:33:E8:70:88:A2
a=setup:actpass
a=mid:0
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level
a=sendrecv
a=msid:7d3a1d5e 2b8a0b4e
a=rtcp-mux
a=rtpmap:111 opus/48000/2
a=rtcp-fb:111 transport-cc
a=fmtp:111 minptime=10;useinbandfec=1
a=rtpmap:126 telephone-event/8000
a=ssrc:3735928559 cname:Rk2HC8cfqmNn7Z8q
m=video 52002 UDP/TLS/RTP/SAVPF 96 97
c=IN IP4 198.51.100.20
a=rtcp:9 IN IP4 0.0.0.0
a=candidate:842163049 1 udp 1677729535 198.51.100.20 52002 typ srflx raddr 10.0.0.5 rport 52002 generation 0 network-cost 999
a=end-of-candidates
a=ice-ufrag:8hhY
a=ice-pwd:asd88fgpdd777uzjYhagZg
a=ice-options:trickle
a=fingerprint:sha-256 19:E2:1C:3B:4B:9F:81:E6:B8:5C:F4:A5:A8:D8:73:04:BB:05:2F:70:9F:04:A9:0E:05:E9:26:33:E8:70:88:A2
a=setup:actpass
a=mid:1
a=recvonly
a=rtcp-mux
a=rtcp-rsize
a=rtpmap:96 VP8/90000
a=rtcp-fb:96 nack pli
a=rtpmap:97 rtx/90000
a=fmtp:97 apt=96
m=application 52004 UDP/DTLS/SCTP webrtc-datachannel
c=IN IP4 198.51.100.20
a=candidate:842163049 1 udp 1677729535 198.51.100.20 52004 typ srflx raddr 10.0.0.5 rport 52004 generation 0 network-cost 999
a=ice-ufrag:8hhY
a=ice-pwd:asd88fgpdd777uzjYhagZg
a=fingerprint:sha-256 19:E2:1C:3B:4B:9F:81:E6:B8:5C:F4:A5:A8:D8:73:04:BB:05:2F:70:9F:04:A9:0E:05:E9:26:33:E8:70:88:A2
a=setup:actpass
a=mid:2
a=sctp-port:5000
a=max-message-size:262144
`)

	// A re-INVITE putting the call on hold the RFC 2543 way and the RFC
	// 3264 way at once.
	holdReinvite = crlf(`v=0
o=- 1434281356 3424924932 IN IP4 192.168.1.70
s=-
c=IN IP4 0.0.0.0
t=0 0
m=audio 10538 RTP/AVP 0 101
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=sendonly
`)

	// An answer rejecting the offered video (RFC 3264 §6).
	rejectedVideoAnswer = crlf(`v=0
o=bob 2808844564 2808844565 IN IP4 192.0.2.44
s=-
c=IN IP4 192.0.2.44
t=0 0
m=audio 49172 RTP/AVP 0
a=rtpmap:0 PCMU/8000
m=video 0 RTP/AVP 31
`)

	ipv6Offer = crlf(`v=0
o=- 20518 0 IN IP6 2001:db8::10
s=-
c=IN IP6 2001:db8::10
t=0 0
m=audio 5004 RTP/AVP 8 101
a=rtpmap:101 telephone-event/8000
a=ptime:20
`)

	mediaConnOnly = crlf(`v=0
o=- 1 1 IN IP4 192.0.2.1
s=-
t=0 0
m=audio 5004 RTP/AVP 0
c=IN IP4 192.0.2.1
m=video 5006 RTP/AVP 96
c=IN IP4 192.0.2.2
a=rtpmap:96 H264/90000
`)

	// RFC 3605 §2.1's example: RTCP to another host.
	rtcpWithAddr = crlf(`v=0
o=- 2890844526 2890842807 IN IP4 126.16.64.4
s=-
c=IN IP4 224.2.1.1/127
t=0 0
m=audio 49170 RTP/AVP 0
c=IN IP4 126.16.64.4
a=rtcp:53020 IN IP4 126.16.64.5
`)

	// Chrome's audio offer as JsSIP sends it once ICE gathering is done:
	// BUNDLE, header extensions, RTCP feedback, RED, SSRC and msid, host,
	// srflx and TCP candidates.
	chromeOffer = crlf(`v=0
o=- 6964523786520462466 2 IN IP4 127.0.0.1
s=-
t=0 0
a=group:BUNDLE 0
a=extmap-allow-mixed
a=msid-semantic: WMS 3b1c7e0e-5b0a-4a36-9a55-0b8f0e2b6c11
m=audio 54321 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126
c=IN IP4 198.51.100.20
a=rtcp:9 IN IP4 0.0.0.0
a=candidate:2999745851 1 udp 2122260223 192.168.1.20 54321 typ host generation 0 network-id 1 network-cost 10
a=candidate:1204296409 1 udp 1686052607 198.51.100.20 54321 typ srflx raddr 192.168.1.20 rport 54321 generation 0 network-id 1 network-cost 10
a=candidate:4233069003 1 tcp 1518280447 192.168.1.20 9 typ host tcptype active generation 0 network-id 1 network-cost 10
a=ice-ufrag:Xq8H
a=ice-pwd:uQjyZ3mD4q1Zc7Ht9kL0pR2s
a=ice-options:trickle
a=fingerprint:sha-256 8B:87:09:8A:5D:C2:F3:33:EF:C5:B1:F6:84:3A:3D:D6:A3:E2:9C:17:4C:E7:46:3B:1B:CE:84:98:DD:8E:AF:7B
a=setup:actpass
a=mid:0
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level
a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time
a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid
a=sendrecv
a=msid:3b1c7e0e-5b0a-4a36-9a55-0b8f0e2b6c11 f0c1f0a2-9d6e-4b3c-8e57-2a7c4d1b9e30
a=rtcp-mux
a=rtcp-rsize
a=rtpmap:111 opus/48000/2
a=rtcp-fb:111 transport-cc
a=fmtp:111 minptime=10;useinbandfec=1
a=rtpmap:63 red/48000/2
a=fmtp:63 111/111
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:13 CN/8000
a=rtpmap:110 telephone-event/48000
a=rtpmap:126 telephone-event/8000
a=ssrc:2404235415 cname:Zh2VnUfGSsH0w9Lq
a=ssrc:2404235415 msid:3b1c7e0e-5b0a-4a36-9a55-0b8f0e2b6c11 f0c1f0a2-9d6e-4b3c-8e57-2a7c4d1b9e30
`)

	// Chrome's answer to a relay's WebRTC offer, taken before gathering
	// (port 9, c=0.0.0.0: no hold), the DTLS client, with the session
	// level fingerprint Firefox uses.
	chromeAnswer = crlf(`v=0
o=- 3547926186364557384 2 IN IP4 127.0.0.1
s=-
t=0 0
a=fingerprint:sha-256 8B:87:09:8A:5D:C2:F3:33:EF:C5:B1:F6:84:3A:3D:D6:A3:E2:9C:17:4C:E7:46:3B:1B:CE:84:98:DD:8E:AF:7B
a=msid-semantic: WMS
m=audio 9 UDP/TLS/RTP/SAVPF 0 101
c=IN IP4 0.0.0.0
a=rtcp:9 IN IP4 0.0.0.0
a=ice-ufrag:hP3x
a=ice-pwd:0bV1fZ6sK2jQ8mN4rT7wY9aC
a=ice-options:trickle
a=setup:active
a=mid:0
a=sendrecv
a=msid:- 8f2c6a1e-3d4b-4c5a-9e8f-1a2b3c4d5e6f
a=rtcp-mux
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=ssrc:1829384756 cname:pQ7rS2tU9vW4xY1z
`)

	// Chrome with bundlePolicy max-bundle: audio, a bundle-only video on
	// port 0 (RFC 8843 §6) and a data channel.
	chromeMaxBundle = crlf(`v=0
o=- 1 2 IN IP4 127.0.0.1
s=-
t=0 0
a=group:BUNDLE 0 1 2
a=msid-semantic: WMS
m=audio 54400 UDP/TLS/RTP/SAVPF 111 0
c=IN IP4 198.51.100.20
a=candidate:2999745851 1 udp 2122260223 198.51.100.20 54400 typ host
a=ice-ufrag:Xq8H
a=ice-pwd:uQjyZ3mD4q1Zc7Ht9kL0pR2s
a=fingerprint:sha-256 8B:87:09:8A:5D:C2:F3:33:EF:C5:B1:F6:84:3A:3D:D6:A3:E2:9C:17:4C:E7:46:3B:1B:CE:84:98:DD:8E:AF:7B
a=setup:actpass
a=mid:0
a=rtcp-mux
a=rtpmap:111 opus/48000/2
a=rtpmap:0 PCMU/8000
m=video 0 UDP/TLS/RTP/SAVPF 96 97
c=IN IP4 198.51.100.20
a=bundle-only
a=mid:1
a=rtcp-mux
a=rtpmap:96 VP8/90000
a=rtpmap:97 rtx/90000
a=fmtp:97 apt=96
m=application 54400 UDP/DTLS/SCTP webrtc-datachannel
c=IN IP4 198.51.100.20
a=ice-ufrag:Xq8H
a=ice-pwd:uQjyZ3mD4q1Zc7Ht9kL0pR2s
a=fingerprint:sha-256 8B:87:09:8A:5D:C2:F3:33:EF:C5:B1:F6:84:3A:3D:D6:A3:E2:9C:17:4C:E7:46:3B:1B:CE:84:98:DD:8E:AF:7B
a=setup:actpass
a=mid:2
a=sctp-port:5000
`)

	// baresip's answer to a relay's plain offer made from chromeOffer.
	baresipAnswer = crlf(`v=0
o=- 2114839517 1948232012 IN IP4 192.168.1.70
s=-
c=IN IP4 192.168.1.70
t=0 0
a=tool:baresip 3.10.1
m=audio 10538 RTP/AVP 0 126
a=rtpmap:0 PCMU/8000
a=rtpmap:126 telephone-event/8000
a=fmtp:126 0-15
a=ptime:20
a=sendrecv
`)

	// SDES-SRTP (RFC 4568): encrypted, but not WebRTC's DTLS.
	sdesOffer = crlf(`v=0
o=- 5 5 IN IP4 192.0.2.30
s=-
c=IN IP4 192.0.2.30
t=0 0
m=audio 6000 RTP/SAVP 0 8
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:32
a=rtpmap:0 PCMU/8000
`)

	// T.38 fax, which pion/sdp refuses (m=image, proto udptl).
	t38Offer = crlf(`v=0
o=- 7 8 IN IP4 192.0.2.9
s=-
c=IN IP4 192.0.2.9
t=0 0
m=image 4002 udptl t38
a=T38FaxVersion:0
a=T38MaxBitRate:14400
a=T38FaxRateManagement:transferredTCF
a=T38FaxUdpEC:t38UDPRedundancy
`)
)

package xcap

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"net/http"
	"strings"
	"time"

	"github.com/hlas-voip/hlas/sip/digest"
)

// A nonce is base64url(issued || random || mac), 43 characters: issued is
// the Unix time in nanoseconds (8 bytes, big-endian), random 8 bytes so
// that no two challenges share a nonce, mac the first 16 bytes of
// HMAC-SHA-256(key, issued || random || realm). Nothing is kept per
// challenge: the MAC proves the nonce is ours and for this realm, and its
// age comes from the nonce itself (RFC 7616 §5.4). Without a nonce-count
// table a captured request can be replayed within the nonce's lifetime,
// which over TLS (how XCAP is served) needs the request to be captured
// first.
const (
	nonceRaw = 8 + 8 + 16
	nonceLen = (nonceRaw*8 + 5) / 6
)

// nonce mints a nonce for realm at now.
func (s *Server) nonce(realm string, now time.Time) string {
	var raw [nonceRaw]byte
	binary.BigEndian.PutUint64(raw[:8], uint64(now.UnixNano()))
	_, _ = rand.Read(raw[8:16])
	copy(raw[16:], s.nonceMAC(raw[:16], realm))
	return base64.RawURLEncoding.EncodeToString(raw[:])
}

func (s *Server) nonceMAC(head []byte, realm string) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write(head)
	m.Write([]byte(realm))
	return m.Sum(nil)[:16]
}

// checkNonce reports whether nonce is ours for realm (valid) and younger
// than the nonce lifetime (fresh).
func (s *Server) checkNonce(nonce, realm string, now time.Time) (valid, fresh bool) {
	if len(nonce) != nonceLen {
		return false, false
	}
	var raw [nonceRaw]byte
	if n, err := base64.RawURLEncoding.Decode(raw[:], []byte(nonce)); err != nil || n != nonceRaw {
		return false, false
	}
	if !hmac.Equal(raw[16:], s.nonceMAC(raw[:16], realm)) {
		return false, false
	}
	age := now.Sub(time.Unix(0, int64(binary.BigEndian.Uint64(raw[:8]))))
	// A little skew between nodes sharing the key is tolerated.
	return true, age <= s.cfg.NonceLifetime && age >= -30*time.Second
}

// authResult is what authenticate found.
type authResult struct {
	user  string // "alice@example.com", lower case, when ok
	ok    bool
	stale bool // the password was right, the nonce was not
}

// authenticate checks the Digest credentials of r for realm (RFC 7616
// §3.4, qop=auth, MD5 or SHA-256). The username is the user part of the
// subscriber, or user@realm.
func (s *Server) authenticate(r *http.Request, realm string) authResult {
	var c digest.Credentials
	found := false
	for _, v := range r.Header.Values("Authorization") {
		if c.Parse(v) == nil && strings.EqualFold(c.Scheme, "Digest") && strings.EqualFold(c.Realm, realm) {
			found = true
			break
		}
	}
	if !found {
		return authResult{}
	}
	alg, err := digest.ParseAlgorithm(c.Algorithm)
	if err != nil || (alg != digest.MD5 && alg != digest.SHA256) {
		return authResult{}
	}
	if !strings.EqualFold(c.QOP, "auth") || c.Userhash || c.CNonce == "" || c.Nonce == "" || c.Response == "" {
		return authResult{}
	}
	// The digest covers the uri parameter, not the request: they must be
	// the same, or an answer could be replayed for another URI.
	if c.URI != r.RequestURI {
		return authResult{}
	}
	user := c.Username
	if at := strings.LastIndexByte(user, '@'); at >= 0 {
		if !strings.EqualFold(user[at+1:], realm) {
			return authResult{}
		}
		user = user[:at]
	}
	if user == "" {
		return authResult{}
	}
	ha1, err := s.env.HA1(r.Context(), user, realm, alg)
	if err != nil || ha1 == "" {
		return authResult{}
	}
	if !c.Verify(r.Method, nil, ha1) {
		return authResult{}
	}
	if valid, fresh := s.checkNonce(c.Nonce, realm, s.env.Now()); !valid || !fresh {
		return authResult{stale: true}
	}
	return authResult{user: strings.ToLower(user + "@" + realm), ok: true}
}

// challenge answers 401 with a SHA-256 and an MD5 challenge sharing one
// nonce (RFC 7616 §3.7: the preferred algorithm first).
func (s *Server) challenge(w http.ResponseWriter, realm string, stale bool) {
	nonce := s.nonce(realm, s.env.Now())
	for _, alg := range [...]string{"SHA-256", "MD5"} {
		c := digest.Challenge{Scheme: "Digest", Realm: realm, Nonce: nonce, Algorithm: alg, QOP: []string{"auth"}, Stale: stale}
		w.Header().Add("WWW-Authenticate", c.String())
	}
	plain(w, http.StatusUnauthorized, "authentication required")
}

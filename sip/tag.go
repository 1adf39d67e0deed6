package sip

import (
	"crypto/rand"
	"encoding/hex"
)

// NewTag returns a random tag for From/To (RFC 3261 §19.3 asks for at
// least 32 random bits; this has 64) from crypto/rand.
func NewTag() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// NewBranchID returns a random branch with the RFC 3261 magic cookie.
func NewBranchID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return MagicCookie + hex.EncodeToString(b[:])
}

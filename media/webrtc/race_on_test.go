//go:build race

package webrtc

// raceBuild: the race detector makes sync.Pool drop a quarter of what it
// is given, so pooled buffers (pion/srtp's) show up as allocations.
const raceBuild = true

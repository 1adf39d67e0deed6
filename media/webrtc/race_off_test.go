//go:build !race

package webrtc

// raceBuild: see race_on_test.go.
const raceBuild = false

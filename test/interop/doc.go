//go:build interop

// Package interop runs the real hlas binary against real SIP peers (sipp,
// sipsak) and against raw sockets: black-box tests of what goes on the
// wire. Every file carries the interop build tag, so `go test ./...` skips
// the package; run it with
//
//	go test -race -count=1 -tags interop ./test/interop/
//
// TestMain builds ./cmd/hlas once (with -race when the tests themselves run
// with -race, so data races in the server fail the clean-shutdown check) and
// fails at once if sipp or sipsak is missing: .ci/run installs them
// (Debian packages sip-tester and sipsak). Set HLAS_INTEROP_BIN to test a
// binary built elsewhere instead, and HLAS_CONFORMANCE_DIR to read the
// torture messages from another directory.
package interop

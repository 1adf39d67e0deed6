//go:build interop && !race

package interop

// raceEnabled mirrors the -race flag of the test binary into the server build.
const raceEnabled = false

//go:build !race

package registrar

// raceEnabled is true under the race detector (see race_test.go).
const raceEnabled = false

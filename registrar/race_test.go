//go:build race

package registrar

// raceEnabled is true under the race detector, whose sync.Pool drops
// items at random: allocation counts are not what they are in production.
const raceEnabled = true

//go:build race

package netpoll

// raceEnabled tells tests that the race detector is on.
const raceEnabled = true

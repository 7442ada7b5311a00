//go:build race

package app

// raceDetector reports whether the test binary runs with the race
// detector: its runtime's own memory (shadow and metadata, never returned,
// go.dev/issue/37233) grows with the traffic a process has seen, so RSS
// says nothing about the relay's memory there.
const raceDetector = true

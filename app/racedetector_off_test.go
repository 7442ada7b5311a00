//go:build !race

package app

// raceDetector reports whether the test binary runs with the race
// detector (see racedetector_on_test.go).
const raceDetector = false

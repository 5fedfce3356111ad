//go:build race

package fsimport_test

// raceEnabled: the race detector's shadow memory makes RSS figures
// meaningless.
const raceEnabled = true

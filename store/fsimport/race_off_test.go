//go:build !race

package fsimport_test

const raceEnabled = false

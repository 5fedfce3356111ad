//go:build race

package vhostuser

const raceEnabled = true

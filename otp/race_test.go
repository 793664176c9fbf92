//go:build race

package otp

// raceEnabled is true when testing with -race, whose instrumentation
// defeats the escape analysis that keeps Verify allocation-free.
const raceEnabled = true

package main

import "errors"

// runSpool lists or replays spool files: relay spool ls|replay [--rejected] [-config FILE].
func runSpool(args []string) error {
	return errors.New("spool: not implemented yet")
}

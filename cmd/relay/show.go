package main

import "errors"

// runShow prints one stored request: relay show REQUEST_ID [-config FILE] [--json].
func runShow(args []string) error {
	return errors.New("show: not implemented yet")
}

package mockllm

import (
	"fmt"
	"time"
)

// Options configures a Server. The zero value is a usable mock without
// authentication.
type Options struct {
	// RequireKey, when set, is the API key every API request must carry as
	// "Authorization: Bearer <key>" or "x-api-key: <key>". Default: none.
	RequireKey string

	// StallTimeout bounds how long a stalled stream (X-Mock-Stall-After) keeps
	// its connection open when the client does not leave. Default: 5 minutes.
	StallTimeout time.Duration

	// MaxBodyBytes caps the request body; larger bodies get 413.
	// Default: 8 MiB.
	MaxBodyBytes int64
}

const (
	defaultStallTimeout = 5 * time.Minute
	defaultMaxBodyBytes = 8 << 20
)

func (o *Options) setDefaults() {
	if o.StallTimeout == 0 {
		o.StallTimeout = defaultStallTimeout
	}
	if o.MaxBodyBytes == 0 {
		o.MaxBodyBytes = defaultMaxBodyBytes
	}
}

func (o *Options) validate() error {
	if o.StallTimeout < 0 {
		return fmt.Errorf("mockllm: stall_timeout=%s: must be >= 0", o.StallTimeout)
	}
	if o.MaxBodyBytes < 0 {
		return fmt.Errorf("mockllm: max_body_bytes=%d: must be >= 0", o.MaxBodyBytes)
	}
	return nil
}

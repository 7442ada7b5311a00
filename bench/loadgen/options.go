package main

import (
	"errors"
	"flag"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Options is one load run.
type Options struct {
	URL         string        // target, http:// only
	Conns       int           // connections (workers); default 64
	Rate        float64       // requests/s; 0 = closed loop
	Duration    time.Duration // measured window; default 10s
	Warmup      time.Duration // before the window; not measured
	Ramp        time.Duration // workers start spread over this
	PerConn     int           // requests per connection, then it stops; 0 = until the end
	Mode        string        // sse | raw; default raw for /audio/ paths
	Chunks      int           // X-Mock-Chunks; -1 = not sent
	DelayMs     float64       // X-Mock-Delay-Ms
	ChunkBytes  int           // X-Mock-Chunk-Bytes; 0 = not sent
	BodyBytes   int           // request body size; 0 = the smallest body
	Auth        string        // Authorization header value
	Headers     []string      // extra "Name: value" headers
	Timeout     time.Duration // per request; default 60s
	Grace       time.Duration // wait for in-flight requests after the window; default 5s
	BufBytes    int           // read buffer per connection; default 16 KiB
	Sample      time.Duration // process sampling period; default 500ms
	Label, Path string        // names in the report: scenario label and path (relay, nginx, direct)
	JSON        string        // write the result here as JSON
	Watch       string        // name=pid[+pid...],... processes to sample
}

type headerList []string

func (h *headerList) String() string     { return strings.Join(*h, ", ") }
func (h *headerList) Set(v string) error { *h = append(*h, v); return nil }

func parseOptions(args []string) (*Options, error) {
	o := &Options{}
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.StringVar(&o.URL, "url", "", "target URL (required)")
	fs.IntVar(&o.Conns, "c", 64, "connections")
	fs.Float64Var(&o.Rate, "rate", 0, "requests/s, open loop; 0 = closed loop")
	fs.DurationVar(&o.Duration, "d", 10*time.Second, "measured duration")
	fs.DurationVar(&o.Warmup, "warmup", 2*time.Second, "warm-up before measuring")
	fs.DurationVar(&o.Ramp, "ramp", 0, "start the connections spread over this long")
	fs.IntVar(&o.PerConn, "per-conn", 0, "requests per connection, then it stops (0 = until the end)")
	fs.StringVar(&o.Mode, "mode", "", "sse | raw (default: raw for /audio/ paths)")
	fs.IntVar(&o.Chunks, "chunks", 20, "X-Mock-Chunks (-1: not sent)")
	fs.Float64Var(&o.DelayMs, "delay-ms", 0, "X-Mock-Delay-Ms")
	fs.IntVar(&o.ChunkBytes, "chunk-bytes", 0, "X-Mock-Chunk-Bytes (0: not sent)")
	fs.IntVar(&o.BodyBytes, "body-bytes", 0, "request body size (0: smallest)")
	fs.StringVar(&o.Auth, "auth", "", "Authorization header value, e.g. 'Bearer sk-...'")
	fs.Var((*headerList)(&o.Headers), "H", "extra header 'Name: value' (repeatable)")
	fs.DurationVar(&o.Timeout, "timeout", 60*time.Second, "per-request timeout")
	fs.DurationVar(&o.Grace, "grace", 5*time.Second, "wait this long for in-flight requests after the window")
	fs.IntVar(&o.BufBytes, "buf", 16<<10, "read buffer per connection")
	fs.DurationVar(&o.Sample, "sample", 500*time.Millisecond, "process sampling period")
	fs.StringVar(&o.Label, "label", "", "scenario label for the report")
	fs.StringVar(&o.Path, "path", "", "path name for the report: direct, nginx, relay, ...")
	fs.StringVar(&o.JSON, "json", "", "write the result as JSON to this file")
	fs.StringVar(&o.Watch, "watch", "", "processes to sample: name=pid[+pid...][,name=pid...]")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return o, o.validate()
}

func (o *Options) validate() error {
	if o.URL == "" {
		return errors.New("-url is required")
	}
	u, err := url.Parse(o.URL)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return fmt.Errorf("url=%q: must be http://host:port/path", o.URL)
	}
	if o.Mode == "" {
		o.Mode = "sse"
		if strings.Contains(u.Path, "/audio/") {
			o.Mode = "raw"
		}
	}
	switch {
	case o.Mode != "sse" && o.Mode != "raw":
		return fmt.Errorf("mode=%q: must be sse or raw", o.Mode)
	case o.Conns <= 0:
		return fmt.Errorf("c=%d: must be > 0", o.Conns)
	case o.Rate < 0:
		return fmt.Errorf("rate=%v: must be >= 0", o.Rate)
	case o.Duration <= 0:
		return fmt.Errorf("d=%s: must be > 0", o.Duration)
	case o.Timeout <= 0:
		return fmt.Errorf("timeout=%s: must be > 0", o.Timeout)
	case o.BufBytes < 512:
		return fmt.Errorf("buf=%d: must be >= 512", o.BufBytes)
	case o.Sample <= 0:
		return fmt.Errorf("sample=%s: must be > 0", o.Sample)
	}
	for _, h := range o.Headers {
		if i := strings.IndexByte(h, ':'); i <= 0 {
			return fmt.Errorf("H=%q: must be 'Name: value'", h)
		}
	}
	if o.Path == "" {
		o.Path = u.Host
	}
	return nil
}

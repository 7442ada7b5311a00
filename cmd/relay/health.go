package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	neturl "net/url"
	"time"

	"github.com/stream-relay/stream-relay/app"
)

// healthUsage is relay health's usage.
const healthUsage = `usage: relay health [-url URL] [-timeout D] [-insecure]

Asks a running relay whether it is ready: GET URL (the relay's /readyz,
which says 503 from SIGTERM on, while it drains), exit 0 on 200, 1 otherwise.
For a container's health check, where the image has no shell or curl:
  HEALTHCHECK CMD ["/app/relay", "health"]
flags:
  -url URL      what to ask (default http://127.0.0.1:8080/readyz; https for a TLS listener)
  -timeout D    how long to wait for the answer (default 2s)
  -insecure     do not verify the listener's certificate (a self-signed one on loopback)`

// runHealth is relay health: see healthUsage.
func runHealth(args []string) error {
	fs := flag.NewFlagSet("relay health", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	url := fs.String("url", "http://127.0.0.1:8080/readyz", "")
	timeout := fs.Duration("timeout", 2*time.Second, "")
	insecure := fs.Bool("insecure", false, "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stdout, healthUsage)
			return nil
		}
		return fmt.Errorf("health: %w\n%s", err, healthUsage)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("health: unexpected argument %q\n%s", fs.Arg(0), healthUsage)
	}
	if *timeout <= 0 {
		return fmt.Errorf("health: -timeout=%s: must be > 0", *timeout)
	}
	tr := &http.Transport{DisableKeepAlives: true, Proxy: nil}
	if *insecure {
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // asked for: a self-signed listener
	}
	c := &http.Client{Transport: tr, Timeout: *timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	// The URL is shown without its user info and query, as in the
	// relay's own configuration errors: a health check's output lands in
	// an orchestrator's events.
	shown := app.RedactURL(*url)
	resp, err := c.Get(*url)
	if err != nil {
		var ue *neturl.Error
		if errors.As(err, &ue) && ue.Op == "parse" {
			// The parser's reason quotes the part it could not read:
			// a password holding '/' ends up in it.
			return fmt.Errorf("health: -url %s: not a URL", shown)
		}
		if errors.As(err, &ue) {
			return fmt.Errorf("health: %s %s: %w", ue.Op, shown, ue.Err)
		}
		return fmt.Errorf("health: %s: %w", shown, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("health: %s answered %d: %s", shown, resp.StatusCode, body)
	}
	fmt.Fprintf(stdout, "%s: %d %s\n", shown, resp.StatusCode, body)
	return nil
}

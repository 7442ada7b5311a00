package mockllm_test

import (
	"bufio"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/bench/mockllm"
)

// start runs a server for the test and returns it, its base URL and a client
// with a private transport, all torn down at cleanup.
func start(t testing.TB, o mockllm.Options) (*mockllm.Server, string, *http.Client) {
	t.Helper()
	srv, base, err := mockllm.Listen("", o)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	tr := &http.Transport{}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		if err := srv.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return srv, base, &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

// post sends body to url with the headers given as name, value pairs.
func post(t testing.TB, c *http.Client, url, body string, kv ...string) *http.Response {
	t.Helper()
	resp, err := tryPost(c, url, body, kv...)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	t.Cleanup(func() { _ = resp.Body.Close() })
	return resp
}

// tryPost is post for requests that may fail; the caller closes the body.
func tryPost(c *http.Client, url, body string, kv ...string) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(kv); i += 2 {
		req.Header.Set(kv[i], kv[i+1])
	}
	return c.Do(req)
}

// event is one SSE event; name is empty for OpenAI-style events.
type event struct {
	name string
	data string
	at   time.Time
}

// readEvent reads one event, skipping nothing: every event of the mock has
// one data line.
func readEvent(br *bufio.Reader) (event, error) {
	var ev event
	for n := 0; n < 8; n++ {
		line, err := br.ReadString('\n')
		if err != nil {
			if err == io.EOF && line != "" {
				err = io.ErrUnexpectedEOF
			}
			return ev, err
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			ev.at = time.Now()
			return ev, nil
		case strings.HasPrefix(line, "event: "):
			ev.name = line[len("event: "):]
		case strings.HasPrefix(line, "data: "):
			ev.data = line[len("data: "):]
		default:
			return ev, errors.New("unexpected SSE line: " + line)
		}
	}
	return ev, errors.New("SSE event too long")
}

// readAllEvents reads events until the body ends, returning the read error
// other than io.EOF.
func readAllEvents(r io.Reader) ([]event, error) {
	br := bufio.NewReader(r)
	var evs []event
	for n := 0; n < 1_000_000; n++ {
		ev, err := readEvent(br)
		if err == io.EOF {
			return evs, nil
		}
		if err != nil {
			return evs, err
		}
		evs = append(evs, ev)
	}
	return evs, errors.New("too many events")
}

// eventFeed reads a stream's events in the background so a test can wait
// for the next one with a timeout.
type eventFeed struct {
	ch   chan event
	done chan struct{}
	err  error // set before done closes
}

func feed(t testing.TB, body io.ReadCloser) *eventFeed {
	f := &eventFeed{ch: make(chan event, 64), done: make(chan struct{})}
	stop := make(chan struct{})
	go func() {
		defer close(f.done)
		br := bufio.NewReader(body)
		for {
			ev, err := readEvent(br)
			if err != nil {
				f.err = err
				return
			}
			select {
			case f.ch <- ev:
			case <-stop:
				return
			}
		}
	}()
	t.Cleanup(func() {
		close(stop)
		_ = body.Close()
		<-f.done
	})
	return f
}

// next returns the next event, or false if none came within d.
func (f *eventFeed) next(d time.Duration) (event, bool) {
	select {
	case ev := <-f.ch:
		return ev, true
	case <-time.After(d):
		return event{}, false
	}
}

// eventually polls cond every 10ms until it holds or 5s pass.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

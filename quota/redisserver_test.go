package quota

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stream-relay/stream-relay/internal/servicetest"
)

// ownRedis is a redis-server process of the test's own on a free loopback
// port: killing it, or counting its commands, disturbs no other test.
type ownRedis struct {
	*servicetest.Process
	addr string
}

// startOwnRedis starts a private redis-server and stops it when the test
// ends. Without the binary it fails under CI and skips elsewhere.
func startOwnRedis(tb testing.TB) *ownRedis {
	tb.Helper()
	p, addr := servicetest.OwnRedis(tb)
	return &ownRedis{Process: p, addr: addr}
}

// redisInfo returns the text of INFO sections from the Redis at addr,
// asked over a plain connection (not the limiter's client).
func redisInfo(tb testing.TB, addr, sections string) string {
	tb.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("INFO " + sections + "\r\n")); err != nil {
		tb.Fatal(err)
	}
	br := bufio.NewReader(c)
	head, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(head, "$") {
		tb.Fatalf("INFO reply %q: %v", head, err)
	}
	n, _ := strconv.Atoi(strings.TrimSpace(head[1:]))
	buf := make([]byte, n+2)
	if _, err := io.ReadFull(br, buf); err != nil {
		tb.Fatal(err)
	}
	return string(buf)
}

// commandCalls returns calls per command from INFO commandstats, keyed by
// lower-case command name ("evalsha", "get", ...).
func commandCalls(tb testing.TB, addr string) map[string]int64 {
	tb.Helper()
	info := redisInfo(tb, addr, "commandstats")
	out := make(map[string]int64)
	for _, line := range strings.Split(info, "\r\n") {
		name, rest, ok := strings.Cut(line, ":calls=")
		if !ok {
			continue
		}
		calls, _, _ := strings.Cut(rest, ",")
		v, _ := strconv.ParseInt(calls, 10, 64)
		out[strings.TrimPrefix(name, "cmdstat_")] = v
	}
	return out
}

// sharedRedis is the suite's Redis server and a plain client for the test's
// own reads and writes. Keys under prefix are deleted when the test ends.
func sharedRedis(tb testing.TB, prefix string) (string, rueidis.Client) {
	tb.Helper()
	addr := servicetest.Redis(tb)
	c := rawClient(tb, addr)
	tb.Cleanup(func() { deletePrefix(tb, c, prefix) })
	return addr, c
}

func rawClient(tb testing.TB, addr string) rueidis.Client {
	tb.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{addr}, DisableCache: true})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.Close)
	return c
}

func deletePrefix(tb testing.TB, c rueidis.Client, prefix string) {
	ctx := context.Background()
	var cursor uint64
	for {
		e, err := c.Do(ctx, c.B().Scan().Cursor(cursor).Match(prefix+"*").Count(1000).Build()).AsScanEntry()
		if err != nil {
			tb.Logf("cleanup %s*: %v", prefix, err)
			return
		}
		if len(e.Elements) > 0 {
			c.Do(ctx, c.B().Del().Key(e.Elements...).Build())
		}
		if cursor = e.Cursor; cursor == 0 {
			return
		}
	}
}

// testPrefix is a key prefix no other test or run uses.
func testPrefix(tb testing.TB) string {
	return fmt.Sprintf("test:rl:%s:%d:", strings.ReplaceAll(tb.Name(), "/", "."), time.Now().UnixNano())
}

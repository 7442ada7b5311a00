package servicetest

import (
	"bytes"
	"os"
	"strconv"
	"testing"
)

// TestOwnClickHouseMallocConf: a clickhouse-server a test starts runs with
// the allocator setting services.sh gives the shared one, and
// RELAY_CLICKHOUSE_MALLOC_CONF set empty leaves it out.
func TestOwnClickHouseMallocConf(t *testing.T) {
	environ := func(p *Process) []byte {
		t.Helper()
		b, err := os.ReadFile("/proc/" + strconv.Itoa(p.cmd.Process.Pid) + "/environ")
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	p, _ := OwnClickHouse(t)
	want := []byte("\x00MALLOC_CONF=" + clickHouseMallocConf + "\x00")
	if env := environ(p); !bytes.Contains(append([]byte{0}, env...), want) {
		t.Fatalf("clickhouse-server's environment lacks %q:\n%q", want[1:len(want)-1], env)
	}
	p.Kill()

	t.Setenv("RELAY_CLICKHOUSE_MALLOC_CONF", "")
	p, _ = OwnClickHouse(t)
	if env := environ(p); bytes.Contains(append([]byte{0}, env...), []byte("\x00MALLOC_CONF=")) {
		t.Fatalf("RELAY_CLICKHOUSE_MALLOC_CONF is empty, yet the server has MALLOC_CONF:\n%q", env)
	}
}

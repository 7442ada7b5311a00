package procstat

import (
	"os"
	"testing"
)

func TestParseWatch(t *testing.T) {
	gs, err := ParseWatch("nginx=1+2,mock=3")
	if err != nil || len(gs) != 2 || gs[0].Name != "nginx" || len(gs[0].PIDs) != 2 || gs[1].PIDs[0] != 3 {
		t.Fatalf("ParseWatch = %+v, %v", gs, err)
	}
	for _, bad := range []string{"nginx", "=1", "a=x", "a=0"} {
		if _, err := ParseWatch(bad); err == nil {
			t.Errorf("ParseWatch(%q) accepted", bad)
		}
	}
}

// TestReadSelf reads this process: it has resident memory, and burning
// CPU in user space moves its user ticks (and so its ticks).
func TestReadSelf(t *testing.T) {
	g := Group{Name: "self", PIDs: []int{os.Getpid()}}
	before, err := g.Read(true)
	if err != nil || before.RSSKB <= 0 || before.CSW < 0 {
		t.Fatalf("read %+v, %v", before, err)
	}
	x := 0
	for i := 0; i < 1_000_000_000 && x >= 0; i++ {
		x += i & 1
		if i%1_000_000 == 0 {
			if u, _ := g.Read(false); u.User > before.User {
				if u.Ticks < u.User || u.Ticks-before.Ticks < u.User-before.User {
					t.Fatalf("user ticks %d (from %d) exceed all ticks %d (from %d)", u.User, before.User, u.Ticks, before.Ticks)
				}
				return
			}
		}
	}
	t.Error("user ticks never moved")
}

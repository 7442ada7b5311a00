package mono

import (
	"testing"
	"time"
)

func TestNowAdvances(t *testing.T) {
	a := Now()
	if a < 1 {
		t.Fatalf("Now() = %d, want at least 1", a)
	}
	time.Sleep(10 * time.Millisecond)
	if b := Now(); b-a < int64(10*time.Millisecond) {
		t.Errorf("Now() advanced %v over a 10ms sleep", time.Duration(b-a))
	}
}

package ratelog

import (
	"testing"
	"time"
)

func TestEvery(t *testing.T) {
	var e Every
	if ok, n := e.Allow(time.Hour); !ok || n != 0 {
		t.Fatalf("first: %v, %d; want a line", ok, n)
	}
	for range 3 {
		if ok, _ := e.Allow(time.Hour); ok {
			t.Fatal("a second line within the interval")
		}
	}
	e.last.Store(e.last.Load() - int64(2*time.Hour)) // as if the interval had passed
	if ok, n := e.Allow(time.Hour); !ok || n != 3 {
		t.Fatalf("after the interval: %v, %d; want a line standing for 3", ok, n)
	}
}

package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stream-relay/stream-relay/chlog"
)

// TestShowSpoolDirUnreadable: with no ClickHouse, a spool_dir that exists
// but cannot be read (here a regular file) is a lookup that could not be
// made (exit 2, naming spool_dir), not a miss; a spool_dir that does not
// exist yet is a clean miss (exit 1).
func TestShowSpoolDirUnreadable(t *testing.T) {
	file := filepath.Join(t.TempDir(), "spool")
	if err := os.WriteFile(file, []byte("not a directory"), 0o644); err != nil {
		t.Fatal(err)
	}
	id := strings.Repeat("ef", 16)
	tests := []struct {
		name, spool string
		code        int
		want        []string
	}{
		{"a regular file", file, exitShowError, []string{"could not be looked up", "spool_dir " + file + " cannot be read", "not a directory"}},
		{"missing", filepath.Join(t.TempDir(), "missing"), exitFailed, []string{"not found", "try again"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := show(t, id, "-config", writeConfig(t, "  spool_dir: "+tt.spool+"\n"))
			if got := exitCode(err); got != tt.code {
				t.Errorf("exit %d, want %d: %v", got, tt.code, err)
			}
			if err == nil {
				t.Fatal("no error")
			}
			mustContain(t, err.Error(), tt.want...)
			if notFound := errors.Is(err, chlog.ErrNotFound); notFound != (tt.code == exitFailed) {
				t.Errorf("errors.Is(ErrNotFound) = %v: %v", notFound, err)
			}
			if tt.code == exitShowError && strings.Contains(err.Error(), "try again") {
				t.Errorf("error: %v", err)
			}
		})
	}
}

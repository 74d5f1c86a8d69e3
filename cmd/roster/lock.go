package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/roster-dev/roster/compose"
)

// lockProject takes an exclusive lock (flock) on .roster/<project>.lock in
// the project directory, so that two roster processes never change the
// same project at once. It waits for a holder, saying so once.
func lockProject(ctx context.Context, p *compose.Project, w io.Writer) (func(), error) {
	path := filepath.Join(p.Dir, ".roster", p.Name+".lock")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	said := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
		}
		if !said {
			fmt.Fprintf(w, "another roster is changing project %s (lock %s); waiting for it\n", p.Name, path)
			said = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for the project lock %s: %w", path, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

package operator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/roster-dev/roster/compose"
)

// ErrLocked is returned by TryLock when another process holds the lock.
var ErrLocked = errors.New("locked")

func lockPath(p *compose.Project, kind string) string {
	return filepath.Join(p.Dir, ".roster", p.Name+"."+kind)
}

func openLock(path string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return f, nil
}

// LockChanges takes the exclusive lock (flock on .roster/<project>.lock in
// the project directory) held around every change to the project, so two
// roster processes (CLI, foreground loop, agent) never change it at once.
// It waits for a holder, saying so once on w.
func LockChanges(ctx context.Context, p *compose.Project, w io.Writer) (func(), error) {
	return lockWait(ctx, lockPath(p, "lock"), func() {
		fmt.Fprintf(w, "another roster is changing project %s; waiting for it\n", p.Name)
	})
}

// TryLockOperator takes the operator lock (.roster/<project>.operator):
// held for its whole life by the one operator (foreground `roster up` or
// the agent) that reconciles the project and serves its DNS. ErrLocked
// when another operator holds it.
func TryLockOperator(p *compose.Project) (func(), error) {
	f, err := openLock(lockPath(p, "operator"))
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, ErrLocked
		}
		return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	return func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}

// LockOperator waits for the operator lock.
func LockOperator(ctx context.Context, p *compose.Project, waiting func()) (func(), error) {
	return lockWait(ctx, lockPath(p, "operator"), waiting)
}

// OperatorRunning reports whether some operator holds the project's
// operator lock right now.
func OperatorRunning(p *compose.Project) bool {
	unlock, err := TryLockOperator(p)
	if err != nil {
		return errors.Is(err, ErrLocked)
	}
	unlock()
	return false
}

func lockWait(ctx context.Context, path string, waiting func()) (func(), error) {
	f, err := openLock(path)
	if err != nil {
		return nil, err
	}
	said := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
		}
		if !said && waiting != nil {
			waiting()
			said = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for the lock %s: %w", path, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

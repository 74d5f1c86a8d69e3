package engine

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"
)

// maxExecOutput bounds the output Exec keeps (the start of it).
const maxExecOutput = 64 << 10

// Exec runs cmd in the running container (no TTY, no stdin) and returns
// its stdout and stderr interleaved as the engine sent them, and its exit
// code. err is for a command that could not be run or waited for (no such
// container, not running, ctx done); a command that runs and fails is a
// non-zero exit code with a nil err. Implements render.Runner.
func (d *Docker) Exec(ctx context.Context, containerID string, cmd []string) (string, int, error) {
	created, err := d.cli.ContainerExecCreate(ctx, containerID, container.ExecOptions{
		Cmd: cmd, AttachStdout: true, AttachStderr: true,
	})
	if err != nil {
		return "", -1, fmt.Errorf("exec in container %.12s: %w", containerID, err)
	}
	att, err := d.cli.ContainerExecAttach(ctx, created.ID, container.ExecAttachOptions{})
	if err != nil {
		return "", -1, fmt.Errorf("exec in container %.12s: attach: %w", containerID, err)
	}
	defer att.Close()
	// the hijacked connection ignores ctx: close it when ctx is done
	stop := context.AfterFunc(ctx, func() { att.Close() })
	defer stop()
	out := &capped{max: maxExecOutput}
	_, err = stdcopy.StdCopy(out, out, att.Reader)
	if ctx.Err() != nil {
		return out.String(), -1, fmt.Errorf("exec in container %.12s: %w", containerID, ctx.Err())
	}
	if err != nil {
		return out.String(), -1, fmt.Errorf("exec in container %.12s: reading output: %w", containerID, err)
	}
	// The stream ends when the process exits; the engine may take a moment
	// more to record the exit code.
	for delay := 5 * time.Millisecond; ; delay = min(2*delay, 200*time.Millisecond) {
		ins, err := d.cli.ContainerExecInspect(ctx, created.ID)
		if err != nil {
			return out.String(), -1, fmt.Errorf("exec in container %.12s: inspect: %w", containerID, err)
		}
		if !ins.Running {
			return out.String(), ins.ExitCode, nil
		}
		select {
		case <-ctx.Done():
			return out.String(), -1, fmt.Errorf("exec in container %.12s: %w", containerID, ctx.Err())
		case <-time.After(delay):
		}
	}
}

// Signal sends signal (a name such as "SIGHUP" or a number) to the
// container's main process. Implements render.Runner.
func (d *Docker) Signal(ctx context.Context, containerID, signal string) error {
	if err := d.cli.ContainerKill(ctx, containerID, signal); err != nil {
		return fmt.Errorf("signal %s to container %.12s: %w", signal, containerID, err)
	}
	return nil
}

// capped keeps the first max bytes written to it and drops the rest.
type capped struct {
	bytes.Buffer
	max     int
	dropped bool
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - c.Len(); room < len(p) {
		c.Buffer.Write(p[:max(room, 0)])
		c.dropped = true
		return len(p), nil
	}
	return c.Buffer.Write(p)
}

func (c *capped) String() string {
	if c.dropped {
		return c.Buffer.String() + "\n[output truncated]"
	}
	return c.Buffer.String()
}

var _ io.Writer = (*capped)(nil)

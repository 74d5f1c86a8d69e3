package engine

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	archive "github.com/moby/go-archive"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"

	"github.com/roster-dev/roster/reconciler"
)

// BuildError is a failed image build. Output is the tail of the build's
// output (the failing step's last lines), for the user to see.
type BuildError struct {
	Service, Image, Message string
	Output                  []string
}

func (e *BuildError) Error() string {
	return fmt.Sprintf("build image %s for service %s: %s", e.Image, e.Service, e.Message)
}

// BuildImage builds spec.Image with the engine's classic builder: the
// context directory is sent as a tar honouring .dockerignore; the base
// image is never pulled.
func (d *Docker) BuildImage(ctx context.Context, spec reconciler.BuildSpec) error {
	b := spec.Build
	fail := func(msg string, out []string) error {
		return &BuildError{Service: spec.Service, Image: spec.Image, Message: msg, Output: out}
	}
	opts := build.ImageBuildOptions{
		Version:     build.BuilderV1,
		Tags:        append([]string{spec.Image}, b.Tags...),
		Target:      b.Target,
		Labels:      b.Labels,
		NoCache:     b.NoCache,
		CacheFrom:   b.CacheFrom,
		NetworkMode: b.Network,
		ShmSize:     int64(b.ShmSize),
		Ulimits:     ulimits(b.Ulimits),
		Isolation:   container.Isolation(b.Isolation),
		Remove:      true,
		ForceRemove: true,
		BuildArgs:   map[string]*string{},
	}
	for k, v := range b.Args {
		if v != nil {
			opts.BuildArgs[k] = v
		}
	}
	if len(b.ExtraHosts) > 0 {
		opts.ExtraHosts = b.ExtraHosts.AsList(":")
		sort.Strings(opts.ExtraHosts)
	}
	dir := b.Context
	if dir == "" {
		dir = "."
	}
	var body io.ReadCloser
	if remoteContext(dir) {
		opts.RemoteContext, opts.Dockerfile = dir, b.Dockerfile
	} else {
		if !filepath.IsAbs(dir) {
			dir = filepath.Join(spec.Dir, dir)
		}
		var err error
		if body, opts.Dockerfile, err = buildContext(dir, b.Dockerfile, b.DockerfileInline); err != nil {
			return fail(err.Error(), nil)
		}
		defer body.Close()
	}
	resp, err := d.cli.ImageBuild(ctx, body, opts)
	if err != nil {
		return fail(err.Error(), nil)
	}
	defer resp.Body.Close()
	tail, err := readStream(resp.Body)
	if err != nil {
		return fail(err.Error(), tail)
	}
	return nil
}

func remoteContext(s string) bool {
	for _, p := range []string{"http://", "https://", "git://", "git@", "github.com/"} {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// buildContext tars dir, honouring its .dockerignore, and returns the
// tar and the Dockerfile's path inside it. A Dockerfile outside the
// context or given inline is added to the tar under a private name.
func buildContext(dir, dockerfile, inline string) (io.ReadCloser, string, error) {
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return nil, "", fmt.Errorf("build context %s is not a directory", dir)
	}
	var excludes []string
	if f, err := os.Open(filepath.Join(dir, ".dockerignore")); err == nil {
		excludes, err = ignorefile.ReadAll(f)
		f.Close()
		if err != nil {
			return nil, "", fmt.Errorf("read %s: %w", filepath.Join(dir, ".dockerignore"), err)
		}
	}
	if dockerfile == "" {
		dockerfile = "Dockerfile"
	}
	var extra []byte
	switch {
	case inline != "":
		extra = []byte(inline)
	case filepath.IsAbs(dockerfile):
		rel, err := filepath.Rel(dir, dockerfile)
		if err != nil || strings.HasPrefix(rel, "..") {
			if extra, err = os.ReadFile(dockerfile); err != nil {
				return nil, "", fmt.Errorf("read Dockerfile: %w", err)
			}
		} else {
			dockerfile = rel
		}
	}
	if extra != nil {
		dockerfile = fmt.Sprintf(".roster-dockerfile-%d", time.Now().UnixNano())
	} else if _, err := os.Stat(filepath.Join(dir, dockerfile)); err != nil {
		return nil, "", fmt.Errorf("Dockerfile %s not found in build context %s", dockerfile, dir)
	}
	dockerfile = filepath.ToSlash(dockerfile)
	for _, keep := range []string{dockerfile, ".dockerignore"} {
		if m, _ := patternmatcher.MatchesOrParentMatches(keep, excludes); m {
			excludes = append(excludes, "!"+keep)
		}
	}
	tr, err := archive.TarWithOptions(dir, &archive.TarOptions{ExcludePatterns: excludes, ChownOpts: &archive.ChownOpts{UID: 0, GID: 0}})
	if err != nil {
		return nil, "", fmt.Errorf("tar build context %s: %w", dir, err)
	}
	if extra == nil {
		return tr, dockerfile, nil
	}
	return appendFile(tr, dockerfile, extra), dockerfile, nil
}

// appendFile copies the tar stream in and adds one file at its end.
func appendFile(in io.ReadCloser, name string, data []byte) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		defer in.Close()
		tw := tar.NewWriter(pw)
		tr := tar.NewReader(in)
		err := func() error {
			for {
				h, err := tr.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					return err
				}
				if err := tw.WriteHeader(h); err != nil {
					return err
				}
				if _, err := io.Copy(tw, tr); err != nil {
					return err
				}
			}
			h := &tar.Header{Name: name, Mode: 0o600, Size: int64(len(data)), ModTime: time.Now(), Typeflag: tar.TypeReg}
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			if _, err := tw.Write(data); err != nil {
				return err
			}
			return tw.Close()
		}()
		pw.CloseWithError(err)
	}()
	return pr
}

// jsonMessage is one message of the engine's build / pull progress stream.
type jsonMessage struct {
	Stream      string `json:"stream"`
	Status      string `json:"status"`
	Error       string `json:"error"`
	ErrorDetail *struct {
		Message string `json:"message"`
	} `json:"errorDetail"`
}

// readStream reads a progress stream to its end; an error message in it
// becomes the error. It returns the last lines of output.
func readStream(r io.Reader) ([]string, error) {
	var tail []string
	dec := json.NewDecoder(r)
	for {
		var m jsonMessage
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return tail, nil
			}
			return tail, err
		}
		if m.ErrorDetail != nil && m.ErrorDetail.Message != "" {
			return tail, errors.New(strings.TrimSpace(m.ErrorDetail.Message))
		}
		if m.Error != "" {
			return tail, errors.New(strings.TrimSpace(m.Error))
		}
		for _, l := range strings.Split(strings.TrimRight(m.Stream, "\n"), "\n") {
			if strings.TrimSpace(l) != "" {
				tail = append(tail, l)
			}
		}
		if len(tail) > 20 {
			tail = tail[len(tail)-20:]
		}
	}
}

// PullImage pulls an image and reads the progress to its end.
func (d *Docker) PullImage(ctx context.Context, ref string) error {
	fail := func(err error) error {
		return fmt.Errorf("pull image %q: %w (no registry reachable? build it or load it with docker load)", ref, err)
	}
	rc, err := d.cli.ImagePull(ctx, ref, image.PullOptions{})
	if err != nil {
		return fail(err)
	}
	defer rc.Close()
	if _, err := readStream(rc); err != nil {
		return fail(err)
	}
	return nil
}

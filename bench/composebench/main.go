// Command composebench measures roster against docker compose v1 (the
// Debian package) and v2 (built from the Go module proxy) on the real
// engine: the figures of issue 7 other than the DNS server throughput and
// the Go benchmarks. Each suite prints one markdown section on stdout
// (progress on stderr) and appends its targets to -targets.
//
//	composebench [flags] SUITE
//
// Suites: up (up from nothing, with the physical floor of raw docker run),
// noop (no-op up: wall time and engine API calls through bench/sockcount),
// recreate (config change -> every replica replaced), repair (docker rm -f
// of one replica -> replaced and in roster's DNS), nginx (failed requests
// through nginx during a config change), dnsstart (container start -> name
// answered, roster's DNS vs Docker's embedded DNS), template (replica
// change -> file rendered and consumer reloaded), idle (agent memory and
// CPU at idle), sweep (remove every bench-* container, network, volume).
//
// Every project is named bench-<suite>-<tool>; every other object it
// creates is named bench-* or labelled dev.roster.bench. They are removed
// at the start and end of each suite, also on SIGINT/SIGTERM. Every
// command has a deadline, every loop a bound in count and time.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type config struct {
	mode string
	runs int

	roster          string // roster binary
	compose1        string // docker-compose v1 (empty: not available)
	compose2        string // docker compose v2 standalone binary (empty: not built)
	compose2Version string
	compose2Err     string // why compose2 is empty
	sockcount       string
	image           string // the fixture image

	nginxImage   string // an nginx image (empty: nginxErr says why)
	nginxErr     string
	nginxExample string // examples/nginx-upstreams

	work    string // scratch directory (project directories live here)
	targets string // report.AppendTarget file

	upSizes   []int
	noopN     int
	recreateN int
	repairN   int
	idleN     int
	idleWait  time.Duration
	window    time.Duration
	windows   int
}

func main() {
	var c config
	var sizes string
	flag.StringVar(&c.mode, "mode", "quick", "quick|full: default sizes and run counts")
	flag.IntVar(&c.runs, "runs", 0, "measured runs per figure and tool (default: full 5, quick 2)")
	flag.StringVar(&c.roster, "roster", "bin/bench/roster", "the roster binary")
	flag.StringVar(&c.compose1, "compose1", "", "docker-compose v1 binary (empty: not available)")
	flag.StringVar(&c.compose2, "compose2", "", "docker compose v2 binary (empty: see -compose2-error)")
	flag.StringVar(&c.compose2Version, "compose2-version", "", "compose v2 version, for the report")
	flag.StringVar(&c.compose2Err, "compose2-error", "", "why compose v2 is not available")
	flag.StringVar(&c.sockcount, "sockcount", "bin/bench/sockcount", "the bench/sockcount binary")
	flag.StringVar(&c.image, "image", "roster-fixture:bench", "the fixture image")
	flag.StringVar(&c.nginxImage, "nginx-image", "", "nginx image for the nginx suite (empty: see -nginx-error)")
	flag.StringVar(&c.nginxErr, "nginx-error", "", "why there is no nginx image")
	flag.StringVar(&c.nginxExample, "nginx-example", "examples/nginx-upstreams", "the nginx-upstreams example directory")
	flag.StringVar(&c.work, "work", "", "scratch directory (default: a temporary one, removed at exit)")
	flag.StringVar(&c.targets, "targets", "", "append the targets' verdicts to this file")
	flag.StringVar(&sizes, "up-sizes", "", "replica counts of the up suite, comma-separated (default: full 10,30, quick 5)")
	flag.IntVar(&c.noopN, "noop-n", 0, "replicas of the noop suite (default: full 30, quick 10)")
	flag.IntVar(&c.recreateN, "recreate-n", 0, "replicas of the recreate suite (default: full 30, quick 6)")
	flag.IntVar(&c.repairN, "repair-n", 3, "replicas of the repair suite")
	flag.IntVar(&c.idleN, "idle-n", 0, "replicas of the idle suite (default: full 100, quick 20)")
	flag.DurationVar(&c.idleWait, "idle-wait", 0, "idle time before measuring (default: full 30s, quick 5s)")
	flag.DurationVar(&c.window, "idle-window", 0, "length of each CPU window (default: full 30s, quick 5s)")
	flag.IntVar(&c.windows, "idle-windows", 0, "CPU windows (default: runs)")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: composebench [flags] up|noop|recreate|repair|nginx|dnsstart|template|idle|sweep")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	if err := c.defaults(sizes); err != nil {
		fmt.Fprintln(os.Stderr, "composebench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, c, flag.Arg(0))
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "composebench:", err)
		os.Exit(1)
	}
}

func (c *config) defaults(sizes string) error {
	full := c.mode == "full"
	if c.mode != "full" && c.mode != "quick" {
		return fmt.Errorf("-mode %q: want quick or full", c.mode)
	}
	pick := func(v *int, f, q int) {
		if *v == 0 {
			*v = q
			if full {
				*v = f
			}
		}
	}
	pickD := func(v *time.Duration, f, q time.Duration) {
		if *v == 0 {
			*v = q
			if full {
				*v = f
			}
		}
	}
	pick(&c.runs, 5, 2)
	pick(&c.noopN, 30, 10)
	pick(&c.recreateN, 30, 6)
	pick(&c.idleN, 100, 20)
	pickD(&c.idleWait, 30*time.Second, 5*time.Second)
	pickD(&c.window, 30*time.Second, 5*time.Second)
	pick(&c.windows, c.runs, c.runs)
	if sizes == "" {
		sizes = "5"
		if full {
			sizes = "10,30"
		}
	}
	for _, s := range strings.Split(sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 200 {
			return fmt.Errorf("-up-sizes: bad size %q (1..200)", s)
		}
		c.upSizes = append(c.upSizes, n)
	}
	if c.runs < 1 || c.runs > 50 || c.noopN < 1 || c.recreateN < 1 || c.repairN < 2 || c.idleN < 1 ||
		c.noopN > 200 || c.recreateN > 200 || c.idleN > 300 || c.windows < 1 || c.windows > 50 {
		return errors.New("bad -runs/-noop-n/-recreate-n/-repair-n/-idle-n/-idle-windows")
	}
	return nil
}

var suites = map[string]func(context.Context, *bench) (string, error){
	"up":       suiteUp,
	"noop":     suiteNoop,
	"recreate": suiteRecreate,
	"repair":   suiteRepair,
	"nginx":    suiteNginx,
	"dnsstart": suiteDNSStart,
	"template": suiteTemplate,
	"idle":     suiteIdle,
}

func run(ctx context.Context, c config, suite string) error {
	f, ok := suites[suite]
	if !ok && suite != "sweep" {
		return fmt.Errorf("unknown suite %q", suite)
	}
	for _, p := range []*string{&c.roster, &c.sockcount, &c.nginxExample} {
		if *p != "" {
			if a, err := filepath.Abs(*p); err == nil {
				*p = a
			}
		}
	}
	if c.work == "" {
		dir, err := os.MkdirTemp("", "composebench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		c.work = dir
	}
	b, err := newBench(ctx, c)
	if err != nil {
		return err
	}
	defer b.close()
	// Leftovers of an interrupted earlier run first, then ours at the end,
	// also when ctx was cancelled (a fresh context with its own deadline).
	sctx, scancel := context.WithTimeout(ctx, 3*time.Minute)
	err = b.sweep(sctx)
	scancel()
	if err != nil {
		if suite == "sweep" {
			return err
		}
		b.logf("warning: sweep before the suite: %v", err)
	}
	if suite == "sweep" {
		return nil
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if err := b.sweep(cctx); err != nil {
			b.logf("sweep at exit: %v", err)
		}
	}()
	// A bound on the whole suite (an engine that stops answering must not
	// hang the benchmark).
	limit := 15 * time.Minute
	if c.mode == "full" {
		limit = 45 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	t0 := time.Now()
	md, err := f(ctx, b)
	if err != nil {
		return fmt.Errorf("%s: %w", suite, err)
	}
	b.logf("%s: done in %s", suite, time.Since(t0).Round(time.Second))
	fmt.Print(md)
	return nil
}

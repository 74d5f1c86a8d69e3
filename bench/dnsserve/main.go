// Command dnsserve serves N fake replicas with roster's dns package, for the
// DNS benchmark (bench/dns.sh). Service "web", slots 1..N, hostname web_N,
// IPv4 10.77.x.y (record data only, never contacted), all ready, in zone
// bench.internal. It listens on UDP and TCP, prints "ready" once serving and
// exits on SIGTERM or SIGINT.
//
//	go run ./bench/dnsserve -addr 127.0.0.1:5300 -n 50
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/roster-dev/roster/dns"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:5300", "UDP+TCP address to serve on (port 0: any free port)")
	n := flag.Int("n", 50, "number of replicas (service web, slots 1..n)")
	zone := flag.String("zone", "bench.internal.", "zone")
	ttl := flag.Duration("ttl", 5*time.Second, "positive TTL")
	// Every benchmark query is in the zone; forwarding goes to a closed
	// local port so nothing ever leaves the host.
	upstream := flag.String("upstream", "127.0.0.1:9", "upstream resolver for names outside the zone")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile here until exit")
	flag.Parse()
	if err := run(*addr, *n, *zone, *ttl, *upstream, *cpuprofile); err != nil {
		fmt.Fprintln(os.Stderr, "dnsserve:", err)
		os.Exit(1)
	}
}

// Replicas returns n ready replicas of service web with 10.77.0.1... addresses.
func replicas(n int) ([]dns.Replica, error) {
	if n < 1 || n > 65534 {
		return nil, fmt.Errorf("-n %d: want 1..65534", n)
	}
	out := make([]dns.Replica, 0, n)
	for i := 1; i <= n; i++ {
		ip := netip.AddrFrom4([4]byte{10, 77, byte(i >> 8), byte(i)})
		out = append(out, dns.Replica{
			Service: "web", Slot: i, Hostname: fmt.Sprintf("web_%d", i), Ready: true,
			IPv4:  []netip.Addr{ip},
			Ports: []dns.Port{{Number: 80, Proto: "tcp", Name: "http"}},
		})
	}
	return out, nil
}

func run(addr string, n int, zone string, ttl time.Duration, upstream, cpuprofile string) error {
	rs, err := replicas(n)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	srv := dns.NewServer(dns.Config{Zone: zone, Upstreams: []string{upstream}, Logger: log})
	srv.Swap(dns.NewTable(zone, ttl, rs))
	if cpuprofile != "" {
		f, err := os.Create(cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if err := srv.Listen(ctx, []string{addr}); err != nil {
		return err
	}
	fmt.Println("ready", srv.Addrs()[0])
	<-ctx.Done()
	return srv.Close()
}

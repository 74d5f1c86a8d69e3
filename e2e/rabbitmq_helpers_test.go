package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Helpers of the RabbitMQ cluster scenario (rabbitmq_test.go).

// rabbitImage is RabbitMQ from Debian's rabbitmq-server package (3.10.x in
// bookworm), built by TestMain (debianImages).
const rabbitImage = "roster-rabbitmq:bookworm"

// rabbitExample is the example the scenario runs.
const rabbitExample = "examples/rabbitmq-cluster"

// rabbitRendered is where the example renders rabbitmq.conf.
const rabbitRendered = "rabbitmq/rendered/rabbitmq.conf"

// rabbitNode is the RabbitMQ node name of slot n: rabbit@rabbit_n.
func rabbitNode(n int) string { return "rabbit@" + hostname("rabbit", n) }

func rabbitNodes(slots ...int) []string {
	out := make([]string, len(slots))
	for i, n := range slots {
		out[i] = rabbitNode(n)
	}
	return out
}

// clusterStatus is the part of `rabbitmqctl cluster_status --formatter
// json` the scenario checks.
type clusterStatus struct {
	DiskNodes    []string                   `json:"disk_nodes"`
	RAMNodes     []string                   `json:"ram_nodes"`
	RunningNodes []string                   `json:"running_nodes"`
	Partitions   map[string]json.RawMessage `json:"partitions"`
}

func (s clusterStatus) String() string {
	return fmt.Sprintf("disk_nodes=%v ram_nodes=%v running_nodes=%v partitions=%d", s.DiskNodes, s.RAMNodes, s.RunningNodes, len(s.Partitions))
}

// rabbitctl runs rabbitmqctl in the container of slot n, bounded by timeout.
func (p *project) rabbitctl(timeout time.Duration, n int, args ...string) result {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return execute(ctx, "", nil, "docker", append([]string{"exec", p.cname("rabbit", n), "rabbitmqctl"}, args...)...)
}

// mustRabbitctl is rabbitctl failing the test on a non-zero exit.
func (p *project) mustRabbitctl(t testing.TB, n int, args ...string) string {
	t.Helper()
	r := p.rabbitctl(time.Minute, n, args...)
	if r.Err != nil {
		t.Fatalf("rabbitmqctl on %s failed:\n%s", p.cname("rabbit", n), r)
	}
	return r.Stdout
}

// clusterStatus asks the node of slot n for its view of the cluster.
func (p *project) clusterStatus(n int) (clusterStatus, error) {
	var s clusterStatus
	r := p.rabbitctl(30*time.Second, n, "-q", "cluster_status", "--formatter", "json")
	if r.Err != nil {
		return s, fmt.Errorf("%s: %s", r.Cmd, strings.TrimSpace(r.Stdout+r.Stderr))
	}
	if err := json.Unmarshal([]byte(r.Stdout), &s); err != nil {
		return s, fmt.Errorf("%s: not JSON: %v\n%s", r.Cmd, err, r.Stdout)
	}
	return s, nil
}

// sameSet reports whether a and b hold the same names, in any order.
func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	sort.Strings(a)
	sort.Strings(b)
	return slices.Equal(a, b)
}

// waitCluster waits until the service has exactly the containers of slots,
// running, and every one of those nodes reports a cluster of exactly the
// nodes rabbit@rabbit_<slot> (disk_nodes), all running, with no partition.
func (p *project) waitCluster(t testing.TB, timeout time.Duration, slots ...int) {
	t.Helper()
	want := rabbitNodes(slots...)
	start := time.Now()
	eventually(t, timeout, func() error {
		if err := checkSlots(p, "rabbit", p.serviceContainers(t, "rabbit"), slots); err != nil {
			return err
		}
		var bad []string
		for _, n := range slots {
			s, err := p.clusterStatus(n)
			switch {
			case err != nil:
				bad = append(bad, fmt.Sprintf("%s: %v", rabbitNode(n), err))
			case !sameSet(s.DiskNodes, want) || len(s.RAMNodes) > 0 || !sameSet(s.RunningNodes, want) || len(s.Partitions) > 0:
				bad = append(bad, fmt.Sprintf("%s: %s", rabbitNode(n), s))
			}
		}
		if len(bad) > 0 {
			return fmt.Errorf("want every node to see exactly %v, all running:\n  %s", want, strings.Join(bad, "\n  "))
		}
		return nil
	})
	t.Logf("cluster of %v, all running, seen by every node (%s)", want, time.Since(start).Round(time.Millisecond))
}

// rabbitDiagnostics logs, when the test failed, what explains the state
// of the cluster: `roster ps`, the rendered rabbitmq.conf, every node's
// cluster_status and the tail of every container's log (the agent's too).
func (p *project) rabbitDiagnostics(t *testing.T) {
	t.Cleanup(func() {
		if !t.Failed() || rosterBin == "" {
			return
		}
		ctx := context.Background()
		var b strings.Builder
		show := func(r result) { fmt.Fprintf(&b, "%s\n", r) }
		show(execute(ctx, p.Dir, p.Env, rosterBin, "-p", p.Name, "-f", p.File, "ps"))
		conf, _ := p.readRendered(t, rabbitRendered)
		fmt.Fprintf(&b, "%s:\n%s\n", rabbitRendered, conf)
		cs := p.containers(t)
		fmt.Fprintf(&b, "containers:\n%s", describe(cs))
		for _, c := range cs {
			if c.Service == "rabbit" && c.State == "running" {
				show(p.rabbitctl(30*time.Second, c.Slot, "cluster_status"))
			}
		}
		for _, c := range cs {
			show(execute(ctx, "", nil, "docker", "logs", "--tail", "60", "--timestamps", c.Name))
		}
		t.Logf("diagnostics of %s:\n%s", p.Name, b.String())
	})
}

// rabbitUser is the AMQP user the scenario creates (guest may only connect
// from localhost).
const (
	rabbitUser     = "e2e"
	rabbitPassword = "e2e-secret"
)

// amqpDial connects to the node of slot n, at its container IP.
func (p *project) amqpDial(t testing.TB, n int) (*amqp.Connection, error) {
	t.Helper()
	c, ok := p.container(t, p.cname("rabbit", n))
	if !ok || c.ip() == "" {
		return nil, fmt.Errorf("no running container %s", p.cname("rabbit", n))
	}
	u := url.URL{Scheme: "amqp", User: url.UserPassword(rabbitUser, rabbitPassword), Host: net.JoinHostPort(c.ip(), "5672"), Path: "/"}
	return amqp.DialConfig(u.String(), amqp.Config{Dial: amqp.DefaultDial(5 * time.Second), Heartbeat: 10 * time.Second})
}

// rabbitQueue is a durable queue the scenario fills with persistent messages.
type rabbitQueue struct {
	Name string
	Args amqp.Table
	// Slot is the node the client connects to (a classic queue lives on it).
	Slot int
	// Bodies are the messages published, in order.
	Bodies []string
}

// declareAndFill declares the queue (durable) on its node and publishes its
// bodies as persistent messages, waiting for every publisher confirm.
func (p *project) declareAndFill(q rabbitQueue) error {
	conn, err := p.amqpDial(p.t, q.Slot)
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	if _, err := ch.QueueDeclare(q.Name, true, false, false, false, q.Args); err != nil {
		return fmt.Errorf("declare %s: %w", q.Name, err)
	}
	if err := ch.Confirm(false); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var confirms []*amqp.DeferredConfirmation
	for _, body := range q.Bodies {
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", q.Name, true, false, amqp.Publishing{
			DeliveryMode: amqp.Persistent, ContentType: "text/plain", Body: []byte(body)})
		if err != nil {
			return fmt.Errorf("publish to %s: %w", q.Name, err)
		}
		confirms = append(confirms, dc)
	}
	for i, dc := range confirms {
		ok, err := dc.WaitContext(ctx)
		if err != nil || !ok {
			return fmt.Errorf("publish %d to %s: confirmed=%v err=%v", i, q.Name, ok, err)
		}
	}
	return nil
}

// queueMessages is the number of ready messages of the queue, as the node
// of slot n reports it (passive declare).
func (p *project) queueMessages(n int, name string) (int, error) {
	conn, err := p.amqpDial(p.t, n)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return 0, err
	}
	q, err := ch.QueueDeclarePassive(name, true, false, false, false, nil)
	if err != nil {
		return 0, fmt.Errorf("queue %s on %s: %w", name, rabbitNode(n), err)
	}
	return q.Messages, nil
}

// waitQueueMessages waits until the queue holds exactly want messages, as
// seen from the node of slot n.
func (p *project) waitQueueMessages(t testing.TB, timeout time.Duration, n int, name string, want int) {
	t.Helper()
	eventually(t, timeout, func() error {
		got, err := p.queueMessages(n, name)
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("queue %s holds %d messages, want %d", name, got, want)
		}
		return nil
	})
	t.Logf("queue %s holds its %d messages", name, want)
}

// drain takes every message of the queue (basic.get, acknowledged) through
// the node of slot n and returns their bodies in order.
func (p *project) drain(n int, name string) ([]string, error) {
	conn, err := p.amqpDial(p.t, n)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return nil, err
	}
	var bodies []string
	for {
		d, ok, err := ch.Get(name, false)
		if err != nil {
			return bodies, fmt.Errorf("get from %s: %w", name, err)
		}
		if !ok {
			return bodies, nil
		}
		bodies = append(bodies, string(d.Body))
		if err := d.Ack(false); err != nil {
			return bodies, err
		}
	}
}

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// The issue-6 scenario: a real RabbitMQ cluster, the example
// examples/rabbitmq-cluster itself, with RabbitMQ from Debian's
// rabbitmq-server package. RabbitMQ names its nodes and their databases
// after the hostname, so the cluster only survives scale, recreate and
// crashes because roster keeps the hostnames (rabbit_1, rabbit_2, ...) and
// the per-slot data volumes.
//
// The steps share one cluster (booting RabbitMQ nodes is what takes the
// time) and run in order as subtests; once one fails the later ones are not
// run, since each starts from the state the previous one left.

// rabbitWait bounds every wait for the cluster: a node boots in 5-20 s,
// but the machine may be busy.
const rabbitWait = 4 * time.Minute

func TestRabbitMQCluster(t *testing.T) {
	needDebianImage(t, rabbitImage)
	begin := time.Now()
	p := newProject(t, filepath.Join(moduleRoot, rabbitExample))
	p.Env = append(p.Env, "RABBITMQ_IMAGE="+rabbitImage)
	// A file rendered by someone who ran the example is not ours.
	os.Remove(filepath.Join(p.Dir, rabbitRendered))
	p.rabbitDiagnostics(t)
	defer func() { t.Logf("the whole scenario took %s", time.Since(begin).Round(time.Second)) }()

	// Bodies of the messages published before the recreate: a quorum
	// queue (replicated on every node) and a classic queue, which lives on
	// rabbit_2 only, so that finding its messages after rabbit_2 is removed
	// and brought back shows that rabbit_2 came back with its own data.
	quorum := rabbitQueue{Name: "e2e-quorum", Args: amqp.Table{"x-queue-type": "quorum"}, Slot: 1}
	classic := rabbitQueue{Name: "e2e-classic", Args: amqp.Table{"x-queue-type": "classic"}, Slot: 2}
	for i := range 50 {
		quorum.Bodies = append(quorum.Bodies, fmt.Sprintf("quorum message %d", i))
		classic.Bodies = append(classic.Bodies, fmt.Sprintf("classic message %d", i))
	}
	var before []ctr // the containers before the recreate

	steps := []struct {
		name string
		fn   func(t *testing.T)
	}{
		{"UpFormsClusterOfThree", func(t *testing.T) {
			p.mustRoster("up", "-d")
			p.waitCluster(t, rabbitWait, 1, 2, 3)
		}},
		{"ScaleUpAddsRabbit4", func(t *testing.T) {
			p.mustRoster("scale", "rabbit=4")
			p.waitCluster(t, rabbitWait, 1, 2, 3, 4)
		}},
		{"RecreateKeepsNodesAndMessages", func(t *testing.T) {
			// guest may only connect from localhost: a user of our own
			// (users are cluster-wide).
			p.mustRabbitctl(t, 1, "add_user", rabbitUser, rabbitPassword)
			p.mustRabbitctl(t, 1, "set_permissions", "-p", "/", rabbitUser, ".*", ".*", ".*")
			for _, q := range []rabbitQueue{quorum, classic} {
				if err := p.declareAndFill(q); err != nil {
					t.Fatalf("filling queue %s through %s: %v", q.Name, rabbitNode(q.Slot), err)
				}
			}
			before = p.serviceContainers(t, "rabbit")

			p.editCompose(t, "    environment:\n", "    environment:\n      E2E_REVISION: \"2\"\n")
			p.mustRoster("up", "-d")
			// Recreated one at a time or all at once: wait until every
			// slot runs a new container with the new environment.
			eventually(t, rabbitWait, func() error {
				cs := p.serviceContainers(t, "rabbit")
				if err := checkSlots(p, "rabbit", cs, []int{1, 2, 3, 4}); err != nil {
					return err
				}
				for i, c := range cs {
					if v, _ := c.env("E2E_REVISION"); v != "2" || c.ID == before[i].ID {
						return fmt.Errorf("%s is not recreated yet (E2E_REVISION=%q):\n%s", c.Name, v, describe(cs))
					}
				}
				return nil
			})
			p.waitCluster(t, rabbitWait, 1, 2, 3, 4)
			for _, c := range p.serviceContainers(t, "rabbit") {
				expectSlotVolume(t, p, c)
			}
			p.waitQueueMessages(t, rabbitWait, 1, quorum.Name, len(quorum.Bodies))
			p.waitQueueMessages(t, rabbitWait, 2, classic.Name, len(classic.Bodies))
		}},
		{"RemovedRabbit2ComesBackWithItsData", func(t *testing.T) {
			old, _ := p.container(t, p.cname("rabbit", 2))
			docker(t, "rm", "-f", old.Name)
			eventually(t, rabbitWait, func() error {
				c, ok := p.container(t, p.cname("rabbit", 2))
				if !ok || c.ID == old.ID {
					return fmt.Errorf("the agent has not brought back %s yet", old.Name)
				}
				return nil
			})
			p.waitCluster(t, rabbitWait, 1, 2, 3, 4)
			c, _ := p.container(t, p.cname("rabbit", 2))
			expectSlotVolume(t, p, c)
			// The classic queue lives on rabbit_2 only: its messages are
			// back only if rabbit_2 has its own database again.
			p.waitQueueMessages(t, rabbitWait, 2, classic.Name, len(classic.Bodies))
			p.waitQueueMessages(t, rabbitWait, 1, quorum.Name, len(quorum.Bodies))
			for _, q := range []rabbitQueue{quorum, classic} {
				got, err := p.drain(q.Slot, q.Name)
				if err != nil {
					t.Fatalf("reading queue %s: %v", q.Name, err)
				}
				if strings.Join(got, "\n") != strings.Join(q.Bodies, "\n") {
					t.Fatalf("queue %s holds %d messages, not the %d published:\ngot  %q\nwant %q", q.Name, len(got), len(q.Bodies), got, q.Bodies)
				}
			}
		}},
		{"ScaleDownForgetsRabbit4", func(t *testing.T) {
			p.mustRoster("scale", "rabbit=3")
			// forget-removed.sh waits until rabbit_4 has been stopped and
			// unlisted for 30 s, then forgets it: no stopped rabbit@rabbit_4
			// left in disk_nodes.
			p.waitCluster(t, rabbitWait, 1, 2, 3)
			logs := docker(t, "logs", p.cname("rabbit", 1))
			t.Logf("rabbit_1: %d log lines of forget-removed.sh", strings.Count(logs, "forget-removed.sh"))
		}},
		{"ScaleUpAgainRejoinsRabbit4", func(t *testing.T) {
			// rabbit_4's volume was kept, with the database of a node the
			// cluster has forgotten: start.sh moves it aside and the node
			// joins as a new member.
			p.mustRoster("scale", "rabbit=4")
			p.waitCluster(t, rabbitWait, 1, 2, 3, 4)
			c, _ := p.container(t, p.cname("rabbit", 4))
			expectSlotVolume(t, p, c)
			r := execute(t.Context(), "", nil, "docker", "exec", c.Name, "ls", "/var/lib/rabbitmq/mnesia")
			if !strings.Contains(r.Stdout, "forgotten-") {
				t.Errorf("rabbit_4's old database was not moved aside:\n%s", r)
			}
		}},
	}
	for _, s := range steps {
		if !t.Run(s.name, s.fn) {
			return
		}
	}
}

// expectSlotVolume fails the test unless the container mounts its slot's
// own volume, <project>_rabbit-data-<slot>, at /var/lib/rabbitmq.
func expectSlotVolume(t testing.TB, p *project, c ctr) {
	t.Helper()
	want := fmt.Sprintf("%s_rabbit-data-%d", p.Name, c.Slot)
	for _, m := range c.Mounts {
		if m.Destination == "/var/lib/rabbitmq" {
			if m.Type != "volume" || m.Name != want {
				t.Fatalf("%s mounts %s %q at /var/lib/rabbitmq, want the volume %s", c.Name, m.Type, m.Name, want)
			}
			return
		}
	}
	t.Fatalf("%s mounts nothing at /var/lib/rabbitmq: %+v", c.Name, c.Mounts)
}

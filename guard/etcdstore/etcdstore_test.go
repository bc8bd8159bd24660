package etcdstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/canaryd/canaryd/guard"
	"github.com/canaryd/canaryd/guard/etcdstore"
	"github.com/canaryd/canaryd/guard/etcdstore/etcdtest"
	"github.com/canaryd/canaryd/guard/storetest"
)

// prefixes makes each test's fleet unique on the shared server.
var prefixes atomic.Int64

func newPrefix() string { return fmt.Sprintf("/canaryd-test/%d/", prefixes.Add(1)) }

// newFleet builds a replica of the fleet at prefix (not registered, not
// running).
func newFleet(t *testing.T, srv *etcdtest.Server, prefix, id string) *etcdstore.Fleet {
	t.Helper()
	f, err := etcdstore.New(etcdstore.Config{
		Endpoints: []string{srv.Endpoint()}, Prefix: prefix, ReplicaID: id,
		LeaseTTL: 2 * time.Second, OpTimeout: 2 * time.Second,
	}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// run registers f and runs it until the test ends.
func run(t *testing.T, f *etcdstore.Fleet) context.CancelFunc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	if err := f.Register(ctx); err != nil {
		t.Fatalf("Register: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	stop := func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return")
		}
	}
	t.Cleanup(func() {
		if ctx.Err() == nil {
			stop()
		}
	})
	return stop
}

func rawClient(t *testing.T, srv *etcdtest.Server) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{srv.Endpoint()}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestStoreContract: the etcd store passes the contract every guard.Store
// passes (the same suite as the FileStore's).
func TestStoreContract(t *testing.T) {
	srv := etcdtest.Start(t)
	raw := rawClient(t, srv)
	storetest.Run(t, func(t *testing.T) storetest.Storage {
		prefix := newPrefix()
		return storetest.Storage{
			A: newFleet(t, srv, prefix, "a"),
			B: newFleet(t, srv, prefix, "b"),
			Corrupt: func(t *testing.T) {
				if _, err := raw.Put(context.Background(), prefix+"rollout", "{not json"); err != nil {
					t.Fatal(err)
				}
			},
		}
	})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func ids(peers []guard.Peer) string {
	var out []string
	for _, p := range peers {
		out = append(out, p.Replica)
	}
	return strings.Join(out, ",")
}

// TestFleetEvidenceAndLeader: replicas see each other's evidence, agree
// on one leader, and a leader that leaves is replaced.
func TestFleetEvidenceAndLeader(t *testing.T) {
	srv := etcdtest.Start(t)
	prefix := newPrefix()
	a, b := newFleet(t, srv, prefix, "a"), newFleet(t, srv, prefix, "b")
	stopA := run(t, a)
	waitFor(t, "a leads alone", func() bool { _, self := a.Leader(); return self })
	run(t, b)
	waitFor(t, "b sees a as leader", func() bool { id, self := b.Leader(); return id == "a" && !self })

	epoch := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b.Publish(guard.Evidence{Replica: "b", Epoch: epoch, Release: "v1",
		Step: guard.EvidenceCounts{Canary: guard.Counts{Requests: 7, Errors: 1}}}, true)
	waitFor(t, "a receives b's evidence", func() bool {
		for _, p := range a.Peers() {
			if p.Replica == "b" && p.Step.Canary.Requests == 7 && p.Epoch.Equal(epoch) {
				return true
			}
		}
		return false
	})
	if got := ids(a.Peers()); got != "a,b" {
		t.Errorf("a's peers = %s; want a,b", got)
	}
	select {
	case <-a.Changes():
	case <-time.After(5 * time.Second):
		t.Error("no change notice on a")
	}

	start := time.Now()
	stopA() // resigns and revokes its lease
	waitFor(t, "b leads after a left", func() bool { _, self := b.Leader(); return self })
	t.Logf("b led %v after a left", time.Since(start).Round(time.Millisecond))
	waitFor(t, "a's registration is gone", func() bool { return ids(b.Peers()) == "b" })
	if err := b.StoreErr(); err != nil {
		t.Errorf("StoreErr = %v; want nil while etcd answers", err)
	}
}

// TestReplicaIDTaken: a second live replica with the same id is refused;
// once the first is gone, the id is free again.
func TestReplicaIDTaken(t *testing.T) {
	srv := etcdtest.Start(t)
	prefix := newPrefix()
	first := newFleet(t, srv, prefix, "web-1:8000")
	stop := run(t, first)
	second := newFleet(t, srv, prefix, "web-1:8000")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	start := time.Now()
	if err := second.Register(ctx); !errors.Is(err, etcdstore.ErrReplicaIDTaken) {
		t.Fatalf("second Register = %v; want ErrReplicaIDTaken", err)
	}
	t.Logf("refused after %v (waits for the holder's lease TTL)", time.Since(start).Round(time.Millisecond))
	other := newFleet(t, srv, newPrefix(), "web-1:8000")
	if err := other.Register(ctx); err != nil {
		t.Fatalf("the same id in another fleet: %v", err)
	}
	stop()
	third := newFleet(t, srv, prefix, "web-1:8000")
	if err := third.Register(ctx); err != nil {
		t.Fatalf("Register after the first left: %v", err)
	}
}

// TestPrefixesDoNotInterfere: two fleets on one etcd, with different
// prefixes (one nested in the other's name), keep their own rollout,
// replicas and leader.
func TestPrefixesDoNotInterfere(t *testing.T) {
	srv := etcdtest.Start(t)
	p1 := newPrefix()
	p2 := p1 + "replicas/x/" // nested inside p1's replica listing
	a1, a2 := newFleet(t, srv, p1, "a"), newFleet(t, srv, p2, "a")
	run(t, a1)
	run(t, a2)
	waitFor(t, "each leads its own fleet", func() bool {
		_, l1 := a1.Leader()
		_, l2 := a2.Leader()
		return l1 && l2
	})
	ctx := context.Background()
	w1 := a1.Watch(t.Context())
	r2 := storetest.Sample()
	r2.Release = "fleet-2"
	if _, err := a2.Save(ctx, r2, 0); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a1.Load(ctx); !errors.Is(err, guard.ErrNoRecord) {
		t.Errorf("fleet 1 loads %v after fleet 2 saved; want ErrNoRecord", err)
	}
	r1 := storetest.Sample()
	r1.Release = "fleet-1"
	if _, err := a1.Save(ctx, r1, 0); err != nil {
		t.Fatal(err)
	}
	for _, f := range []*etcdstore.Fleet{a1, a2} {
		got, _, err := f.Load(ctx)
		want := "fleet-1"
		if f == a2 {
			want = "fleet-2"
		}
		if err != nil || got.Release != want {
			t.Errorf("%s loads %q, %v; want %q", f.Name(), got.Release, err, want)
		}
	}
	<-w1 // a1's own save (or the watch's start) is seen
	a2.Publish(guard.Evidence{Replica: "a", Release: "fleet-2"}, true)
	time.Sleep(time.Second)
	for _, p := range a1.Peers() {
		if p.Release == "fleet-2" {
			t.Errorf("fleet 1 sees fleet 2's evidence: %+v", p)
		}
	}
	if got := ids(a1.Peers()); got != "a" {
		t.Errorf("fleet 1's replicas = %s; want a", got)
	}
}

// TestOutage: with etcd stopped, operations fail within the timeout and
// StoreErr says so; when it is back, the replica registers and leads again.
func TestOutage(t *testing.T) {
	srv := etcdtest.Start(t)
	f := newFleet(t, srv, newPrefix(), "a")
	run(t, f)
	waitFor(t, "a leads", func() bool { _, self := f.Leader(); return self })
	srv.Stop()
	ctx := context.Background()
	start := time.Now()
	if _, _, err := f.Load(ctx); err == nil {
		t.Fatal("Load with etcd stopped succeeded")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Load took %v with etcd stopped; want it bounded by the operation timeout", d)
	}
	waitFor(t, "StoreErr set", func() bool { return f.StoreErr() != nil })
	waitFor(t, "no longer leading once the lease is lost", func() bool { _, self := f.Leader(); return !self })
	srv.Restart()
	waitFor(t, "leads again", func() bool { _, self := f.Leader(); return self })
	waitFor(t, "StoreErr clear", func() bool { return f.StoreErr() == nil })
}

// TestConfigValidate: bad settings are refused with a sentence.
func TestConfigValidate(t *testing.T) {
	good := etcdstore.Config{Endpoints: []string{"http://127.0.0.1:2379"}, ReplicaID: "web-1:8000"}
	if err := good.Validate(); err != nil {
		t.Fatalf("good config: %v", err)
	}
	for _, tc := range []struct {
		name   string
		change func(c *etcdstore.Config)
	}{
		{"no endpoint", func(c *etcdstore.Config) { c.Endpoints = nil }},
		{"endpoint without port", func(c *etcdstore.Config) { c.Endpoints = []string{"http://etcd"} }},
		{"endpoint with a path", func(c *etcdstore.Config) { c.Endpoints = []string{"http://etcd:2379/v3"} }},
		{"endpoint scheme", func(c *etcdstore.Config) { c.Endpoints = []string{"ftp://etcd:2379"} }},
		{"prefix without slashes", func(c *etcdstore.Config) { c.Prefix = "canaryd" }},
		{"prefix without trailing slash", func(c *etcdstore.Config) { c.Prefix = "/canaryd" }},
		{"prefix with space", func(c *etcdstore.Config) { c.Prefix = "/can ary/" }},
		{"empty id", func(c *etcdstore.Config) { c.ReplicaID = "" }},
		{"id with slash", func(c *etcdstore.Config) { c.ReplicaID = "a/b" }},
		{"id with space", func(c *etcdstore.Config) { c.ReplicaID = "a b" }},
		{"id too long", func(c *etcdstore.Config) { c.ReplicaID = strings.Repeat("x", 129) }},
		{"lease TTL fraction", func(c *etcdstore.Config) { c.LeaseTTL = 1500 * time.Millisecond }},
		{"username alone", func(c *etcdstore.Config) { c.Username = "canaryd" }},
	} {
		c := good
		c.Endpoints = append([]string(nil), good.Endpoints...)
		tc.change(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: Validate accepted %+v", tc.name, c)
		}
	}
}

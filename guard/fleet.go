package guard

import (
	"slices"
	"time"

	"github.com/canaryd/canaryd/proxy"
)

// Fleet is what a guard needs from the replicas it shares its rollout with
// (Config.Fleet; the package doc's "A fleet" says how it is used). The
// implementation (guard/etcdstore) keeps each replica's evidence under its
// lease, elects the leader, and is also the guard's Store. Its methods are
// safe for concurrent use and never call back into the guard; Peers, Leader
// and StoreErr answer from memory (no I/O).
type Fleet interface {
	// Self is this replica's id (CANARY_REPLICA_ID).
	Self() string
	// Name names the fleet (its etcd prefix), for metrics and views.
	Name() string
	// Leader returns the leader's id ("" while none is known) and whether
	// it is this replica.
	Leader() (id string, self bool)
	// Peers returns the last evidence of every live replica the fleet
	// knows of (this one included once it has published), by id.
	Peers() []Peer
	// Changes receives a value, coalesced, when the leadership changes or
	// another replica's evidence arrives. It is never closed.
	Changes() <-chan struct{}
	// Publish hands over this replica's latest evidence; it returns at
	// once and the evidence is written in the background, coalesced: an
	// urgent one (after a canary error, or at a new step) within a
	// quarter of a second, the others at most twice a second.
	Publish(e Evidence, urgent bool)
	// StoreErr is nil while the store answers, else why it does not.
	StoreErr() error
}

// Peer is the last evidence a replica published, as this replica received
// it.
type Peer struct {
	Evidence
	// Received is when it arrived here (this replica's clock: the
	// replicas' clocks need not agree).
	Received time.Time
}

// Evidence is what a replica of a fleet publishes for the others: the
// sufficient statistics of its judges since the current evidence began
// (Record.EvidenceSince, tagged so that counts of another step are never
// summed) and its window figures, from which any replica renders the
// fleet's /canary_check. Its JSON form is what the store keeps.
type Evidence struct {
	Replica string `json:"replica"`
	// Epoch is the Record.EvidenceSince the Step counts belong to, and
	// Release the release they were counted for.
	Epoch   time.Time `json:"epoch"`
	Release string    `json:"release"`
	// At is when the replica built it (its own clock).
	At time.Time `json:"at"`
	// Step counts each backend's requests, errors and slow requests since
	// this replica restarted its judges for Epoch: the fleet's judge sums
	// them.
	Step EvidenceCounts `json:"step"`
	// Window is the replica's sliding window, for the fleet's figures.
	Window EvidenceWindow `json:"window"`
}

// EvidenceCounts are both backends' counts.
type EvidenceCounts struct {
	Stable Counts `json:"stable"`
	Canary Counts `json:"canary"`
}

// Counts are requests, errors and slow requests.
type Counts struct {
	Requests uint64 `json:"requests"`
	Errors   uint64 `json:"errors"`
	Slow     uint64 `json:"slow"`
}

// EvidenceWindow is both backends' window figures.
type EvidenceWindow struct {
	Stable WindowCounts `json:"stable"`
	Canary WindowCounts `json:"canary"`
}

// WindowCounts are one backend's window figures with its latency
// histogram, kept sparse (a window's latencies fill a few of the
// histogram's proxy.NumBuckets buckets).
type WindowCounts struct {
	Counts
	Latency SparseHistogram `json:"latency,omitempty"`
}

// SparseHistogram is a proxy.Histogram without its empty buckets: pairs of
// (bucket index, count) in increasing index order, as JSON [[i, n], …].
type SparseHistogram [][2]uint64

// sparse keeps the non-empty buckets of h.
func sparse(h proxy.Histogram) SparseHistogram {
	var s SparseHistogram
	for i, c := range h.Counts {
		if c > 0 {
			s = append(s, [2]uint64{uint64(i), c})
		}
	}
	return s
}

// addTo adds s's counts to the dense counts (proxy.NumBuckets long);
// indexes out of range are ignored (a replica of another build).
func (s SparseHistogram) addTo(dense []uint64) {
	for _, p := range s {
		if p[0] < uint64(len(dense)) {
			dense[p[0]] += p[1]
		}
	}
}

// since is t minus base, never below zero.
func since(t, base proxy.Totals) Counts {
	sub := func(a, b uint64) uint64 {
		if a < b {
			return 0
		}
		return a - b
	}
	return Counts{Requests: sub(t.Requests, base.Requests), Errors: sub(t.Errors, base.Errors), Slow: sub(t.Slow, base.Slow)}
}

// windowCounts takes one backend's window figures from a snapshot.
func windowCounts(s *proxy.Stats) WindowCounts {
	return WindowCounts{Counts: Counts{Requests: s.Requests, Errors: s.Errors, Slow: s.Slow}, Latency: sparse(s.Latency)}
}

// evidenceLocked is this replica's evidence from its snapshot: counts since
// its judges restarted for the current evidence, and its window.
func (g *Guard) evidenceLocked(snap *proxy.Snapshot) Evidence {
	return Evidence{
		Replica: g.fleet.Self(),
		Epoch:   g.epoch,
		Release: g.epochRelease,
		At:      g.now(),
		Step: EvidenceCounts{
			Stable: since(snap.Stable.Totals, g.baseStable),
			Canary: since(snap.Canary.Totals, g.baseCanary),
		},
		Window: EvidenceWindow{Stable: windowCounts(&snap.Stable), Canary: windowCounts(&snap.Canary)},
	}
}

// fleetSnapshot is the fleet's snapshot for its judge and views: the
// window figures of every live replica summed, and as Totals the step
// counts of those whose evidence belongs to the current evidence of rec
// (own is this replica's, fresher than what it last published).
func fleetSnapshot(rec *Record, own *Evidence, peers []Peer, at time.Time, window time.Duration) proxy.Snapshot {
	snap := proxy.Snapshot{At: at, Window: window}
	stableLat := make([]uint64, proxy.NumBuckets)
	canaryLat := make([]uint64, proxy.NumBuckets)
	add := func(e *Evidence) {
		addWindow(&snap.Stable, &e.Window.Stable, stableLat)
		addWindow(&snap.Canary, &e.Window.Canary, canaryLat)
		if e.Epoch.Equal(rec.EvidenceSince) && e.Release == rec.Release {
			addTotals(&snap.Stable.Totals, e.Step.Stable)
			addTotals(&snap.Canary.Totals, e.Step.Canary)
		}
	}
	add(own)
	for i := range peers {
		if peers[i].Replica != own.Replica {
			add(&peers[i].Evidence)
		}
	}
	if snap.Stable.Requests > 0 {
		snap.Stable.Latency.Counts = stableLat
	}
	if snap.Canary.Requests > 0 {
		snap.Canary.Latency.Counts = canaryLat
	}
	return snap
}

func addWindow(s *proxy.Stats, w *WindowCounts, lat []uint64) {
	s.Requests += w.Requests
	s.Errors += w.Errors
	s.Slow += w.Slow
	w.Latency.addTo(lat)
}

func addTotals(t *proxy.Totals, c Counts) {
	t.Requests += c.Requests
	t.Errors += c.Errors
	t.Slow += c.Slow
}

// fleetFacts is the fleet's part of a guard's facts.
type fleetFacts struct {
	view FleetView
	// storeErr is why the store does not answer (nil when it does).
	storeErr error
	// live is the number of live replicas (at least 1: this one).
	live int
	// leading is whether this replica leads (always, alone).
	leading bool
	// shared is whether the rollout is a fleet's (Config.Fleet).
	shared bool
}

// fleetFactsLocked describes the fleet as of now: its replicas as their
// evidence shows them, this one from its own last evidence when the store
// has none of it yet.
func (g *Guard) fleetFactsLocked(now time.Time) fleetFacts {
	if g.fleet == nil {
		self := g.cfg.ReplicaID
		f := fleetFacts{live: 1, leading: true}
		f.storeErr = g.save.err
		f.view = FleetView{Self: self, Leader: self, Store: g.store.Kind(), StoreOK: f.storeErr == nil, Replicas: []ReplicaView{{
			ID: self, Leader: true,
			Requests:       g.stableView.Requests + g.canaryView.Requests,
			CanaryRequests: g.canaryView.Requests,
		}}}
		return f
	}
	self := g.fleet.Self()
	leader, leading := g.fleet.Leader()
	f := fleetFacts{storeErr: g.fleet.StoreErr(), leading: leading, shared: true}
	f.view = FleetView{Self: self, Leader: leader, Store: g.store.Kind(), StoreOK: f.storeErr == nil, Replicas: []ReplicaView{}}
	seenSelf := false
	for _, p := range g.fleet.Peers() {
		seenSelf = seenSelf || p.Replica == self
		f.view.Replicas = append(f.view.Replicas, ReplicaView{
			ID: p.Replica, Leader: p.Replica == leader,
			LastReportMs:   max(now.Sub(p.Received), 0).Milliseconds(),
			Requests:       p.Window.Stable.Requests + p.Window.Canary.Requests,
			CanaryRequests: p.Window.Canary.Requests,
		})
	}
	if !seenSelf {
		own := g.own
		age := int64(0)
		if !own.At.IsZero() {
			age = max(now.Sub(own.At), 0).Milliseconds()
		}
		f.view.Replicas = append(f.view.Replicas, ReplicaView{
			ID: self, Leader: leading,
			LastReportMs:   age,
			Requests:       own.Window.Stable.Requests + own.Window.Canary.Requests,
			CanaryRequests: own.Window.Canary.Requests,
		})
	}
	slices.SortFunc(f.view.Replicas, func(a, b ReplicaView) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	f.live = len(f.view.Replicas)
	return f
}

// Package etcdstore keeps a fleet's rollout in etcd: the guard.Store and
// the guard.Fleet of canaryd replicas that share one rollout
// (CANARY_ETCD_ENDPOINTS). It is the only package that talks to etcd.
//
// # Keys
//
// Everything of a fleet lives under its prefix P (CANARY_ETCD_PREFIX,
// "/canaryd/default/"); two fleets with different prefixes never read or
// write each other's keys (a prefix must start and end with "/", and
// replica ids contain no "/", so a fleet's listings never reach into a
// prefix nested in its own):
//
//	P + "rollout"              the rollout record (guard.EncodeRecord), no lease
//	P + "replicas/" + id       each replica's registration and evidence (guard.Evidence, JSON), under its lease
//	P + "election/" + lease    the election's candidates (concurrency.Election), under each candidate's lease
//	P + "quarantine/" + nanos  an unreadable rollout value kept aside (Quarantine)
//
// # Who writes what, and when
//
// The rollout record is written only by compare-and-swap transactions: a
// save puts it if its mod revision is still the revision the change was
// computed from (guard.Revision is the key's mod revision), so two
// replicas acting at once never lose an update; the loser loads the newer
// record and computes its change again (guard.Rebase: a rollback is never
// undone that way). Any replica writes it for the operators' commands it
// takes (the answer waits for etcd to accept it) and for a rollback its own
// judge decides; the leader also for the plan's steps and, every 5 s while a
// step runs, its earned observation. Every replica watches the key and
// applies a new revision at once (well within a second).
//
// Each replica holds one lease (CANARY_ETCD_LEASE_TTL, 5 s by
// default), kept alive by the client, and under it its key
// P+"replicas/"+id, which it creates only if absent: a second live replica
// with the same id is refused (ErrReplicaIDTaken; a dead one's key goes
// with its lease, so a replica restarted after a crash waits at most that
// long). It puts its evidence there once a second, and after a canary
// error or at a new step at once (coalesced: at most every 250 ms); each
// put is a transaction conditioned on the key still being under its lease.
// Every replica watches P+"replicas/" and keeps the others' latest
// evidence in memory (guard.Fleet.Peers): the request path and the judges
// never wait for etcd. In steady state a replica therefore writes about
// once a second, the leader a little more (its progress saves): at most
// twice a second (TestWritesPerReplica measures it with etcd's own
// counters).
//
// The leader is elected with the client's concurrency.Election on
// P+"election" under the same lease: when a leader dies, its lease expires
// within its TTL and the next candidate leads. A replica whose lease
// cannot be kept alive (etcd unreachable for the TTL) stops leading at once
// on its own, and campaigns again with a new lease when etcd answers.
//
// # etcd unreachable
//
// Reads and writes are bounded (Config.OpTimeout); the first failure makes
// StoreErr non-nil until an operation succeeds again. The guard keeps the
// rollout in force meanwhile: the replicas proxy at the last weight they
// knew, each still rolls back on its own evidence (in memory at once, saved
// when etcd returns, where the rollback wins over any other change), and no
// step advances (the leader runs the plan only while the store answers).
package etcdstore

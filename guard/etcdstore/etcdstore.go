package etcdstore

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/rs/zerolog"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/canaryd/canaryd/guard"
)

// Defaults of zero Config values.
const (
	// DefaultPrefix is CANARY_ETCD_PREFIX's default.
	DefaultPrefix = "/canaryd/default/"
	// DefaultLeaseTTL is how long a replica's lease outlives it: a dead
	// leader is replaced after at most this (CANARY_ETCD_LEASE_TTL).
	DefaultLeaseTTL  = 5 * time.Second
	defaultOpTimeout = 3 * time.Second
)

// Publication of evidence (see the package doc).
const (
	// publishGap is the least time between two puts of a replica's
	// evidence; urgentGap after a canary error or at a new step.
	publishGap = 500 * time.Millisecond
	urgentGap  = 250 * time.Millisecond
	// retryMin and retryMax bound the backoff of the background loops
	// while etcd does not answer.
	retryMin = 100 * time.Millisecond
	retryMax = 2 * time.Second
)

// Errors that name a configuration value.
var (
	// ErrReplicaIDTaken means another live replica of the fleet registered
	// this replica's id (CANARY_REPLICA_ID).
	ErrReplicaIDTaken = errors.New("another live replica of the fleet has this replica id")
	// ErrAuth means etcd refused the user name and password.
	ErrAuth = errors.New("etcd refused the user name or password")
)

// Config configures a Fleet. Zero values mean the documented defaults.
type Config struct {
	// Endpoints are etcd's client URLs (http:// or https://, or host:port).
	// Required.
	Endpoints []string
	// Prefix is the fleet's key prefix; empty means DefaultPrefix.
	Prefix string
	// TLS, if non-nil, is used to reach etcd (its server CA, and a client
	// certificate when etcd asks for one). Nil means plain connections.
	TLS *tls.Config
	// Username and Password authenticate to etcd; empty means none.
	Username, Password string
	// ReplicaID is this replica's id in the fleet (ValidateReplicaID).
	// Required.
	ReplicaID string
	// LeaseTTL is the lifetime of the replica's lease (ValidateLeaseTTL:
	// whole seconds, at least 2). Zero means DefaultLeaseTTL.
	LeaseTTL time.Duration
	// OpTimeout bounds each read or write; zero means 3s.
	OpTimeout time.Duration
}

// Validate reports the first problem with c as one sentence.
func (c Config) Validate() error {
	if len(c.Endpoints) == 0 {
		return errors.New("no etcd endpoint")
	}
	for _, ep := range c.Endpoints {
		if err := ValidateEndpoint(ep); err != nil {
			return err
		}
	}
	if c.Prefix != "" {
		if err := ValidatePrefix(c.Prefix); err != nil {
			return err
		}
	}
	if err := ValidateReplicaID(c.ReplicaID); err != nil {
		return err
	}
	if c.LeaseTTL != 0 {
		if err := ValidateLeaseTTL(c.LeaseTTL); err != nil {
			return fmt.Errorf("lease TTL %w", err)
		}
	}
	if c.OpTimeout < 0 {
		return errors.New("operation timeout must not be negative")
	}
	if (c.Username == "") != (c.Password == "") {
		return errors.New("etcd username and password go together")
	}
	return nil
}

// minLeaseTTL is the shortest lease. A lease's TTL is whole seconds in
// etcd, and one second leaves a replica no slack for a slow keep-alive
// before it loses its lease (and its leadership).
const minLeaseTTL = 2 * time.Second

// ValidateLeaseTTL checks Config.LeaseTTL set explicitly: a whole number of
// seconds, at least 2s.
func ValidateLeaseTTL(d time.Duration) error {
	if d < minLeaseTTL || d%time.Second != 0 {
		return fmt.Errorf("%v must be a whole number of seconds, at least %v", d, minLeaseTTL)
	}
	return nil
}

// ValidateEndpoint checks one etcd client URL: http(s)://host:port or
// host:port.
func ValidateEndpoint(ep string) error {
	raw := ep
	if !strings.Contains(ep, "://") {
		raw = "http://" + ep
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Port() == "" ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return fmt.Errorf("etcd endpoint %q must be http://host:port, https://host:port or host:port", ep)
	}
	return nil
}

// ValidatePrefix checks a fleet's key prefix: it starts and ends with "/",
// at most 200 bytes of printable UTF-8 without spaces.
func ValidatePrefix(p string) error {
	switch {
	case !strings.HasPrefix(p, "/") || !strings.HasSuffix(p, "/"):
		return fmt.Errorf("prefix %q must start and end with / (e.g. /canaryd/shop/)", p)
	case len(p) > 200:
		return fmt.Errorf("prefix is %d bytes long; at most 200", len(p))
	case !printable(p):
		return fmt.Errorf("prefix %q must be printable UTF-8 without spaces", p)
	}
	return nil
}

// ValidateReplicaID checks a replica id: 1 to 128 bytes of printable
// UTF-8 without spaces or "/".
func ValidateReplicaID(id string) error {
	switch {
	case id == "":
		return errors.New("replica id is empty")
	case len(id) > 128:
		return fmt.Errorf("replica id is %d bytes long; at most 128", len(id))
	case strings.Contains(id, "/") || !printable(id):
		return fmt.Errorf("replica id %q must be printable UTF-8 without spaces or /", id)
	}
	return nil
}

func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// Fleet is one replica's view of its fleet in etcd: the guard.Store of the
// shared rollout and the guard.Fleet of its replicas. Create it with New,
// Register it, run Run while canaryd serves, and Close it after the guard
// stopped. Its methods are safe for concurrent use.
type Fleet struct {
	cfg      Config
	log      zerolog.Logger
	ttl      int // lease TTL in seconds
	rollout  string
	replicas string
	election string
	quarant  string
	selfKey  string

	// instance tells this process's registrations apart from another's
	// with the same id (a replica restarted after a crash).
	instance string

	changes chan struct{} // to the guard (Changes)
	pubSig  chan struct{} // to the publisher
	lost    chan error    // the publisher found the id taken

	// connMu protects the client's creation (lazy when etcd asks for a
	// password and does not answer at start).
	connMu   sync.Mutex
	client   *clientv3.Client
	lastDial time.Time
	dialErr  error

	// mu protects the fields below.
	mu sync.Mutex
	// storeErr is the last failed operation's error, nil after a success.
	storeErr   error
	failedOps  uint64
	session    *concurrency.Session // nil while the replica has no lease
	elect      *concurrency.Election
	leading    bool // won the election in the current session
	leaderID   string
	peers      map[string]guard.Peer
	pending    *guard.Evidence
	urgent     bool
	lastPut    time.Time
	registered bool
}

// New checks cfg and prepares the replica's client; it does no I/O when
// etcd needs no password (and otherwise tries once, for at most
// OpTimeout, to log in: a replica starting while etcd is unreachable
// still starts).
func New(cfg Config, log zerolog.Logger) (*Fleet, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("etcd: %w", err)
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if cfg.LeaseTTL == 0 {
		cfg.LeaseTTL = DefaultLeaseTTL
	}
	if cfg.OpTimeout == 0 {
		cfg.OpTimeout = defaultOpTimeout
	}
	f := &Fleet{
		cfg:      cfg,
		log:      log.With().Str("component", "etcd").Str("replica", cfg.ReplicaID).Logger(),
		ttl:      int(math.Ceil(cfg.LeaseTTL.Seconds())),
		rollout:  cfg.Prefix + "rollout",
		replicas: cfg.Prefix + "replicas/",
		election: cfg.Prefix + "election",
		quarant:  cfg.Prefix + "quarantine/",
		selfKey:  cfg.Prefix + "replicas/" + cfg.ReplicaID,
		instance: newInstance(),
		changes:  make(chan struct{}, 1),
		pubSig:   make(chan struct{}, 1),
		lost:     make(chan error, 1),
		peers:    map[string]guard.Peer{},
	}
	if _, err := f.conn(); err != nil && !unreachable(err) {
		return nil, fmt.Errorf("etcd: %w", err)
	}
	return f, nil
}

// conn returns the client, creating it if needed (at most once a second
// while creating it fails).
func (f *Fleet) conn() (*clientv3.Client, error) {
	f.connMu.Lock()
	defer f.connMu.Unlock()
	if f.client != nil {
		return f.client, nil
	}
	if !f.lastDial.IsZero() && time.Since(f.lastDial) < time.Second {
		return nil, f.dialErr
	}
	f.lastDial = time.Now()
	c, err := clientv3.New(clientv3.Config{
		Endpoints:            f.cfg.Endpoints,
		TLS:                  f.cfg.TLS,
		Username:             f.cfg.Username,
		Password:             f.cfg.Password,
		DialTimeout:          f.cfg.OpTimeout, // bounds the login only: dialing does not block
		DialKeepAliveTime:    5 * time.Second,
		DialKeepAliveTimeout: 2 * time.Second,
		PermitWithoutStream:  true,
		Logger:               zap.NewNop(), // failures reach the log through this package
		// gRPC's default reconnection backoff grows to two minutes: an etcd
		// that comes back must be found within a second or so.
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: f.cfg.OpTimeout,
		})},
	})
	if errors.Is(err, rpctypes.ErrAuthFailed) || errors.Is(err, rpctypes.ErrGRPCAuthFailed) {
		err = fmt.Errorf("%w: %w", ErrAuth, err)
	}
	if err != nil {
		f.dialErr = fmt.Errorf("connect to %s: %w", strings.Join(f.cfg.Endpoints, ","), err)
		f.note(f.dialErr)
		return nil, f.dialErr
	}
	f.client = c
	return c, nil
}

// Close closes the client. Call it after Run returned and the guard
// stopped (the guard's last save goes through it).
func (f *Fleet) Close() error {
	f.connMu.Lock()
	defer f.connMu.Unlock()
	if f.client == nil {
		return nil
	}
	return f.client.Close()
}

// op bounds one operation by OpTimeout and returns the client.
func (f *Fleet) op(ctx context.Context) (context.Context, context.CancelFunc, *clientv3.Client, error) {
	c, err := f.conn()
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, f.cfg.OpTimeout)
	return ctx, cancel, c, nil
}

// note records an operation's outcome for StoreErr.
func (f *Fleet) note(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil {
		if f.storeErr != nil {
			f.log.Info().Uint64("failed_operations", f.failedOps).Msg("etcd answers again")
		}
		f.storeErr, f.failedOps = nil, 0
		return
	}
	if errors.Is(err, context.Canceled) {
		return // our own shutdown, not etcd's failure
	}
	if f.storeErr == nil {
		f.log.Error().Err(err).Strs("endpoints", f.cfg.Endpoints).Msg("etcd does not answer: the replica keeps the rollout in force and retries")
	}
	f.storeErr = err
	f.failedOps++
}

// unreachable reports whether err means that etcd did not answer (as
// opposed to answering with a refusal).
func unreachable(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "Unavailable") ||
		strings.Contains(err.Error(), "connection refused") || strings.Contains(err.Error(), "context deadline exceeded")
}

// Kind is "etcd".
func (f *Fleet) Kind() string { return "etcd" }

// Self is this replica's id.
func (f *Fleet) Self() string { return f.cfg.ReplicaID }

// Name is the fleet's prefix.
func (f *Fleet) Name() string { return f.cfg.Prefix }

// Load reads the rollout record; its revision is the key's mod revision.
func (f *Fleet) Load(ctx context.Context) (guard.Record, guard.Revision, error) {
	ctx, cancel, c, err := f.op(ctx)
	if err != nil {
		return guard.Record{}, 0, err
	}
	defer cancel()
	resp, err := c.Get(ctx, f.rollout)
	f.note(err)
	if err != nil {
		return guard.Record{}, 0, fmt.Errorf("read %s from etcd: %w", f.rollout, err)
	}
	if len(resp.Kvs) == 0 {
		return guard.Record{}, 0, guard.ErrNoRecord
	}
	kv := resp.Kvs[0]
	rec, _, err := guard.DecodeRecord(kv.Value)
	if err != nil {
		return guard.Record{}, guard.Revision(kv.ModRevision), fmt.Errorf("etcd key %s: %w", f.rollout, err)
	}
	return rec, guard.Revision(kv.ModRevision), nil
}

// Save puts rec if the key's mod revision is still prev (0: the key is
// absent), in one transaction.
func (f *Fleet) Save(ctx context.Context, rec guard.Record, prev guard.Revision) (guard.Revision, error) {
	data, err := guard.EncodeRecord(rec, 0)
	if err != nil {
		return 0, err
	}
	ctx, cancel, c, err := f.op(ctx)
	if err != nil {
		return 0, err
	}
	defer cancel()
	resp, err := c.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(f.rollout), "=", int64(prev))).
		Then(clientv3.OpPut(f.rollout, string(data))).
		Else(clientv3.OpGet(f.rollout)).
		Commit()
	f.note(err)
	if err != nil {
		return 0, fmt.Errorf("write %s to etcd: %w", f.rollout, err)
	}
	if resp.Succeeded {
		return guard.Revision(resp.Header.Revision), nil
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) > 0 {
		if _, _, derr := guard.DecodeRecord(kvs[0].Value); derr != nil {
			return 0, fmt.Errorf("etcd key %s: %w", f.rollout, derr)
		}
		return 0, fmt.Errorf("%w: etcd key %s is at revision %d, the change was computed from %d", guard.ErrRevisionConflict, f.rollout, kvs[0].ModRevision, prev)
	}
	return 0, fmt.Errorf("%w: etcd key %s was deleted, the change was computed from revision %d", guard.ErrRevisionConflict, f.rollout, prev)
}

// Quarantine moves the stored value to P+"quarantine/<unix nanoseconds>"
// and deletes the rollout key, in one transaction.
func (f *Fleet) Quarantine(ctx context.Context) (string, error) {
	ctx, cancel, c, err := f.op(ctx)
	if err != nil {
		return "", err
	}
	defer cancel()
	resp, err := c.Get(ctx, f.rollout)
	f.note(err)
	if err != nil {
		return "", fmt.Errorf("read %s from etcd: %w", f.rollout, err)
	}
	if len(resp.Kvs) == 0 {
		return "", fmt.Errorf("etcd key %s is gone already", f.rollout)
	}
	kv := resp.Kvs[0]
	aside := fmt.Sprintf("%s%d", f.quarant, time.Now().UnixNano())
	tr, err := c.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(f.rollout), "=", kv.ModRevision)).
		Then(clientv3.OpPut(aside, string(kv.Value)), clientv3.OpDelete(f.rollout)).
		Commit()
	f.note(err)
	if err != nil {
		return "", fmt.Errorf("keep %s aside in etcd: %w", f.rollout, err)
	}
	if !tr.Succeeded {
		return "", fmt.Errorf("%w: etcd key %s changed while it was being kept aside", guard.ErrRevisionConflict, f.rollout)
	}
	return "etcd key " + aside, nil
}

// Watch signals when the rollout key changes, and once whenever the watch
// is (re)established, so that a change made while etcd was out of reach
// is seen too. The channel is closed when ctx ends.
func (f *Fleet) Watch(ctx context.Context) <-chan struct{} {
	ch := make(chan struct{}, 1)
	go func() {
		defer close(ch)
		f.watchKey(ctx, f.rollout, false, func(*clientv3.GetResponse) { signal(ch) }, func(clientv3.WatchResponse) { signal(ch) })
	}()
	return ch
}

// watchKey reads key (a prefix with prefix set), hands the answer to
// listed, then watches it from the next revision, handing each response to
// changed; it reads and watches again after any failure, until ctx ends.
func (f *Fleet) watchKey(ctx context.Context, key string, prefix bool, listed func(*clientv3.GetResponse), changed func(clientv3.WatchResponse)) {
	backoff := retryMin
	for ctx.Err() == nil {
		opts := []clientv3.OpOption{}
		if prefix {
			opts = append(opts, clientv3.WithPrefix())
		}
		octx, cancel, c, err := f.op(ctx)
		var resp *clientv3.GetResponse
		if err == nil {
			resp, err = c.Get(octx, key, opts...)
			cancel()
			f.note(err)
		}
		if err != nil {
			if !sleep(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, retryMax)
			continue
		}
		backoff = retryMin
		listed(resp)
		wctx, stop := context.WithCancel(clientv3.WithRequireLeader(ctx))
		wch := c.Watch(wctx, key, append(opts, clientv3.WithRev(resp.Header.Revision+1))...)
		for wr := range wch {
			if err := wr.Err(); err != nil {
				if ctx.Err() == nil {
					f.log.Debug().Err(err).Str("key", key).Msg("etcd watch ended; reading again")
				}
				break
			}
			changed(wr)
		}
		stop()
	}
}

// Changes signals leadership changes and other replicas' new evidence.
func (f *Fleet) Changes() <-chan struct{} { return f.changes }

// Leader returns the leader's id and whether it is this replica.
func (f *Fleet) Leader() (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.leading {
		return f.cfg.ReplicaID, true
	}
	return f.leaderID, false
}

// Peers returns every live replica's latest evidence, sorted by id.
func (f *Fleet) Peers() []guard.Peer {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]guard.Peer, 0, len(f.peers))
	for _, p := range f.peers {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b guard.Peer) int { return strings.Compare(a.Replica, b.Replica) })
	return out
}

// StoreErr is nil while etcd answers.
func (f *Fleet) StoreErr() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.storeErr == nil && f.session == nil && f.registered {
		return errors.New("the replica's etcd lease is lost; waiting for etcd to grant a new one")
	}
	return f.storeErr
}

// Publish hands over the replica's latest evidence; the publisher puts it.
func (f *Fleet) Publish(e guard.Evidence, urgent bool) {
	f.mu.Lock()
	f.pending = &e
	f.urgent = f.urgent || urgent
	f.mu.Unlock()
	signal(f.pubSig)
}

// Register grants the replica's lease and creates its key, so that a
// second live replica with the same id is refused at start
// (ErrReplicaIDTaken). Any other error means etcd did not answer within
// ctx: Run registers when it does.
func (f *Fleet) Register(ctx context.Context) error {
	sess, err := f.newSession(ctx)
	if err != nil {
		return err
	}
	if err := f.register(ctx, sess); err != nil {
		f.closeSession(sess, err)
		return err
	}
	f.mu.Lock()
	f.session, f.registered = sess, true
	f.mu.Unlock()
	return nil
}

// newSession grants a lease (bounded by OpTimeout) and keeps it alive.
func (f *Fleet) newSession(ctx context.Context) (*concurrency.Session, error) {
	octx, cancel, c, err := f.op(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	lease, err := c.Grant(octx, int64(f.ttl))
	f.note(err)
	if err != nil {
		return nil, fmt.Errorf("grant a lease in etcd: %w", err)
	}
	sess, err := concurrency.NewSession(c, concurrency.WithLease(lease.ID), concurrency.WithTTL(f.ttl))
	if err != nil {
		f.note(err)
		return nil, fmt.Errorf("keep the etcd lease alive: %w", err)
	}
	return sess, nil
}

// register creates the replica's key under sess's lease. A key held by
// another lease is waited for, at most that lease's TTL and a second: a
// replica that died (SIGKILL) leaves its key until its lease expires, a
// live one keeps it.
func (f *Fleet) register(ctx context.Context, sess *concurrency.Session) error {
	data, err := f.encode(guard.Evidence{Replica: f.cfg.ReplicaID, At: time.Now()})
	if err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		resp, err := f.putIf(ctx, clientv3.Compare(clientv3.CreateRevision(f.selfKey), "=", 0), sess, data)
		if err != nil {
			return err
		}
		if resp.Succeeded {
			return nil
		}
		kvs := resp.Responses[0].GetResponseRange().Kvs
		if len(kvs) == 0 {
			continue // deleted meanwhile
		}
		kv := kvs[0]
		if clientv3.LeaseID(kv.Lease) == sess.Lease() {
			return nil
		}
		if held, err := decodeStored(kv.Value); err == nil && held.Instance == f.instance {
			// This process's registration under a lease it lost: move it
			// to the new lease.
			resp, err := f.putIf(ctx, clientv3.Compare(clientv3.ModRevision(f.selfKey), "=", kv.ModRevision), sess, data)
			if err != nil || resp.Succeeded {
				return err
			}
			continue
		}
		if attempt > 2 {
			return fmt.Errorf("%w: %q is registered under %s by a replica that keeps its lease alive", ErrReplicaIDTaken, f.cfg.ReplicaID, f.selfKey)
		}
		wait := f.cfg.LeaseTTL
		if kv.Lease != 0 {
			octx, cancel, c, err := f.op(ctx)
			if err != nil {
				return err
			}
			ttl, err := c.TimeToLive(octx, clientv3.LeaseID(kv.Lease))
			cancel()
			f.note(err)
			if err == nil && ttl.GrantedTTL > 0 {
				// etcd extends leases by about an election timeout when
				// its leader changes (or it restarts): allow for it.
				wait = time.Duration(ttl.GrantedTTL)*time.Second + time.Second
			}
		}
		// Debug only: a refusal is the one line a failed start prints.
		f.log.Debug().Str("key", f.selfKey).Dur("waiting", wait+time.Second).
			Msg("this replica id is registered already; waiting for that registration's lease to end (a replica that died) before refusing it (a live replica)")
		if !f.waitDeleted(ctx, kv.ModRevision, wait+time.Second) {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("%w: %q is registered under %s by a replica that kept its lease alive for %v", ErrReplicaIDTaken, f.cfg.ReplicaID, f.selfKey, wait+time.Second)
		}
	}
}

// putIf puts data at the replica's key under sess's lease if cmp holds,
// else reads the key, in one transaction bounded by OpTimeout.
func (f *Fleet) putIf(ctx context.Context, cmp clientv3.Cmp, sess *concurrency.Session, data []byte) (*clientv3.TxnResponse, error) {
	octx, cancel, c, err := f.op(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	resp, err := c.Txn(octx).
		If(cmp).
		Then(clientv3.OpPut(f.selfKey, string(data), clientv3.WithLease(sess.Lease()))).
		Else(clientv3.OpGet(f.selfKey)).
		Commit()
	f.note(err)
	if err != nil {
		return nil, fmt.Errorf("write replica %q's key in etcd: %w", f.cfg.ReplicaID, err)
	}
	return resp, nil
}

// waitDeleted waits up to d for the replica's key, at mod revision rev, to
// be deleted.
func (f *Fleet) waitDeleted(ctx context.Context, rev int64, d time.Duration) bool {
	c, err := f.conn()
	if err != nil {
		return false
	}
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for wr := range c.Watch(wctx, f.selfKey, clientv3.WithRev(rev+1)) {
		for _, ev := range wr.Events {
			if ev.Type == clientv3.EventTypeDelete {
				return true
			}
		}
		if wr.Err() != nil {
			return false
		}
	}
	return false
}

// closeSession ends a session: its lease revoked when etcd answers (its
// keys go at once), else left to expire.
func (f *Fleet) closeSession(sess *concurrency.Session, cause error) {
	if cause != nil && unreachable(cause) {
		sess.Orphan()
		return
	}
	if err := sess.Close(); err != nil {
		f.log.Debug().Err(err).Msg("revoke the etcd lease")
	}
}

// Run keeps the replica in its fleet until ctx ends: its lease and
// registration (again after losing them), its candidacy in the election,
// the publication of its evidence, and the watches of the others' evidence
// and of the leader. At the end it resigns and revokes its lease, so that
// another replica leads at once. It returns ErrReplicaIDTaken (wrapped)
// if another live replica registered this id while this one had lost its
// lease; nil otherwise.
func (f *Fleet) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { f.watchPeers(ctx) })
	wg.Go(func() { f.watchLeader(ctx) })
	wg.Go(func() { f.publishLoop(ctx) })
	err := f.sessionLoop(ctx)
	cancel()
	wg.Wait()
	return err
}

// sessionLoop holds a lease and a candidacy, and renews them after a loss.
func (f *Fleet) sessionLoop(ctx context.Context) error {
	backoff := retryMin
	for {
		f.mu.Lock()
		sess := f.session
		f.mu.Unlock()
		if sess == nil {
			var err error
			sess, err = f.newSession(ctx)
			if err == nil {
				if err = f.register(ctx, sess); err != nil {
					f.closeSession(sess, err)
				}
			}
			switch {
			case ctx.Err() != nil:
				return nil
			case errors.Is(err, ErrReplicaIDTaken):
				return err
			case err != nil:
				if !sleep(ctx, backoff) {
					return nil
				}
				backoff = min(2*backoff, retryMax)
				continue
			}
			backoff = retryMin
			f.mu.Lock()
			f.session, f.registered = sess, true
			f.mu.Unlock()
			f.log.Info().Int64("lease", int64(sess.Lease())).Msg("registered in the fleet")
			signal(f.pubSig) // publish at once under the new lease
		}
		campaignCtx, stopCampaign := context.WithCancel(ctx)
		campaigned := make(chan struct{})
		go func() {
			defer close(campaigned)
			f.campaign(campaignCtx, sess)
		}()
		var err error
		select {
		case <-ctx.Done():
		case <-sess.Done():
			err = errors.New("lost the etcd lease")
		case err = <-f.lost:
		}
		stopCampaign()
		<-campaigned
		f.mu.Lock()
		wasLeading := f.leading
		f.session, f.elect, f.leading = nil, nil, false
		f.mu.Unlock()
		signal(f.changes)
		if ctx.Err() != nil {
			f.leave(sess, wasLeading)
			return nil
		}
		if errors.Is(err, ErrReplicaIDTaken) {
			f.closeSession(sess, nil)
			return err
		}
		f.log.Warn().Err(err).Bool("was_leader", wasLeading).Msg("lost the fleet's lease (etcd unreachable for its TTL): no longer leading; registering again when etcd answers")
		sess.Orphan()
	}
}

// campaign runs for leadership in sess until ctx ends; once elected, the
// replica leads until its session ends.
func (f *Fleet) campaign(ctx context.Context, sess *concurrency.Session) {
	e := concurrency.NewElection(sess, f.election)
	if err := e.Campaign(ctx, f.cfg.ReplicaID); err != nil {
		return
	}
	f.mu.Lock()
	if f.session == sess {
		f.elect, f.leading = e, true
	}
	f.mu.Unlock()
	f.log.Info().Msg("elected leader of the fleet")
	signal(f.changes)
}

// leave resigns (when leading) and revokes the lease, at shutdown.
func (f *Fleet) leave(sess *concurrency.Session, leading bool) {
	c, err := f.conn()
	if err != nil {
		sess.Orphan()
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), f.cfg.OpTimeout)
	defer cancel()
	if _, err := c.Revoke(ctx, sess.Lease()); err != nil {
		f.log.Warn().Err(err).Bool("was_leader", leading).Msg("could not revoke the etcd lease at shutdown: it expires within its TTL")
	}
	sess.Orphan()
}

// publishLoop puts the replica's latest evidence under its lease: urgent
// ones at most every urgentGap, the others every publishGap.
func (f *Fleet) publishLoop(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-f.pubSig:
		case <-timer.C:
		}
		f.mu.Lock()
		e, urgent, sess, last := f.pending, f.urgent, f.session, f.lastPut
		gap := publishGap
		if urgent {
			gap = urgentGap
		}
		wait := gap - time.Since(last)
		if e == nil || sess == nil {
			f.mu.Unlock()
			continue
		}
		if wait > 0 {
			f.mu.Unlock()
			timer.Reset(wait)
			continue
		}
		f.pending, f.urgent, f.lastPut = nil, false, time.Now()
		f.mu.Unlock()
		if err := f.put(ctx, sess, *e); err != nil {
			if errors.Is(err, ErrReplicaIDTaken) {
				select {
				case f.lost <- err:
				default:
				}
				return
			}
			f.mu.Lock()
			if f.pending == nil {
				f.pending = e // the next attempt brings it if nothing newer came
			}
			f.mu.Unlock()
		}
	}
}

// put writes e under the replica's key if the key is still under sess's
// lease; a key that is gone is created again.
func (f *Fleet) put(ctx context.Context, sess *concurrency.Session, e guard.Evidence) error {
	data, err := f.encode(e)
	if err != nil {
		return err
	}
	resp, err := f.putIf(ctx, clientv3.Compare(clientv3.LeaseValue(f.selfKey), "=", int64(sess.Lease())), sess, data)
	if err != nil {
		return err
	}
	if resp.Succeeded {
		return nil
	}
	// The key is not ours any more (deleted by hand, or the lease ended):
	// create it again, unless another live replica took the id. A lease
	// that ended is the session loop's to renew.
	select {
	case <-sess.Done():
		return nil
	default:
	}
	return f.register(ctx, sess)
}

// watchPeers keeps the other replicas' latest evidence.
func (f *Fleet) watchPeers(ctx context.Context) {
	f.watchKey(ctx, f.replicas, true, func(resp *clientv3.GetResponse) {
		now := time.Now()
		peers := map[string]guard.Peer{}
		for _, kv := range resp.Kvs {
			if p, ok := f.peer(kv.Key, kv.Value, now); ok {
				peers[p.Replica] = p
			}
		}
		f.mu.Lock()
		f.peers = peers
		f.mu.Unlock()
		signal(f.changes)
	}, func(wr clientv3.WatchResponse) {
		now := time.Now()
		f.mu.Lock()
		for _, ev := range wr.Events {
			id := strings.TrimPrefix(string(ev.Kv.Key), f.replicas)
			switch ev.Type {
			case clientv3.EventTypeDelete:
				delete(f.peers, id)
			case clientv3.EventTypePut:
				if p, ok := f.peer(ev.Kv.Key, ev.Kv.Value, now); ok {
					f.peers[p.Replica] = p
				}
			}
		}
		f.mu.Unlock()
		signal(f.changes)
	})
}

// peer decodes a replica's key and value; keys below a nested prefix
// (another fleet's) and unreadable values are skipped.
func (f *Fleet) peer(key, value []byte, now time.Time) (guard.Peer, bool) {
	id := strings.TrimPrefix(string(key), f.replicas)
	if id == "" || strings.Contains(id, "/") {
		return guard.Peer{}, false
	}
	st, err := decodeStored(value)
	if err != nil {
		f.log.Debug().Err(err).Str("key", string(key)).Msg("skipping unreadable evidence")
		return guard.Peer{}, false
	}
	e := st.Evidence
	e.Replica = id
	return guard.Peer{Evidence: e, Received: now}, true
}

// stored is a replica key's value: its evidence (guard.Evidence's JSON
// form) and the process that wrote it.
type stored struct {
	Instance string `json:"instance"`
	guard.Evidence
}

// encode is the value of the replica's key for e.
func (f *Fleet) encode(e guard.Evidence) ([]byte, error) {
	data, err := json.Marshal(stored{Instance: f.instance, Evidence: e})
	if err != nil {
		return nil, fmt.Errorf("encode evidence: %w", err)
	}
	return data, nil
}

// decodeStored reads a replica key's value.
func decodeStored(data []byte) (stored, error) {
	var st stored
	if err := json.Unmarshal(data, &st); err != nil {
		return stored{}, fmt.Errorf("unreadable evidence: %w", err)
	}
	return st, nil
}

// newInstance is a random id for this process.
func newInstance() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// watchLeader keeps the leader's id: the candidate with the oldest key in
// the election.
func (f *Fleet) watchLeader(ctx context.Context) {
	prefix := f.election + "/"
	set := func(resp *clientv3.GetResponse) {
		id := ""
		var oldest int64
		for _, kv := range resp.Kvs {
			if rest := strings.TrimPrefix(string(kv.Key), prefix); strings.Contains(rest, "/") {
				continue
			}
			if oldest == 0 || kv.CreateRevision < oldest {
				oldest, id = kv.CreateRevision, string(kv.Value)
			}
		}
		f.mu.Lock()
		changed := f.leaderID != id
		f.leaderID = id
		f.mu.Unlock()
		if changed {
			signal(f.changes)
		}
	}
	f.watchKey(ctx, prefix, true, set, func(clientv3.WatchResponse) {
		octx, cancel, c, err := f.op(ctx)
		if err != nil {
			return
		}
		defer cancel()
		resp, err := c.Get(octx, prefix, clientv3.WithPrefix())
		f.note(err)
		if err == nil {
			set(resp)
		}
	})
}

// signal sends on a buffered channel without blocking (coalescing).
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// sleep waits d unless ctx ends first (false).
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Interface checks.
var (
	_ guard.Store = (*Fleet)(nil)
	_ guard.Fleet = (*Fleet)(nil)
)

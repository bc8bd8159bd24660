package guard

import (
	"context"
	"errors"
	"time"

	"github.com/canaryd/canaryd/guard/integrity"
	"github.com/canaryd/canaryd/guard/judge"
	"github.com/canaryd/canaryd/proxy"
)

// Errors returned by the controls; admin maps them to status codes.
var (
	// ErrInvalid: the request is malformed (400).
	ErrInvalid = errors.New("invalid request")
	// ErrConflict: the request is well formed but not possible in the
	// current state, e.g. promote while rolled back (409).
	ErrConflict = errors.New("not possible in the current state")
	// ErrNotPersisted: the change was applied (the splitter already
	// follows it) but the rollout state could not be saved; the guard
	// retries the save until it succeeds. Until then a restart would resume
	// the last saved state. Controls return it with the new Overview (503).
	ErrNotPersisted = errors.New("the rollout state is not saved")
	// ErrStoreUnavailable: a replica of a fleet has not read the fleet's
	// rollout yet (the store was unreachable since it started), so it
	// cannot compute a change; nothing changed (503, try again).
	ErrStoreUnavailable = errors.New("the fleet's rollout is not known yet")
)

// Errors of New that name a configuration value; cmd maps them to the
// variable (exit status 2).
var (
	// ErrStateFile means the state file's location cannot be used (its
	// folder is missing or not writable, or the path is a folder). The
	// error's message names the path.
	ErrStateFile = errors.New("state file is not usable")
	// ErrRelease means Config.Release is not a valid release id
	// (ValidateRelease).
	ErrRelease = errors.New("invalid release id")
)

// Step is one stage of the plan: a weight (hundredths of a percent) held for
// an observation time.
type Step struct {
	Weight  uint32
	Observe time.Duration
}

// Source is where the guard reads measurements from (a *proxy.Proxy).
type Source interface {
	Snapshot() proxy.Snapshot
	// CanaryErrors wakes the guard soon after a canary request fails.
	CanaryErrors() <-chan struct{}
	// Health returns both backends' active health-check figures.
	Health() (stable, canary proxy.HealthStats)
}

// Router is what the guard steers (a *split.Splitter).
type Router interface {
	// SetWeight sets the canary weight in hundredths of a percent.
	SetWeight(w uint32)
	// SetRolledBack blocks (true) or unblocks the canary entirely.
	SetRolledBack(on bool)
}

// Config configures a Guard. Zero values mean the documented defaults; a
// value that is set must pass its field's Validate… function
// (ValidateEvalInterval, …, and the judge's for SLO), which Validate
// applies.
type Config struct {
	// Release (CANARY_RELEASE) is started at boot if the rollout has never
	// seen it; a release it has seen (the current one or an earlier one)
	// changes nothing, and "" keeps the stored release.
	Release string
	// Weight is the fixed weight (hundredths of a percent) used without
	// Steps. Weight and Steps are the configured plan: the plan of a fresh
	// rollout, of CANARY_RELEASE and of a Start without steps.
	Weight uint32
	// Steps is the staged plan; empty means a fixed Weight.
	Steps []Step
	// SLO is what the canary is judged against; Window is the sliding window.
	SLO    judge.SLO
	Window time.Duration
	// Judge is "sequential" (default) or "window".
	Judge string
	// EvalInterval is how often the guard judges. Zero means 1s.
	EvalInterval time.Duration
	// Store keeps the rollout record. Nil means a FileStore at StateFile.
	Store Store
	// StateFile is where the rollout state is persisted when Store is nil
	// (then it is required).
	StateFile string
	// IntegrityManifest enables release-file checks every IntegrityInterval
	// (zero means 5m); IntegrityRoot defaults to the manifest's folder.
	IntegrityManifest string
	IntegrityRoot     string
	IntegrityInterval time.Duration
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
	// JudgeImpl, if non-nil, is the judge used (tests); nil means one built
	// from Judge and SLO (judge.NewSequential or judge.NewWindow).
	JudgeImpl judge.Judge
	// VerifyIntegrity, if non-nil, replaces the release-file check (tests);
	// nil means integrity.Verifier{Manifest, Root}.Verify. It is only called
	// when IntegrityManifest is set.
	VerifyIntegrity func(context.Context) integrity.Report
	// Fleet, if non-nil, is the fleet this guard is a replica of, sharing
	// the rollout kept in Store (see the package doc, "A fleet"). Nil means
	// a single canaryd.
	Fleet Fleet
	// ReplicaID names this canaryd in views and metrics when Fleet is nil
	// (a fleet names its replicas itself). Empty means the host name.
	ReplicaID string
	// NewJudge, if non-nil, builds the judges of a replica of a fleet
	// (tests): fleet says whether the judge is the fleet's (the replicas'
	// summed evidence, at the leader's share of slo) or the replica's own
	// (at its share). Nil means judges built from Judge.
	NewJudge func(fleet bool, slo judge.SLO) judge.Judge

	// Notifier, if non-nil, hears of every transition this guard stores
	// (CANARY_WEBHOOK_URL). Nil means none is announced.
	Notifier Notifier
	// Confirmer, if non-nil, must accept every advance the plan makes by
	// itself before it happens (CANARY_CONFIRM_URL); the guard that runs
	// the plan asks it at most once per EvalInterval while the step waits.
	// Nil means the plan advances on its own.
	Confirmer Confirmer
	// ProgressDeadline, if positive, is how long a step may run without
	// advancing (CANARY_PROGRESS_DEADLINE); DeadlineAction says what then
	// happens (the zero value: the step is stalled). Zero means no
	// deadline.
	ProgressDeadline time.Duration
	DeadlineAction   DeadlineAction
	// MetricGates, if non-nil, are checked every MetricGateInterval (zero
	// means 30s): a gate outside its bound holds the plan, and for its
	// "for" rolls the canary back (rollback_metric); a gate that cannot be
	// checked holds the plan. Nil means none.
	MetricGates        MetricGates
	MetricGateInterval time.Duration
}

// Check is the body of GET /canary_check.
type Check struct {
	CanaryOK       bool           `json:"canary_ok"`
	Recommendation Recommendation `json:"recommendation"`
	Reasons        []string       `json:"reasons"`
	Weight         float64        `json:"weight"`
	State          string         `json:"state"`
	Release        string         `json:"release"`
	Judge          string         `json:"judge"`
	Window         string         `json:"window"`
	SLO            SLOView        `json:"slo"`
	Stable         BackendView    `json:"stable"`
	Canary         BackendView    `json:"canary"`
	Integrity      IntegrityView  `json:"integrity"`
	Gates          []judge.Gate   `json:"gates"`
	Step           *StepView      `json:"step,omitempty"`
	CheckedAt      time.Time      `json:"checked_at"`
	// Mirror are the mirrored copies of stable's requests (shadow traffic)
	// alone, this replica's; they are also in Canary, the judge's evidence.
	Mirror MirrorView `json:"mirror"`
	// Fleet is who judges and where the rollout is kept; in a fleet the
	// figures and gates above are the fleet's, summed over its replicas.
	Fleet FleetView `json:"fleet"`
	// Version is canaryd's version; the guard leaves it empty for admin to
	// fill in.
	Version string `json:"version"`
}

// SLOView shows the SLO in /canary_check.
type SLOView struct {
	ErrorRate   float64 `json:"error_rate"`
	P95Ms       float64 `json:"p95_ms"`
	MinRequests uint64  `json:"min_requests"`
	Window      string  `json:"window"`
	Alpha       float64 `json:"alpha,omitempty"`
}

// BackendView is one backend's figures over the window.
type BackendView struct {
	Requests  uint64  `json:"requests"`
	Errors    uint64  `json:"errors"`
	ErrorRate float64 `json:"error_rate"`
	P50Ms     float64 `json:"p50_ms"`
	P95Ms     float64 `json:"p95_ms"`
	P99Ms     float64 `json:"p99_ms"`
}

// MirrorView shows the mirrored copies (shadow traffic) in /canary_check:
// their figures over the window, as a BackendView, and what was not
// copied since start. All zero while mirroring is off (Percent 0).
type MirrorView struct {
	// Percent is the configured share of stable's requests copied.
	Percent float64 `json:"percent"`
	BackendView
	// Dropped counts copies not made because too many were in flight.
	Dropped uint64 `json:"dropped"`
	// Skipped counts requests not copied because of their body's size.
	Skipped uint64 `json:"skipped"`
	// InFlight is the number of copies queued or being sent.
	InFlight int64 `json:"in_flight"`
}

// IntegrityView is the integrity part of /canary_check.
type IntegrityView struct {
	Status   string `json:"status"`
	Verified bool   `json:"verified"`
	Summary  string `json:"summary"`
}

// StepView is one step of the plan as shown to operators.
type StepView struct {
	Index   int     `json:"index"`
	Weight  float64 `json:"weight"`
	Observe string  `json:"observe"`
	// Status is "done", "current" or "pending".
	Status string `json:"status"`
	// StartedAt and Remaining are set on the current step.
	StartedAt time.Time `json:"started_at,omitzero"`
	Remaining string    `json:"remaining,omitempty"`
}

// Transition is one entry of the history.
type Transition struct {
	At        time.Time `json:"time"`
	From      float64   `json:"from"`
	To        float64   `json:"to"`
	FromState string    `json:"from_state"`
	ToState   string    `json:"to_state"`
	Reason    string    `json:"reason"`
	// Who is "plan", "guard", "startup" or the admin caller: the token's name
	// and the address it came from ("ops-alice (10.0.0.5)").
	Who string `json:"who"`
	// Release is the release the transition belongs to (the new one for a
	// start); empty in entries written before releases were recorded.
	Release string `json:"release"`
	// Replica is the fleet replica that made the transition; empty for a
	// single canaryd.
	Replica string `json:"replica,omitempty"`
}

// Overview is the body of GET /dashboard/canary_overview and of every
// /rollout/… answer.
type Overview struct {
	RollbackRequired bool           `json:"rollback_required"`
	RollbackReason   Recommendation `json:"rollback_reason"`
	Weight           float64        `json:"weight"`
	State            string         `json:"state"`
	Recommendation   Recommendation `json:"recommendation"`
	Release          string         `json:"release"`
	Step             int            `json:"step"`
	Plan             []StepView     `json:"plan"`
	History          []Transition   `json:"history"`
	// Rollback, when rolled back, holds the figures behind the decision.
	Rollback *RollbackRecord `json:"rollback,omitempty"`
	// Persisted is false while the state shown is applied but not yet
	// saved (see ErrNotPersisted): a restart now would resume an older
	// state.
	Persisted bool `json:"persisted"`
}

// RollbackRecord is why and on what evidence the canary was rolled back.
type RollbackRecord struct {
	At     time.Time      `json:"time"`
	Reason Recommendation `json:"reason"`
	Who    string         `json:"who"`
	// Replica is the fleet replica that decided it ("" for a single
	// canaryd); Canary and Gates are the evidence it decided on (its own
	// for a replica's judge, the fleet's for the leader's).
	Replica string       `json:"replica,omitempty"`
	Canary  BackendView  `json:"canary"`
	Gates   []judge.Gate `json:"gates"`
	// Detail says what broke when the reason alone does not (the metric
	// gate and its value, the step that missed the progress deadline);
	// empty otherwise.
	Detail string `json:"detail,omitempty"`
}

// HealthSummary is the body of GET /dashboard/health_summary.
type HealthSummary struct {
	// OverallHealth is "healthy", "degraded" or "unhealthy".
	OverallHealth  string         `json:"overall_health"`
	Reasons        []string       `json:"reasons"`
	State          string         `json:"state"`
	Recommendation Recommendation `json:"recommendation"`
	Stable         BackendHealth  `json:"stable"`
	Canary         BackendHealth  `json:"canary"`
	Integrity      IntegrityView  `json:"integrity"`
	// StateFileProblem is set when the stored state could not be read at
	// start (it was kept aside and the rollout started at weight 0, held).
	StateFileProblem string `json:"state_file_problem,omitempty"`
	// StateStore says where the rollout state is kept and whether the
	// state in force is saved there.
	StateStore StoreView `json:"state_store"`
}

// StoreView is the state store's condition in the health summary.
type StoreView struct {
	// Kind is the store: "file" (CANARY_STATE_FILE) or "etcd".
	Kind string `json:"kind"`
	// Up is false while the store does not answer (a fleet's etcd is
	// unreachable, or the last save failed); Problem says why.
	Up      bool   `json:"up"`
	Problem string `json:"problem,omitempty"`
	// Persisted is false while the state in force is not saved.
	Persisted bool `json:"persisted"`
	// Error is the last failed save's error, UnsavedSince when the first
	// unsaved change was made and FailedSaves how many saves failed in a
	// row; all empty while Persisted.
	Error        string    `json:"error,omitempty"`
	UnsavedSince time.Time `json:"unsaved_since,omitzero"`
	FailedSaves  uint64    `json:"failed_saves,omitempty"`
}

// BackendHealth is one backend's traffic and health-check figures.
type BackendHealth struct {
	BackendView
	Checks HealthChecks `json:"health_checks"`
	// Endpoints are the backend's pool: one per URL, or per address a URL's
	// host name resolves to (never null; one entry for a single URL).
	Endpoints []EndpointView `json:"endpoints"`
}

// EndpointView is one endpoint of a backend's pool in the health summary.
type EndpointView struct {
	// URL is the configured URL it comes from (credentials removed);
	// Address the host:port canaryd connects to.
	URL     string `json:"url"`
	Address string `json:"address"`
	// Healthy is false while it fails its active health checks (true
	// without checks).
	Healthy bool `json:"healthy"`
	// EjectedUntil is when its ejection from the pool ends; null when it is
	// not ejected.
	EjectedUntil *time.Time `json:"ejected_until"`
	// InFlight is the number of requests it serves now; Requests and
	// Errors count its attempts over the window.
	InFlight int64  `json:"in_flight"`
	Requests uint64 `json:"requests"`
	Errors   uint64 `json:"errors"`
}

// HealthChecks summarises one backend's active health checks over the window.
type HealthChecks struct {
	Enabled     bool    `json:"enabled"`
	Healthy     bool    `json:"healthy"`
	Checks      uint64  `json:"checks"`
	Failures    uint64  `json:"failures"`
	FailureRate float64 `json:"failure_rate"`
	LastError   string  `json:"last_error,omitempty"`
}

// FleetView is the "fleet" object of /canary_check and the body of
// GET /dashboard/fleet: who judges and where the rollout is kept. A single
// canaryd is a fleet of one, its own leader, with the "file" store.
type FleetView struct {
	// Self is this replica's id (CANARY_REPLICA_ID); Leader the id of the
	// replica that judges the fleet's evidence and runs the plan ("" while
	// none is known).
	Self   string `json:"self"`
	Leader string `json:"leader"`
	// Store is "etcd" or "file"; StoreOK is false while it does not answer.
	Store   string `json:"store"`
	StoreOK bool   `json:"store_ok"`
	// Replicas are the live replicas, this one included, by id.
	Replicas []ReplicaView `json:"replicas"`
}

// ReplicaView is one replica of a fleet as its evidence shows it.
type ReplicaView struct {
	ID     string `json:"id"`
	Leader bool   `json:"leader"`
	// LastReportMs is how long ago (milliseconds) its last evidence
	// arrived: about a second at most while it runs.
	LastReportMs int64 `json:"last_report_ms"`
	// Requests and CanaryRequests are what it served over the window:
	// all requests, and those sent to the canary.
	Requests       uint64 `json:"requests"`
	CanaryRequests uint64 `json:"canary_requests"`
}

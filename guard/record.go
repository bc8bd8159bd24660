package guard

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/canaryd/canaryd/split"
)

// Record is the rollout as stored: everything a guard needs to steer the
// splitter and to continue the plan after a restart, or, in a fleet, on
// another replica. Next computes one record from another; a Store keeps it.
// The zero value is no rollout at all (never stored: Load returns
// ErrNoRecord instead).
type Record struct {
	// Release is the release being rolled out ("" when none was named).
	Release string
	// State, Step and Weight are where the rollout stands. Step indexes
	// Plan.Steps (0 without steps); Weight is in hundredths of a percent.
	State  State
	Step   int
	Weight uint32
	// Plan is this release's plan.
	Plan Plan
	// StepStartedAt is when the current step (or state) began.
	StepStartedAt time.Time
	// EvidenceSince is when the judges' current evidence began: every
	// transition that restarts the judges sets it (strictly later than
	// before), and a guard restarts its judges whenever the record in force
	// carries another value (its own transition, or one another writer
	// stored). In a fleet each replica tags the counts it publishes with
	// it, so that evidence of an earlier step is never summed. Zero in a
	// record written before it existed.
	EvidenceSince time.Time
	// Observation is what the current step has earned towards its observe
	// time.
	Observation Observation
	// Awaiting, set only while progressing, says that the step has earned
	// its observation and the plan waits for the confirmation endpoint
	// before it advances (Rules.Confirm); nil otherwise. Every transition
	// clears it.
	Awaiting *Awaiting
	// StalledAt, set only while progressing, is when the current step
	// passed the progress deadline without advancing (Rules.Deadline with
	// DeadlineStall); zero otherwise. A new step, state or weight clears it.
	StalledAt time.Time
	// Rollback, set exactly in StateRolledBack, is why and on what evidence.
	Rollback *RollbackRecord
	// History is the bounded list of transitions, oldest first.
	History []Transition
	// Releases are the releases this rollout has seen, oldest first (the
	// last releasesLimit). CANARY_RELEASE starts a release only if it is not
	// among them, so a replica restarting with a stale value never drags
	// the rollout back.
	Releases []string
	// Problem says why the rollout is held (StateHeld), for operators.
	Problem string
	// SavedAt is when the record was handed to the store; the observation
	// earned up to then survives a crash.
	SavedAt time.Time
	// Writer identifies the save that wrote the record (guard instance and
	// sequence), so that a guard recognises its own write after an
	// ambiguous failure.
	Writer string
}

// Plan is how a release rolls out: its Steps, or without steps the fixed
// Weight. The zero value is a fixed weight of 0.
type Plan struct {
	// Steps is the staged plan (see ParseSteps); empty means a fixed weight.
	Steps []Step
	// Weight is the fixed weight (hundredths of a percent) without Steps.
	Weight uint32
	// Custom marks a plan given to Start: it stays the release's plan
	// across restarts. A plan from the configuration (Custom false) is
	// replaced by the configured one at every start of the process.
	Custom bool
}

// equal reports whether two plans route the same way (Custom aside).
func (p Plan) equal(q Plan) bool {
	if len(p.Steps) > 0 || len(q.Steps) > 0 {
		return slices.Equal(p.Steps, q.Steps)
	}
	return p.Weight == q.Weight
}

// String renders the plan as CANARY_STEPS would write it, or the fixed
// weight, e.g. "5@15m0s,25@30m0s" or "fixed 10%".
func (p Plan) String() string {
	if len(p.Steps) > 0 {
		return FormatSteps(p.Steps)
	}
	return "fixed " + split.FormatPercent(p.Weight) + "%"
}

// first is where the plan starts: step 0, or the fixed weight.
func (p Plan) first() (State, uint32) {
	if len(p.Steps) > 0 {
		return StateProgressing, p.Steps[0].Weight
	}
	return StateFixed, p.Weight
}

// Observation is how long the current step has been observed healthy: Banked
// earned before Since, plus the time since Since while the run of proceed
// verdicts lasts. The zero value is nothing earned.
type Observation struct {
	Banked time.Duration
	// Since is when the current run of proceed verdicts began; zero when
	// there is none.
	Since time.Time
	// Restored marks Banked as earned before a restart: while the judge
	// gathers evidence again (holds), it is kept but does not grow.
	Restored bool
}

// Earned is the observation earned as of now.
func (o Observation) Earned(now time.Time) time.Duration {
	d := o.Banked
	if !o.Since.IsZero() && now.After(o.Since) {
		d += now.Sub(o.Since)
	}
	return d
}

// seen reports whether release is among the releases r has seen.
func (r Record) seen(release string) bool {
	return release == r.Release || slices.Contains(r.Releases, release)
}

// Bounds of a record.
const (
	// historyLimit bounds the history kept.
	historyLimit = 200
	// releasesLimit bounds the releases remembered as seen.
	releasesLimit = 100
	// maxReleaseLen bounds a release id.
	maxReleaseLen = 128
)

// ValidateRelease checks a release id: 1 to 128 bytes of UTF-8 without
// control characters. The same rule holds for CANARY_RELEASE and for
// POST /rollout/start.
func ValidateRelease(id string) error {
	switch {
	case id == "":
		return errors.New("release id is empty")
	case len(id) > maxReleaseLen:
		return fmt.Errorf("release id is %d bytes long; at most %d", len(id), maxReleaseLen)
	}
	if !utf8.ValidString(id) {
		return errors.New("release id is not valid UTF-8")
	}
	for _, r := range id {
		if unicode.IsControl(r) {
			return fmt.Errorf("release id contains the control character %U", r)
		}
	}
	return nil
}

// Revision identifies one stored version of the record. Revisions only grow;
// 0 means nothing is stored. (An etcd store uses the key's mod revision.)
type Revision int64

// Errors of a Store.
var (
	// ErrNoRecord: nothing is stored yet.
	ErrNoRecord = errors.New("no rollout record is stored")
	// ErrRevisionConflict: the stored record is no longer the revision the
	// change was computed from; nothing was written. Load the newer record
	// and compute the change again.
	ErrRevisionConflict = errors.New("the stored rollout record changed meanwhile")
	// ErrCorruptRecord: something is stored but cannot be read as a record.
	ErrCorruptRecord = errors.New("the stored rollout record is unreadable")
)

// Store keeps the rollout record for a guard: one FileStore for a single
// canaryd, or a shared store (etcd) for a fleet of replicas. Every change is
// a compare-and-swap on the revision it was computed from, so two writers
// never lose an update; a writer that loses recomputes its change from the
// newer record (and a rollback is never undone that way: see Rebase).
// Methods are safe for concurrent use; a ctx bounds the I/O.
type Store interface {
	// Load returns the stored record and its revision. With nothing stored
	// it returns ErrNoRecord (revision 0). A stored value that cannot be
	// read is ErrCorruptRecord, with the revision it has (0 if it has none);
	// any other error means the store could not be read at all.
	Load(ctx context.Context) (Record, Revision, error)
	// Save stores rec if the stored revision is still prev (0: nothing is
	// stored) and returns the new revision. If it is not, Save writes
	// nothing and returns ErrRevisionConflict (or ErrCorruptRecord when the
	// stored value cannot be read). Any other error leaves it unknown
	// whether rec was written: the caller retries, and recognises its own
	// write by rec.Writer if a retry conflicts.
	Save(ctx context.Context, rec Record, prev Revision) (Revision, error)
	// Quarantine moves an unreadable stored value aside (so that operators
	// can look at it) and deletes it, so that a Save with prev 0 succeeds.
	// It returns where the value was kept.
	Quarantine(ctx context.Context) (string, error)
	// Watch returns a channel that receives a value, coalesced, whenever
	// the stored record may have changed, by this or any other writer,
	// soon after (a second at most). It is closed when ctx ends. The
	// receiver calls Load and compares revisions.
	Watch(ctx context.Context) <-chan struct{}
	// Kind names the implementation for operators: "file" or "etcd".
	Kind() string
}

// recordVersion is the version of the record's stored encoding.
// Version 1 (state files before stores and releases) is still read.
const recordVersion = 2

// recordJSON is the stored encoding of a Record (EncodeRecord).
type recordJSON struct {
	Version       int             `json:"version"`
	Revision      Revision        `json:"revision,omitempty"`
	Release       string          `json:"release"`
	State         State           `json:"state"`
	Step          int             `json:"step"`
	Weight        uint32          `json:"weight_hundredths"`
	Plan          string          `json:"plan"`
	FixedWeight   *uint32         `json:"fixed_weight_hundredths,omitempty"`
	CustomPlan    bool            `json:"custom_plan,omitempty"`
	StepStartedAt time.Time       `json:"step_started_at,omitzero"`
	EvidenceSince time.Time       `json:"evidence_since,omitzero"`
	ObservedNs    int64           `json:"observed_ns"`
	HealthySince  time.Time       `json:"healthy_since,omitzero"`
	Restored      bool            `json:"restored,omitempty"`
	Awaiting      *Awaiting       `json:"awaiting,omitempty"`
	StalledAt     time.Time       `json:"stalled_at,omitzero"`
	Rollback      *RollbackRecord `json:"rollback,omitempty"`
	History       []Transition    `json:"history"`
	Releases      []string        `json:"releases,omitempty"`
	Problem       string          `json:"problem,omitempty"`
	SavedAt       time.Time       `json:"saved_at"`
	Writer        string          `json:"writer,omitempty"`
}

// EncodeRecord is the one stored form of a record (indented JSON with a
// version), for every Store; rev is written along (a file has no other place
// for it; other stores pass 0).
func EncodeRecord(r Record, rev Revision) ([]byte, error) {
	fixed := r.Plan.Weight
	rj := recordJSON{
		Version:       recordVersion,
		Revision:      rev,
		Release:       r.Release,
		State:         r.State,
		Step:          r.Step,
		Weight:        r.Weight,
		Plan:          FormatSteps(r.Plan.Steps),
		FixedWeight:   &fixed,
		CustomPlan:    r.Plan.Custom,
		StepStartedAt: r.StepStartedAt,
		EvidenceSince: r.EvidenceSince,
		ObservedNs:    int64(r.Observation.Banked),
		HealthySince:  r.Observation.Since,
		Restored:      r.Observation.Restored,
		Awaiting:      r.Awaiting,
		StalledAt:     r.StalledAt,
		Rollback:      r.Rollback,
		History:       r.History,
		Releases:      r.Releases,
		Problem:       r.Problem,
		SavedAt:       r.SavedAt,
		Writer:        r.Writer,
	}
	if rj.History == nil {
		rj.History = []Transition{}
	}
	data, err := json.MarshalIndent(rj, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode the rollout record: %w", err)
	}
	return append(data, '\n'), nil
}

// DecodeRecord reads what EncodeRecord wrote (or a version 1 state file) and
// checks it; the error of anything else wraps ErrCorruptRecord. It returns
// the revision written along (0 if none).
func DecodeRecord(data []byte) (Record, Revision, error) {
	var rj recordJSON
	if err := json.NewDecoder(bytes.NewReader(data)).Decode(&rj); err != nil {
		return Record{}, 0, fmt.Errorf("%w: not valid JSON: %w", ErrCorruptRecord, err)
	}
	if rj.Version != 1 && rj.Version != recordVersion {
		return Record{}, 0, fmt.Errorf("%w: unknown version %d", ErrCorruptRecord, rj.Version)
	}
	steps, err := ParseSteps(rj.Plan)
	if err != nil {
		return Record{}, 0, fmt.Errorf("%w: plan: %w", ErrCorruptRecord, err)
	}
	r := Record{
		Release:       rj.Release,
		State:         rj.State,
		Step:          rj.Step,
		Weight:        rj.Weight,
		Plan:          Plan{Steps: steps, Custom: rj.CustomPlan},
		StepStartedAt: rj.StepStartedAt,
		EvidenceSince: rj.EvidenceSince,
		Observation:   Observation{Banked: time.Duration(rj.ObservedNs), Since: rj.HealthySince, Restored: rj.Restored},
		Awaiting:      rj.Awaiting,
		StalledAt:     rj.StalledAt,
		Rollback:      rj.Rollback,
		History:       rj.History,
		Releases:      rj.Releases,
		Problem:       rj.Problem,
		SavedAt:       rj.SavedAt,
		Writer:        rj.Writer,
	}
	if rj.FixedWeight != nil {
		r.Plan.Weight = *rj.FixedWeight
	}
	if rj.Version == 1 {
		// Version 1 knew one release and saved the earned observation
		// whole, and had no revision.
		if r.Release != "" {
			r.Releases = []string{r.Release}
		}
		rj.Revision = 1
	}
	if err := r.check(); err != nil {
		return Record{}, 0, fmt.Errorf("%w: %w", ErrCorruptRecord, err)
	}
	return r, rj.Revision, nil
}

// check verifies the invariants Next keeps.
func (r Record) check() error {
	switch {
	case r.State > lastState:
		return fmt.Errorf("unknown state %d", r.State)
	case r.Weight > split.MaxWeight || r.Plan.Weight > split.MaxWeight:
		return fmt.Errorf("weight %d out of range", r.Weight)
	case r.Step < 0 || (len(r.Plan.Steps) > 0 && r.Step >= len(r.Plan.Steps)):
		return fmt.Errorf("step %d out of range", r.Step)
	case r.Observation.Banked < 0:
		return fmt.Errorf("observation %v out of range", r.Observation.Banked)
	case r.State == StateRolledBack && (r.Rollback == nil || !r.Rollback.Reason.IsRollback()):
		return errors.New("rolled back without a rollback reason")
	}
	return nil
}

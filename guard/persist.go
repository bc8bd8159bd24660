package guard

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// stateFileVersion is the version of the state file's format.
const stateFileVersion = 1

// stateFile is the persisted rollout state. Weight is in hundredths of a
// percent; ObservedNs is the observation the current step had earned when it
// was saved.
type stateFile struct {
	Version       int             `json:"version"`
	Release       string          `json:"release"`
	State         string          `json:"state"`
	Plan          string          `json:"plan"`
	Step          int             `json:"step"`
	StepStartedAt time.Time       `json:"step_started_at,omitzero"`
	ObservedNs    int64           `json:"observed_ns"`
	Weight        uint32          `json:"weight_hundredths"`
	Rollback      *RollbackRecord `json:"rollback,omitempty"`
	History       []Transition    `json:"history"`
	SavedAt       time.Time       `json:"saved_at"`
}

// checkWritable proves that the state file can be replaced atomically: the
// path is not a folder and its folder accepts a new file.
func checkWritable(path string) error {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return fmt.Errorf("%w: %s is a folder", ErrStateFile, path)
	}
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".probe-*")
	if err != nil {
		return fmt.Errorf("%w: cannot write next to %s: %w", ErrStateFile, path, err)
	}
	name := f.Name()
	f.Close()
	if err := os.Remove(name); err != nil {
		return fmt.Errorf("%w: cannot remove a file next to %s: %w", ErrStateFile, path, err)
	}
	return nil
}

// removeStaleTemps deletes temporary files a crash between create and rename
// left next to the state file.
func removeStaleTemps(path string) {
	matches, _ := filepath.Glob(filepath.Join(filepath.Dir(path), globEscape(filepath.Base(path))+".tmp-*"))
	for _, m := range matches {
		os.Remove(m)
	}
}

// globEscape quotes the pattern characters of a file name.
func globEscape(s string) string {
	var b strings.Builder
	for _, c := range s {
		if strings.ContainsRune(`*?[\`, c) {
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// writeFileAtomic replaces path with data so that a crash at any moment
// leaves either the old or the new file: a temporary file in the same folder
// is written and synced, renamed over path, and the folder synced.
func writeFileAtomic(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("create temporary file: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err = f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", tmp, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename over %s: %w", path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open folder %s: %w", dir, err)
	}
	defer d.Close()
	if err = d.Sync(); err != nil {
		return fmt.Errorf("sync folder %s: %w", dir, err)
	}
	return nil
}

// persistLocked writes the current state to the state file.
func (g *Guard) persistLocked() error {
	now := g.now()
	sf := stateFile{
		Version:       stateFileVersion,
		Release:       g.cfg.Release,
		State:         g.state.String(),
		Plan:          FormatSteps(g.cfg.Steps),
		Step:          g.step,
		StepStartedAt: g.stepStartedAt,
		ObservedNs:    int64(g.observedLocked(now)),
		Weight:        g.weight,
		Rollback:      g.rollback,
		History:       g.history,
		SavedAt:       now,
	}
	if g.state != StateProgressing {
		sf.ObservedNs = 0
	}
	data, err := json.MarshalIndent(sf, "", "  ")
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	err = writeFileAtomic(g.cfg.StateFile, append(data, '\n'))
	g.persistErr, g.persistedAt = err, now
	return err
}

// decodeStateFile parses and checks a state file.
func decodeStateFile(data []byte) (stateFile, State, error) {
	var sf stateFile
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&sf); err != nil {
		return sf, 0, fmt.Errorf("not valid JSON: %w", err)
	}
	if sf.Version != stateFileVersion {
		return sf, 0, fmt.Errorf("unknown version %d", sf.Version)
	}
	st, err := ParseState(sf.State)
	if err != nil {
		return sf, 0, err
	}
	if sf.Weight > fullWeight || sf.Step < 0 || sf.ObservedNs < 0 {
		return sf, 0, fmt.Errorf("weight %d, step %d or observation %d out of range", sf.Weight, sf.Step, sf.ObservedNs)
	}
	if st == StateRolledBack && (sf.Rollback == nil || !strings.HasPrefix(sf.Rollback.Reason, "rollback_")) {
		return sf, 0, errors.New("rolled back without a rollback reason")
	}
	return sf, st, nil
}

// restoreLocked sets the initial state from the state file (see the package
// doc) and applies it through one transition.
func (g *Guard) restoreLocked() {
	path := g.cfg.StateFile
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		g.startLocked("fresh start")
		return
	}
	var sf stateFile
	var st State
	if err == nil {
		sf, st, err = decodeStateFile(data)
	}
	if err != nil {
		g.quarantineLocked(err)
		return
	}
	if sf.Release != g.cfg.Release {
		g.history = sf.History
		g.state, g.weight, g.step = st, sf.Weight, 0
		g.startLocked(fmt.Sprintf("new release %q (was %q)", g.cfg.Release, sf.Release))
		return
	}
	g.resumeLocked(sf, st)
}

// startLocked starts the rollout from the beginning.
func (g *Guard) startLocked(reason string) {
	if len(g.cfg.Steps) > 0 {
		g.transition(StateProgressing, 0, g.cfg.Steps[0].Weight, reason, whoStartup)
		return
	}
	g.transition(StateFixed, 0, g.cfg.Weight, reason, whoStartup)
}

// quarantineLocked keeps an unreadable state file aside and holds the canary
// at weight 0 until an operator acts.
func (g *Guard) quarantineLocked(cause error) {
	path := g.cfg.StateFile
	aside := fmt.Sprintf("%s.corrupt-%d", path, g.now().Unix())
	kept := "kept aside as " + aside
	if err := os.Rename(path, aside); err != nil {
		kept = fmt.Sprintf("could not be kept aside (%v)", err)
	}
	g.stateFileProblem = fmt.Sprintf("state file %s could not be read (%v) and was %s; the canary is held at weight 0 until an operator resets, resumes or sets a weight", path, cause, kept)
	g.log.Error().Str("path", path).Str("kept_as", aside).AnErr("cause", cause).
		Msg("STATE FILE UNREADABLE: canary held at weight 0 until an operator acts")
	g.transition(StateHeld, 0, 0, "state file unreadable", whoStartup)
}

// resumeLocked continues the stored rollout of this release.
func (g *Guard) resumeLocked(sf stateFile, st State) {
	g.history, g.rollback = sf.History, sf.Rollback
	g.state, g.weight, g.step, g.stepStartedAt = st, sf.Weight, sf.Step, sf.StepStartedAt
	plan := FormatSteps(g.cfg.Steps)
	reason := "resumed after restart"
	if sf.Plan != plan {
		g.log.Warn().Str("stored_plan", sf.Plan).Str("plan", plan).Msg("the plan changed since the state was saved; keeping the state, clamping the step")
		reason += fmt.Sprintf("; plan changed from %q to %q", sf.Plan, plan)
	}
	n := len(g.cfg.Steps)
	step := min(sf.Step, max(n-1, 0))
	weight := sf.Weight
	switch st {
	case StateRolledBack, StateHeld:
		weight = 0
	case StateComplete:
		weight = fullWeight
	case StateProgressing:
		if n == 0 {
			st, step, weight = StateFixed, 0, g.cfg.Weight
			break
		}
		weight = g.cfg.Steps[step].Weight
		if sf.Plan == plan {
			g.credit, g.restored = time.Duration(sf.ObservedNs), true
		}
	case StateFixed:
		if n > 0 {
			st, step, weight = StateProgressing, 0, g.cfg.Steps[0].Weight
		} else {
			weight = g.cfg.Weight
		}
	}
	g.step = step // a clamped index is not a new step
	g.transition(st, step, weight, reason, whoStartup)
}

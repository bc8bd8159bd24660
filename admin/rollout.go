package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/canaryd/canaryd/guard"
	"github.com/canaryd/canaryd/split"
)

// errBody is a request body problem answered with 400.
type errBody struct{ msg string }

func (e errBody) Error() string { return e.msg }

// readObject reads body strictly as one flat JSON object: each field one of
// fields (at most once), each value a JSON string or number (numbers kept as
// text), nothing after the object. want describes the expected body for the
// error messages.
func readObject(body []byte, want string, fields ...string) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, errBody{want}
	}
	got := map[string]any{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, errBody{want}
		}
		key, _ := tok.(string)
		known := false
		for _, f := range fields {
			known = known || f == key
		}
		if !known {
			return nil, errBody{fmt.Sprintf("unknown field %.40q; %s", fmt.Sprint(tok), want)}
		}
		if _, dup := got[key]; dup {
			return nil, errBody{fmt.Sprintf("field %q appears twice", key)}
		}
		tok, err = dec.Token()
		if err != nil {
			return nil, errBody{want}
		}
		switch v := tok.(type) {
		case json.Number, string:
			got[key] = v
		default:
			return nil, errBody{fmt.Sprintf("field %q must be a JSON string or number; %s", key, want)}
		}
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return nil, errBody{want}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errBody{"unexpected data after the JSON object"}
	}
	return got, nil
}

// parseWeightBody reads {"weight": N}: N a JSON number in the percent
// grammar of split.ParsePercent (plain decimal, at most two decimals).
func parseWeightBody(body []byte) (uint32, error) {
	const want = `body must be a JSON object like {"weight": 25}`
	f, err := readObject(body, want, "weight")
	if err != nil {
		return 0, err
	}
	v, ok := f["weight"]
	if !ok {
		return 0, errBody{`missing field "weight"; ` + want}
	}
	n, ok := v.(json.Number)
	if !ok {
		return 0, errBody{"weight must be a JSON number (a percentage, e.g. 25 or 2.5)"}
	}
	w, err := split.ParsePercent(n.String())
	if err != nil {
		return 0, errBody{"weight " + err.Error()}
	}
	return w, nil
}

// parseStartBody reads {"release": "v1.0.1", "steps": "5@15m,25@30m"}: the
// release id required, the steps optional (CANARY_STEPS syntax; absent means
// the configured plan).
func parseStartBody(body []byte) (release string, steps []guard.Step, err error) {
	const want = `body must be a JSON object like {"release": "v1.0.1"} or {"release": "v1.0.1", "steps": "5@15m,25@30m,100@1h"}`
	f, err := readObject(body, want, "release", "steps")
	if err != nil {
		return "", nil, err
	}
	r, ok := f["release"].(string)
	if !ok {
		return "", nil, errBody{`field "release" must be a JSON string; ` + want}
	}
	if err := guard.ValidateRelease(r); err != nil {
		return "", nil, errBody{err.Error()}
	}
	if v, given := f["steps"]; given {
		s, ok := v.(string)
		if !ok {
			return "", nil, errBody{`field "steps" must be a JSON string in the CANARY_STEPS syntax, e.g. "5@15m,25@30m,100@1h"`}
		}
		if steps, err = guard.ParseSteps(s); err != nil {
			return "", nil, errBody{"steps: " + err.Error()}
		}
		if len(steps) == 0 {
			return "", nil, errBody{`field "steps" is empty; leave it out to use the configured plan`}
		}
	}
	return r, steps, nil
}

// isEmptyObject reports whether body is empty or the JSON object {}.
func isEmptyObject(body []byte) bool {
	const space = " \t\r\n"
	b := bytes.Trim(body, space)
	if len(b) == 0 {
		return true
	}
	return len(b) >= 2 && b[0] == '{' && b[len(b)-1] == '}' && len(bytes.Trim(b[1:len(b)-1], space)) == 0
}

// readBody reads at most MaxBodyBytes of r's body. It answers 413 or 400
// itself and returns ok false when the body cannot be read.
func readBody(w http.ResponseWriter, r *http.Request) (body []byte, ok bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		if _, tooLarge := errors.AsType[*http.MaxBytesError](err); tooLarge {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is larger than %d bytes", MaxBodyBytes))
			return nil, false
		}
		writeError(w, http.StatusBadRequest, "cannot read the request body")
		return nil, false
	}
	return body, true
}

// setWeight answers POST /rollout/weight {"weight": N}: it sets the canary
// weight by hand (the guard pauses the plan). N is a percentage with at most
// two decimals; anything else is a 400 and changes nothing.
func (s *Server) setWeight(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	weight, err := parseWeightBody(body)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ov, err := s.ctl.SetWeight(weight, whoOf(r))
	s.answerRollout(w, r, "weight", ov, err)
}

// start answers POST /rollout/start {"release": …, "steps": …}.
func (s *Server) start(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r)
	if !ok {
		return
	}
	release, steps, err := parseStartBody(body)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ov, err := s.ctl.Start(release, steps, whoOf(r))
	s.answerRollout(w, r, "start", ov, err)
}

// rolloutCommand answers POST /rollout/{name}: promote, rollback, pause,
// resume, reset and finish take an empty body or {} and answer the new
// overview.
func (s *Server) rolloutCommand(name string, act func(who string) (guard.Overview, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, ok := readBody(w, r)
		if !ok {
			return
		}
		if !isEmptyObject(body) {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("/rollout/%s takes an empty body or {}", name))
			return
		}
		ov, err := act(whoOf(r))
		s.answerRollout(w, r, name, ov, err)
	}
}

// notSaved is the answer to a command that is in force but not saved: the
// new overview (persisted false) with the error, so that a script that
// checks the status code sees a failure, and one that reads the body sees
// the state in force.
type notSaved struct {
	guard.Overview
	Error string `json:"error"`
}

// answerRollout maps a command's outcome to a response: guard.ErrInvalid is
// 400, guard.ErrConflict 409, guard.ErrNotPersisted 503 (with Retry-After
// and the overview), guard.ErrStoreUnavailable 503 (with Retry-After and
// the error), other errors 500, success 200 with ov.
func (s *Server) answerRollout(w http.ResponseWriter, r *http.Request, name string, ov guard.Overview, err error) {
	if errors.Is(err, guard.ErrNotPersisted) {
		s.log.Error().Err(err).Str("action", name).Str("token", tokenName(r)).Str("who", whoOf(r)).Float64("weight", ov.Weight).
			Str("state", ov.State).Msg("rollout command applied but not saved")
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(saveRetryHint.Seconds()))))
		writeJSON(w, http.StatusServiceUnavailable, notSaved{normalizeOverview(ov), err.Error()})
		return
	}
	if errors.Is(err, guard.ErrStoreUnavailable) {
		s.log.Warn().Err(err).Str("action", name).Str("who", r.RemoteAddr).Msg("rollout command refused: the fleet's rollout is not read yet")
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(saveRetryHint.Seconds()))))
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	if err != nil {
		status := http.StatusInternalServerError
		switch {
		case errors.Is(err, guard.ErrInvalid):
			status = http.StatusBadRequest
		case errors.Is(err, guard.ErrConflict):
			status = http.StatusConflict
		}
		ev := s.log.Warn()
		if status == http.StatusInternalServerError {
			ev = s.log.Error()
		}
		ev.Err(err).Str("action", name).Str("token", tokenName(r)).Str("who", whoOf(r)).Int("status", status).Msg("rollout command refused")
		writeError(w, status, err.Error())
		return
	}
	s.log.Info().Str("action", name).Str("token", tokenName(r)).Str("who", whoOf(r)).Float64("weight", ov.Weight).
		Str("state", ov.State).Msg("rollout command applied")
	writeJSON(w, http.StatusOK, normalizeOverview(ov))
}

// tokenName is the name of the token r authenticated with, for the logs.
func tokenName(r *http.Request) string {
	id, _ := identityOf(r)
	return id.name
}

// saveRetryHint is the Retry-After of a 503 for an unsaved change: about
// when the guard's next retry has happened.
const saveRetryHint = time.Second

package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	
	"github.com/canaryd/canaryd/guard"
	"github.com/canaryd/canaryd/split"
)

// errBody is a request body problem answered with 400.
type errBody struct{ msg string }

func (e errBody) Error() string { return e.msg }

// parseWeightBody reads {"weight": N} strictly: one object, the one field
// "weight" (once), a JSON number, nothing after the object.
func parseWeightBody(body []byte) (uint32, error) {
	const want = `body must be a JSON object like {"weight": 25}`
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return 0, errBody{want}
	}
	var weight json.Number
	seen := false
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return 0, errBody{want}
		}
		if key, _ := tok.(string); key != "weight" {
			return 0, errBody{fmt.Sprintf("unknown field %.40q; %s", fmt.Sprint(tok), want)}
		}
		if seen {
			return 0, errBody{`field "weight" appears twice`}
		}
		seen = true
		tok, err = dec.Token()
		if err != nil {
			return 0, errBody{want}
		}
		n, ok := tok.(json.Number)
		if !ok {
			return 0, errBody{"weight must be a JSON number (a percentage, e.g. 25 or 2.5)"}
		}
		weight = n
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return 0, errBody{want}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return 0, errBody{"unexpected data after the JSON object"}
	}
	if !seen {
		return 0, errBody{`missing field "weight"; ` + want}
	}
	w, err := split.ParsePercent(weight.String())
	if err != nil {
		return 0, errBody{"weight " + err.Error()}
	}
	return w, nil
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
	ov, err := s.ctl.SetWeight(weight, r.RemoteAddr)
	s.answerRollout(w, r, "weight", ov, err)
}

// rolloutCommand answers POST /rollout/{name}: promote, rollback, pause,
// resume and reset take an empty body or {} and answer the new overview.
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
		ov, err := act(r.RemoteAddr)
		s.answerRollout(w, r, name, ov, err)
	}
}

// answerRollout maps a command's outcome to a response: guard.ErrInvalid is
// 400, guard.ErrConflict 409, other errors 500, success 200 with ov.
func (s *Server) answerRollout(w http.ResponseWriter, r *http.Request, name string, ov guard.Overview, err error) {
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
		ev.Err(err).Str("action", name).Str("who", r.RemoteAddr).Int("status", status).Msg("rollout command refused")
		writeError(w, status, err.Error())
		return
	}
	s.log.Info().Str("action", name).Str("who", r.RemoteAddr).Float64("weight", ov.Weight).
		Str("state", ov.State).Msg("rollout command applied")
	writeJSON(w, http.StatusOK, normalizeOverview(ov))
}

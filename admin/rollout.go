package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/canaryd/canaryd/guard"
)

// Errors of ParsePercent.
var (
	// ErrPercentSyntax: the text is not a decimal number.
	ErrPercentSyntax = errors.New("not a decimal number")
	// ErrPercentRange: the number lies outside 0..100.
	ErrPercentRange = errors.New("must be between 0 and 100")
	// ErrPercentPrecision: the number has more than two decimals.
	ErrPercentPrecision = errors.New("must have at most 2 decimals")
)

// maxExponent bounds the exponents ParsePercent computes with; anything
// larger is out of range (or too precise) whatever the digits.
const maxExponent = 1_000_000

// ParsePercent converts a percentage written as a JSON number ("25",
// "2.5", "12.50", "2.5e1") exactly — without floating point — into hundredths
// of a percent (0..10000). Negative zero is zero; more than two significant
// decimals, values outside 0..100 and anything that is not a number are
// errors (ErrPercentPrecision, ErrPercentRange, ErrPercentSyntax).
func ParsePercent(s string) (uint32, error) {
	num := s
	neg := strings.HasPrefix(num, "-")
	if neg {
		num = num[1:]
	}
	mantissa, expText, hasExp := strings.Cut(num, "e")
	if !hasExp {
		mantissa, expText, hasExp = strings.Cut(num, "E")
	}
	intPart, frac, hasDot := strings.Cut(mantissa, ".")
	if !allDigits(intPart) || (hasDot && !allDigits(frac)) {
		return 0, fmt.Errorf("%q: %w", s, ErrPercentSyntax)
	}
	exp := 0
	if hasExp {
		negExp := false
		switch {
		case strings.HasPrefix(expText, "-"):
			negExp, expText = true, expText[1:]
		case strings.HasPrefix(expText, "+"):
			expText = expText[1:]
		}
		if !allDigits(expText) {
			return 0, fmt.Errorf("%q: %w", s, ErrPercentSyntax)
		}
		for i := 0; i < len(expText) && exp < maxExponent; i++ {
			exp = exp*10 + int(expText[i]-'0')
		}
		exp = min(exp, maxExponent)
		if negExp {
			exp = -exp
		}
	}
	// The value is digits × 10^-scale.
	digits := strings.TrimLeft(intPart+frac, "0")
	scale := len(frac) - exp
	if digits == "" {
		return 0, nil
	}
	if neg {
		return 0, fmt.Errorf("%q: %w", s, ErrPercentRange)
	}
	for strings.HasSuffix(digits, "0") {
		digits = digits[:len(digits)-1]
		scale--
	}
	shift := 2 - scale // hundredths = digits × 10^shift
	if shift < 0 {
		// Digits beyond the hundredths, but a huge number is better
		// described as out of range.
		if len(digits)-(scale-2) > 5 {
			return 0, fmt.Errorf("%q: %w", s, ErrPercentRange)
		}
		return 0, fmt.Errorf("%q: %w", s, ErrPercentPrecision)
	}
	if len(digits)+shift > 5 {
		return 0, fmt.Errorf("%q: %w", s, ErrPercentRange)
	}
	v, err := strconv.ParseUint(digits+strings.Repeat("0", shift), 10, 32)
	if err != nil || v > 10000 {
		return 0, fmt.Errorf("%q: %w", s, ErrPercentRange)
	}
	return uint32(v), nil
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

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
	w, err := ParsePercent(weight.String())
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

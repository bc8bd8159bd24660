package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// requestTimeout bounds one call of the command-line clients.
const requestTimeout = 10 * time.Second

// adminClient calls a running canaryd's admin API for canaryd check and
// canaryd rollout. It never prints the token.
type adminClient struct {
	base  string // CANARY_ADMIN_URL without a trailing slash
	token string
	http  *http.Client
}

// newAdminClient reads CANARY_ADMIN_URL and the token from the environment.
func newAdminClient(environ []string) (*adminClient, error) {
	var cc ClientConfig
	if err := parseEnv(&cc, environ); err != nil {
		return nil, err
	}
	token, err := loadToken(cc.Token, cc.TokenFile)
	if err != nil {
		return nil, err
	}
	base, err := url.Parse(cc.AdminURL)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" || base.RawQuery != "" || base.Fragment != "" {
		return nil, bad("CANARY_ADMIN_URL", "%q must be an http:// or https:// URL of canaryd's admin listener", cc.AdminURL)
	}
	return &adminClient{
		base:  strings.TrimSuffix(base.String(), "/"),
		token: token,
		http:  &http.Client{Timeout: requestTimeout},
	}, nil
}

// callError is a call that did not get a 200, with the exit status it means.
type callError struct {
	code int // exitConfig, exitFail or exitNoReply
	msg  string
}

func (e *callError) Error() string { return e.msg }

// call sends method path with body (nil: none) and returns the 200 answer's
// body. Anything else is a *callError: no answer or not canaryd's (exit 3),
// a refused token or request, or a token whose role does not allow the call
// (exit 2), a command impossible in the current state (exit 1).
func (a *adminClient) call(ctx context.Context, method, path string, body []byte) ([]byte, error) {
	endpoint := a.base + path
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, endpoint, rd)
	if err != nil {
		return nil, &callError{exitConfig, fmt.Sprintf("CANARY_ADMIN_URL: %v", err)}
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return nil, &callError{exitNoReply, fmt.Sprintf("no answer from %s: %v", endpoint, unwrapURLError(err))}
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, &callError{exitNoReply, fmt.Sprintf("%s: reading the answer: %v", endpoint, err)}
	}
	if resp.StatusCode == http.StatusOK {
		return answer, nil
	}
	var e struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal(answer, &e)
	if e.Error == "" {
		e.Error = "(no JSON error: is this canaryd's admin listener?)"
	}
	msg := fmt.Sprintf("%s %s answered %s: %s", method, endpoint, resp.Status, e.Error)
	switch resp.StatusCode {
	case http.StatusUnauthorized, http.StatusTooManyRequests:
		return nil, &callError{exitConfig, msg + " (check CANARY_TOKEN or CANARY_TOKEN_FILE)"}
	case http.StatusForbidden:
		// The token is valid but its role does not allow the call: a
		// configuration matter, like a wrong token, that no retry mends.
		return nil, &callError{exitConfig, msg + " (this needs an operate token in CANARY_TOKEN or CANARY_TOKEN_FILE)"}
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusMethodNotAllowed:
		return nil, &callError{exitConfig, msg}
	case http.StatusConflict:
		return nil, &callError{exitFail, msg}
	case http.StatusNotFound:
		return nil, &callError{exitNoReply, msg + " (this canaryd does not have the endpoint: is it older than this command?)"}
	}
	return nil, &callError{exitNoReply, msg}
}

// exitFor is the exit status an error of call means.
func exitFor(err error) int {
	if ce, ok := errors.AsType[*callError](err); ok {
		return ce.code
	}
	return exitNoReply
}

// unwrapURLError drops the *url.Error wrapper, which repeats the URL.
func unwrapURLError(err error) error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		return ue.Err
	}
	return err
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// checkConfig is what canaryd check reads from the environment.
type checkConfig struct {
	AdminURL  string `env:"CANARY_ADMIN_URL" envDefault:"http://127.0.0.1:8000"`
	Token     string `env:"CANARY_TOKEN"`
	TokenFile string `env:"CANARY_TOKEN_FILE"`
}

// checkAnswer is the part of /canary_check the one-line summary shows.
type checkAnswer struct {
	CanaryOK       *bool    `json:"canary_ok"`
	Recommendation string   `json:"recommendation"`
	Reasons        []string `json:"reasons"`
	Weight         float64  `json:"weight"`
	State          string   `json:"state"`
	Canary         struct {
		Requests  uint64  `json:"requests"`
		ErrorRate float64 `json:"error_rate"`
		P95Ms     float64 `json:"p95_ms"`
	} `json:"canary"`
}

// runCheck asks a running canaryd's /canary_check, prints one line and exits
// 0 only if canary_ok. It never prints the token.
func runCheck(ctx context.Context, environ []string, stdout, stderr io.Writer) int {
	var c checkConfig
	if err := parseEnv(&c, environ); err != nil {
		return configExit(stderr, err)
	}
	token, err := loadToken(c.Token, c.TokenFile)
	if err != nil {
		return configExit(stderr, err)
	}
	base, err := url.Parse(c.AdminURL)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return configExit(stderr, bad("CANARY_ADMIN_URL", "%q must be an http:// or https:// URL", c.AdminURL))
	}
	endpoint := strings.TrimSuffix(base.String(), "/") + "/canary_check"

	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, endpoint, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "canaryd check: no answer from %s: %v\n", endpoint, unwrapURLError(err))
		return exitNoReply
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(body, &e)
		fmt.Fprintf(stderr, "canaryd check: %s answered %s: %s\n", endpoint, resp.Status, e.Error)
		if resp.StatusCode == http.StatusUnauthorized {
			return exitConfig // the token in CANARY_TOKEN / CANARY_TOKEN_FILE is wrong
		}
		return exitNoReply
	}
	var a checkAnswer
	if err := json.Unmarshal(body, &a); err != nil || a.CanaryOK == nil {
		fmt.Fprintf(stderr, "canaryd check: %s did not answer with a canary check\n", endpoint)
		return exitNoReply
	}
	fmt.Fprintf(stdout, "%s weight=%g%% state=%s canary_requests=%d canary_error_rate=%.2f%% canary_p95=%.1fms canary_ok=%t",
		a.Recommendation, a.Weight, a.State, a.Canary.Requests, a.Canary.ErrorRate*100, a.Canary.P95Ms, *a.CanaryOK)
	if !*a.CanaryOK && len(a.Reasons) > 0 {
		fmt.Fprintf(stdout, " reason=%q", a.Reasons[0])
	}
	fmt.Fprintln(stdout)
	if !*a.CanaryOK {
		return exitFail
	}
	return exitOK
}

// unwrapURLError drops the *url.Error wrapper, which repeats the URL.
func unwrapURLError(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}

package main

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// testdata is the repository's fixture folder.
var testdata = filepath.Join("..", "..", "testdata")

func TestE2EVerifyCommand(t *testing.T) {
	root := filepath.Join(testdata, "release")
	for _, tc := range []struct {
		manifest string
		code     int
		want     []string
	}{
		{"release.sha256", 0, []string{"3/3 files verified"}},
		{"release-tampered.sha256", 1, []string{"FAILED index.html: checksum mismatch", "2/3 files verified"}},
		{"escape.sha256", 1, []string{"FAILED ../release.sha256: path escapes the root"}},
	} {
		cmd := exec.Command(binary, "verify", filepath.Join(testdata, tc.manifest), root)
		cmd.Env = []string{} // not the test's: canaryd refuses unknown CANARY_* variables
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		cmd.Run()
		if code := cmd.ProcessState.ExitCode(); code != tc.code {
			t.Errorf("verify %s: exit %d; want %d\n%s", tc.manifest, code, tc.code, out.String())
		}
		for _, w := range tc.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("verify %s: output %q lacks %q", tc.manifest, out.String(), w)
			}
		}
	}
	// The manifest from the environment, rooted at its own folder by default.
	cmd := exec.Command(binary, "verify")
	cmd.Env = []string{"CANARY_INTEGRITY_MANIFEST=" + filepath.Join(testdata, "release.sha256"), "CANARY_INTEGRITY_ROOT=" + root}
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "3/3 files verified") {
		t.Errorf("verify from the environment: %v %q", err, out)
	}
}

// A release whose files do not match its manifest starts rolled back with
// rollback_integrity and gets no traffic; a good one serves VERIFIED.
func TestE2EIntegrityRollsBack(t *testing.T) {
	root := filepath.Join(testdata, "release")
	for _, tc := range []struct {
		manifest, status, recommendation string
		verified                         bool
	}{
		{"release.sha256", "VERIFIED", "", true},
		{"release-tampered.sha256", "FAILED", "rollback_integrity", false},
	} {
		t.Run(tc.manifest, func(t *testing.T) {
			stable, canary := newBackend(t, "stable", nil), newBackend(t, "canary", nil)
			in := start(t, testEnv(t, stable, canary, "CANARY_WEIGHT=50",
				"CANARY_INTEGRITY_MANIFEST="+filepath.Join(testdata, tc.manifest), "CANARY_INTEGRITY_ROOT="+root))
			_, body := in.adminGet("/dashboard/integrity_details", testToken)
			var rep struct {
				Verified bool   `json:"integrity_verified"`
				Status   string `json:"status"`
				Failures []struct {
					Path, Problem string
				} `json:"failures"`
			}
			if err := json.Unmarshal(body, &rep); err != nil {
				t.Fatal(err)
			}
			if rep.Verified != tc.verified || rep.Status != tc.status {
				t.Errorf("integrity_details = %s; want verified %v, status %s", body, tc.verified, tc.status)
			}
			c := in.check()
			if tc.recommendation != "" {
				if c.Recommendation != tc.recommendation || c.Weight != 0 || c.CanaryOK {
					t.Errorf("check = %+v; want %s at weight 0", c, tc.recommendation)
				}
				if len(rep.Failures) != 1 || rep.Failures[0].Path != "index.html" {
					t.Errorf("failures = %+v; want index.html", rep.Failures)
				}
				in.send(100)
				if canary.hits.Load() != 0 {
					t.Errorf("a release failing its integrity check got %d requests", canary.hits.Load())
				}
			} else if c.Weight != 50 || !c.CanaryOK {
				t.Errorf("check = %+v; want weight 50 and canary_ok", c)
			}
		})
	}
}

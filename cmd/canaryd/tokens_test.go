package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/canaryd/canaryd/admin"
)

// Secrets of the token configuration tests; none may reach an error.
const (
	aliceSecret = "alice-0123456789-secret"
	ciSecret    = "ci-0123456789abc-secret"
	envSecret   = "0123456789abcdef0123" // baseEnv's CANARY_TOKEN
)

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	f := filepath.Join(dir, name)
	if err := os.WriteFile(f, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// Where the tokens come from: CANARY_TOKEN or CANARY_TOKEN_FILE (the operate
// token "default"), CANARY_TOKENS_FILE, or both together.
func TestTokensConfig(t *testing.T) {
	dir := t.TempDir()
	good := writeFile(t, dir, "tokens", "# team\nops-alice operate "+aliceSecret+"\nci read "+ciSecret+"\n")
	single := writeFile(t, dir, "token", envSecret+"\n")
	named := "[ops-alice operate ci read]"
	for _, tt := range []struct {
		name string
		env  []string
		want string // names and roles in order
	}{
		{"CANARY_TOKEN alone", nil, "[default operate]"},
		{"CANARY_TOKENS_FILE alone", []string{"CANARY_TOKEN", "CANARY_TOKENS_FILE=" + good}, named},
		{"both", []string{"CANARY_TOKENS_FILE=" + good}, "[default operate " + named[1:]},
		{"CANARY_TOKEN_FILE and CANARY_TOKENS_FILE", []string{"CANARY_TOKEN", "CANARY_TOKEN_FILE=" + single, "CANARY_TOKENS_FILE=" + good}, "[default operate " + named[1:]},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := loadConfig(with(baseEnv(t), tt.env...))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, tok := range c.tokens {
				got = append(got, tok.Name, tok.Role.String())
			}
			if fmt.Sprint(got) != tt.want {
				t.Errorf("tokens = %v; want %s", got, tt.want)
			}
		})
	}
}

// A bad tokens file stops canaryd with exit 2 and one line naming
// CANARY_TOKENS_FILE and the line, never a token.
func TestTokensFileErrors(t *testing.T) {
	dir := t.TempDir()
	file := func(content string) string { return writeFile(t, t.TempDir(), "tokens", content) }
	for _, tt := range []struct {
		name string
		env  []string
		want string
	}{
		{"bad role", []string{"CANARY_TOKEN", "CANARY_TOKENS_FILE=" + file("ops-alice operate "+aliceSecret+"\nci admin "+ciSecret+"\n")},
			"CANARY_TOKENS_FILE: %s: line 2: role must be read or operate"},
		{"short token", []string{"CANARY_TOKEN", "CANARY_TOKENS_FILE=" + file("\n\nci read shorty\n")},
			"CANARY_TOKENS_FILE: %s: line 3: token is 6 characters long; it must have at least 16"},
		{"duplicate token", []string{"CANARY_TOKEN", "CANARY_TOKENS_FILE=" + file("a operate "+aliceSecret+"\nb read "+aliceSecret+"\n")},
			"CANARY_TOKENS_FILE: %s: line 2: the token is the same as the one of line 1"},
		{"name default beside CANARY_TOKEN", []string{"CANARY_TOKENS_FILE=" + file("default operate "+aliceSecret+"\n")},
			`CANARY_TOKENS_FILE: %s: line 1: the name is already used by token "default" (given outside the file)`},
		{"CANARY_TOKEN repeated in the file", []string{"CANARY_TOKENS_FILE=" + file("ci read "+envSecret+"\n")},
			`CANARY_TOKENS_FILE: %s: line 1: the token is the same as the one of token "default" (given outside the file)`},
		{"empty file", []string{"CANARY_TOKEN", "CANARY_TOKENS_FILE=" + file("# nobody yet\n")},
			"CANARY_TOKENS_FILE: %s: holds no token"},
		{"missing file", []string{"CANARY_TOKEN", "CANARY_TOKENS_FILE=" + filepath.Join(dir, "nope")},
			"CANARY_TOKENS_FILE: cannot read the tokens: open %s"},
		{"no token at all", []string{"CANARY_TOKEN"},
			"CANARY_TOKEN: required (or CANARY_TOKEN_FILE, or named tokens in CANARY_TOKENS_FILE)"},
		{"CANARY_TOKEN and CANARY_TOKEN_FILE", []string{"CANARY_TOKEN_FILE=" + file(aliceSecret)},
			"CANARY_TOKEN_FILE: set CANARY_TOKEN or CANARY_TOKEN_FILE, not both"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var path string
			for _, kv := range tt.env {
				if v, ok := strings.CutPrefix(kv, "CANARY_TOKENS_FILE="); ok {
					path = v
				}
			}
			want := tt.want
			if strings.Contains(want, "%s") {
				want = fmt.Sprintf(want, path)
			}
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), nil, with(baseEnv(t), tt.env...), &stdout, &stderr)
			out := stderr.String()
			if code != exitConfig || strings.Count(out, "\n") != 1 || !strings.HasPrefix(out, "canaryd: "+want) {
				t.Errorf("exit %d, stderr %q; want 2 and one line starting %q", code, out, "canaryd: "+want)
			}
			for _, s := range []string{aliceSecret, ciSecret, envSecret, "shorty"} {
				if strings.Contains(out, s) {
					t.Errorf("stderr %q contains a token", out)
				}
			}
		})
	}
}

// The watcher's reload: a good file is put in force and the change named; a
// bad one is refused and the tokens in force stay.
func TestTokenWatcherReload(t *testing.T) {
	dir := t.TempDir()
	f := writeFile(t, dir, "tokens", "ops-alice operate "+aliceSecret+"\n")
	var got [][]admin.Token
	w := &tokenWatcher{
		src: tokenSources{token: envSecret, tokensFile: f},
		set: func(list []admin.Token) (admin.TokenChange, error) {
			got = append(got, list)
			return admin.TokenChange{Added: []string{"ci"}}, nil
		},
	}
	writeFile(t, dir, "tokens", "ops-alice operate "+aliceSecret+"\nci read "+ciSecret+"\n")
	what, err := w.reload()
	if err != nil || what != "admin tokens (3 in force; added ci)" || len(got) != 1 || len(got[0]) != 3 || got[0][0].Name != "default" {
		t.Errorf("reload = %q, %v, set with %v; want 3 tokens in force, default first", what, err, got)
	}
	writeFile(t, dir, "tokens", "ci read\n")
	what, err = w.reload()
	if err == nil || what != "" || len(got) != 1 {
		t.Errorf("reload of a bad file = %q, %v, %d sets; want an error and no new set", what, err, len(got))
	}
	if want := "admin tokens: CANARY_TOKENS_FILE: " + f + ": line 1: want NAME ROLE TOKEN separated by spaces, found 2 fields; keeping the tokens in force"; err == nil || err.Error() != want {
		t.Errorf("error = %v; want %q", err, want)
	}
}

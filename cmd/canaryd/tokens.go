package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/canaryd/canaryd/admin"
)

// tokenPollInterval is how often the token files' metadata is looked at;
// tokenSettleDelay how long a change must hold still before the files are
// read, so that a file rewritten in place is not read half-written. A
// rotation revokes the old token within their sum (and the read).
const (
	tokenPollInterval = 500 * time.Millisecond
	tokenSettleDelay  = 100 * time.Millisecond
)

// tokenSources are where the server's admin tokens come from: CANARY_TOKEN
// or CANARY_TOKEN_FILE, the operate token named "default", and
// CANARY_TOKENS_FILE, the named tokens. Both forms may be set together (a
// migration from one token to named ones runs both for a while): the file
// may then use neither the name "default" nor the default token.
type tokenSources struct {
	token      string // CANARY_TOKEN: fixed for the life of the process
	tokenFile  string // CANARY_TOKEN_FILE
	tokensFile string // CANARY_TOKENS_FILE
}

// files are the sources that can change while canaryd runs.
func (s tokenSources) files() []string {
	var out []string
	for _, f := range []string{s.tokenFile, s.tokensFile} {
		if f != "" {
			out = append(out, f)
		}
	}
	return out
}

// read loads every token. An error names its variable (and, for
// CANARY_TOKENS_FILE, the line) and never contains a token.
func (s tokenSources) read() ([]admin.Token, error) {
	var list []admin.Token
	switch {
	case s.token != "" || s.tokenFile != "":
		secret, err := loadToken(s.token, s.tokenFile)
		if err != nil {
			return nil, err
		}
		list = append(list, admin.Token{Name: admin.DefaultTokenName, Role: admin.RoleOperate, Secret: secret})
	case s.tokensFile == "":
		return nil, bad("CANARY_TOKEN", "required (or CANARY_TOKEN_FILE, or named tokens in CANARY_TOKENS_FILE)")
	}
	if s.tokensFile != "" {
		data, err := os.ReadFile(s.tokensFile)
		if err != nil {
			return nil, bad("CANARY_TOKENS_FILE", "cannot read the tokens: %v", err)
		}
		named, err := admin.ParseTokens(data, list...)
		if err != nil {
			return nil, bad("CANARY_TOKENS_FILE", "%s: %v", s.tokensFile, err)
		}
		list = append(list, named...)
	}
	return list, nil
}

// stamp identifies the files' current versions by device, inode, size and
// modification time: an atomic rename changes the inode, a rewrite in place
// the time (and mostly the size). A file that cannot be looked at stamps as
// its error, so that its return is a change too.
func (s tokenSources) stamp() string {
	var b strings.Builder
	for _, f := range s.files() {
		fi, err := os.Stat(f) // through symbolic links, as Kubernetes mounts secrets
		switch {
		case err != nil:
			fmt.Fprintf(&b, "%s: %v;", f, err)
		default:
			var dev, ino uint64
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				dev, ino = uint64(st.Dev), st.Ino
			}
			fmt.Fprintf(&b, "%s: %d/%d/%d/%d;", f, dev, ino, fi.Size(), fi.ModTime().UnixNano())
		}
	}
	return b.String()
}

// tokenWatcher keeps the admin API's tokens in step with their files: it
// rereads them when they change (Run) and on SIGHUP (reload). A set that
// does not load is refused with a logged error and the tokens in force
// stay. It logs which names were added, removed or changed, never a token.
type tokenWatcher struct {
	src tokenSources
	// set hands a new set to the admin API (admin.Server.SetTokens).
	set func([]admin.Token) (admin.TokenChange, error)
	log zerolog.Logger

	mu sync.Mutex // serialises reloads; protects loaded
	// loaded is the files' stamp when they were last read, successfully
	// or not: a file that failed is not read again until it changes.
	loaded string
}

// apply rereads the tokens and, if they load, puts them in force.
func (w *tokenWatcher) apply() (admin.TokenChange, int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	// Stamped before reading: a write during the read shows as a change
	// at the next look.
	w.loaded = w.src.stamp()
	list, err := w.src.read()
	if err != nil {
		return admin.TokenChange{}, 0, err
	}
	change, err := w.set(list)
	return change, len(list), err
}

// reload is apply for SIGHUP, whatever the files' metadata says.
func (w *tokenWatcher) reload() (string, error) {
	change, n, err := w.apply()
	if err != nil {
		return "", fmt.Errorf("admin tokens: %v; keeping the tokens in force", err)
	}
	return fmt.Sprintf("admin tokens (%d in force; %s)", n, change), nil
}

// Run looks at the files every tokenPollInterval until ctx ends, and
// reloads them once a change has held still for tokenSettleDelay.
func (w *tokenWatcher) Run(ctx context.Context) error {
	t := time.NewTicker(tokenPollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		cur := w.src.stamp()
		w.mu.Lock()
		loaded := w.loaded
		w.mu.Unlock()
		if cur == loaded {
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(tokenSettleDelay):
		}
		if w.src.stamp() != cur {
			continue // still being written: look again at the next tick
		}
		change, n, err := w.apply()
		if err != nil {
			w.log.Error().Err(err).Msg("admin token file changed but is refused; the tokens in force stay")
			continue
		}
		w.log.Info().Int("tokens", n).Strs("added", change.Added).Strs("removed", change.Removed).
			Strs("rotated", change.Rotated).Strs("role_changed", change.RoleChanged).
			Msg("admin tokens reloaded after their file changed: " + change.String())
	}
}

package admin

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// MinTokenLength is the shortest admin token accepted.
const MinTokenLength = 16

// MaxTokenNameLength is the longest token name accepted.
const MaxTokenNameLength = 64

// DefaultTokenName is the name of the token canaryd is given without a name
// (CANARY_TOKEN or CANARY_TOKEN_FILE); it has the operate role.
const DefaultTokenName = "default"

// Role is what a token may do. The zero value is RoleRead, the least
// privilege.
type Role uint8

const (
	// RoleRead may read: every GET (and HEAD) of the admin API and the
	// dashboard.
	RoleRead Role = iota
	// RoleOperate may do everything, the /rollout/… commands included.
	RoleOperate
)

// String is the role's name in the tokens file: "read" or "operate".
func (r Role) String() string {
	if r == RoleOperate {
		return "operate"
	}
	return "read"
}

// MarshalText writes the role's name, for JSON.
func (r Role) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// Allows reports whether a token of role r may use what needs role need.
func (r Role) Allows(need Role) bool { return r >= need }

// ParseRole reads "read" or "operate" (lower case, as the tokens file writes
// them).
func ParseRole(s string) (Role, error) {
	switch s {
	case "read":
		return RoleRead, nil
	case "operate":
		return RoleOperate, nil
	}
	return 0, errors.New("role must be read or operate")
}

// Token is one admin token: a name for the logs and the history, a role,
// and the secret a client presents as "Authorization: Bearer <secret>". The
// zero value is not a valid token (it has no name and no secret).
type Token struct {
	Name   string
	Role   Role
	Secret string
}

// ValidateSecret checks a token's secret: at least MinTokenLength visible
// ASCII characters (no spaces or control characters). Its errors never
// contain the secret.
func ValidateSecret(secret string) error {
	if secret == "" {
		return errors.New("token is empty")
	}
	if i := strings.IndexFunc(secret, func(r rune) bool { return r <= ' ' || r >= 0x7f }); i >= 0 {
		return errors.New("token must consist of visible ASCII characters only (no spaces or control characters)")
	}
	if len(secret) < MinTokenLength {
		return fmt.Errorf("token is %d characters long; it must have at least %d", len(secret), MinTokenLength)
	}
	return nil
}

// validateName checks a token's name: 1 to MaxTokenNameLength letters,
// digits, '.', '_', '-' or '@', so that it reads well in a log line and in
// the history's "name (address)".
func validateName(name string) error {
	if name == "" || len(name) > MaxTokenNameLength {
		return fmt.Errorf("name must have 1 to %d characters", MaxTokenNameLength)
	}
	for _, c := range []byte(name) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-' || c == '@') {
			return errors.New("name may hold only letters, digits, '.', '_', '-' and '@'")
		}
	}
	return nil
}

// checkSet validates list: every name and secret valid, names unique,
// secrets unique, at least one token. where(i) names list[i] in an error
// ("line 3", `token "ci"`). No error contains a secret.
func checkSet(list []Token, where func(i int) string) error {
	if len(list) == 0 {
		return errors.New("no token: at least one is required")
	}
	names := make(map[string]int, len(list))
	secrets := make(map[[sha256.Size]byte]int, len(list))
	for i, t := range list {
		if err := validateName(t.Name); err != nil {
			return fmt.Errorf("%s: %w", where(i), err)
		}
		if t.Role != RoleRead && t.Role != RoleOperate {
			return fmt.Errorf("%s: role must be read or operate", where(i))
		}
		if err := ValidateSecret(t.Secret); err != nil {
			return fmt.Errorf("%s: %w", where(i), err)
		}
		if j, dup := names[t.Name]; dup {
			return fmt.Errorf("%s: the name is already used by %s; names must be unique", where(i), where(j))
		}
		names[t.Name] = i
		sum := sha256.Sum256([]byte(t.Secret))
		if j, dup := secrets[sum]; dup {
			return fmt.Errorf("%s: the token is the same as the one of %s; each token must be unique", where(i), where(j))
		}
		secrets[sum] = i
	}
	return nil
}

// ParseTokens reads a tokens file: one token per line as "NAME ROLE TOKEN"
// (fields separated by spaces or tabs; ROLE is read or operate), blank
// lines and lines starting with '#' ignored, CRLF line ends accepted. Each
// token must pass ValidateSecret; names and tokens must be unique, also
// against taken (tokens given elsewhere, e.g. the default token), and the
// file must hold at least one token: an empty file is far more likely a
// file caught half-written than a wish to revoke every token. An error
// names the line and never contains a field's value (a file whose columns
// are swapped would otherwise print a token).
func ParseTokens(data []byte, taken ...Token) ([]Token, error) {
	list := slices.Clone(taken)
	lines := make([]int, len(taken)) // line of list[i]; 0 for taken
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		switch {
		case len(fields) == 1:
			return nil, fmt.Errorf("line %d: want NAME ROLE TOKEN separated by spaces, found 1 field (a token needs a name and a role before it)", n)
		case len(fields) != 3:
			return nil, fmt.Errorf("line %d: want NAME ROLE TOKEN separated by spaces, found %d fields", n, len(fields))
		}
		if err := validateName(fields[0]); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		role, err := ParseRole(fields[1])
		if err != nil {
			return nil, fmt.Errorf("line %d: %w (second field)", n, err)
		}
		list = append(list, Token{Name: fields[0], Role: role, Secret: fields[2]})
		lines = append(lines, n)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("line %d: %w", n+1, err)
	}
	if len(list) == len(taken) {
		return nil, errors.New("holds no token (want lines of NAME ROLE TOKEN)")
	}
	err := checkSet(list, func(i int) string {
		if lines[i] == 0 {
			return fmt.Sprintf("token %q (given outside the file)", list[i].Name)
		}
		return fmt.Sprintf("line %d", lines[i])
	})
	if err != nil {
		return nil, err
	}
	return list[len(taken):], nil
}

// Tokens is a validated, immutable set of admin tokens. It keeps only each
// token's SHA-256 hash, never the token itself. A nil *Tokens holds no
// token and lets nothing through.
type Tokens struct {
	entries []tokenEntry
}

type tokenEntry struct {
	name string
	role Role
	sum  [sha256.Size]byte
}

// NewTokens validates list (see ParseTokens for the rules; at least one
// token) and returns it as a set.
func NewTokens(list []Token) (*Tokens, error) {
	if err := checkSet(list, func(i int) string { return fmt.Sprintf("token %q", list[i].Name) }); err != nil {
		return nil, err
	}
	t := &Tokens{entries: make([]tokenEntry, len(list))}
	for i, tok := range list {
		t.entries[i] = tokenEntry{name: tok.Name, role: tok.Role, sum: sha256.Sum256([]byte(tok.Secret))}
	}
	return t, nil
}

// Count is the number of tokens of role r.
func (t *Tokens) Count(r Role) int {
	if t == nil {
		return 0
	}
	n := 0
	for _, e := range t.entries {
		if e.role == r {
			n++
		}
	}
	return n
}

// Len is the number of tokens.
func (t *Tokens) Len() int {
	if t == nil {
		return 0
	}
	return len(t.entries)
}

// lookup finds the token secret is, in time that depends on the number of
// tokens but not on which one (if any) matches: the presented value is
// hashed once, then compared with every token's hash in constant time, and
// the match is picked without a branch on the comparison.
func (t *Tokens) lookup(secret string) (name string, role Role, ok bool) {
	if t == nil {
		return "", 0, false
	}
	sum := sha256.Sum256([]byte(secret))
	found, index := 0, 0
	for i := range t.entries {
		eq := subtle.ConstantTimeCompare(sum[:], t.entries[i].sum[:])
		index = subtle.ConstantTimeSelect(eq, i, index)
		found |= eq
	}
	if found == 0 {
		return "", 0, false
	}
	e := t.entries[index]
	return e.name, e.role, true
}

// TokenChange is the difference between two token sets, by name: never a
// token itself.
type TokenChange struct {
	// Added and Removed are the names that appeared and disappeared.
	Added, Removed []string
	// Rotated are the names kept with a new token; RoleChanged those kept
	// with another role.
	Rotated, RoleChanged []string
}

// IsZero reports whether nothing changed.
func (c TokenChange) IsZero() bool {
	return len(c.Added)+len(c.Removed)+len(c.Rotated)+len(c.RoleChanged) == 0
}

// String describes the change for a log line, e.g. "added ops-bob; removed
// ops-alice", or "no change".
func (c TokenChange) String() string {
	var parts []string
	for _, p := range []struct {
		what  string
		names []string
	}{{"added", c.Added}, {"removed", c.Removed}, {"new token for", c.Rotated}, {"new role for", c.RoleChanged}} {
		if len(p.names) > 0 {
			parts = append(parts, p.what+" "+strings.Join(p.names, ", "))
		}
	}
	if len(parts) == 0 {
		return "no change"
	}
	return strings.Join(parts, "; ")
}

// diffTokens is what changed from old to cur, each list sorted.
func diffTokens(old, cur *Tokens) TokenChange {
	index := func(t *Tokens) map[string]tokenEntry {
		m := map[string]tokenEntry{}
		if t != nil {
			for _, e := range t.entries {
				m[e.name] = e
			}
		}
		return m
	}
	before, after := index(old), index(cur)
	var c TokenChange
	for name, e := range after {
		was, ok := before[name]
		switch {
		case !ok:
			c.Added = append(c.Added, name)
		default:
			if was.sum != e.sum {
				c.Rotated = append(c.Rotated, name)
			}
			if was.role != e.role {
				c.RoleChanged = append(c.RoleChanged, name)
			}
		}
	}
	for name := range before {
		if _, ok := after[name]; !ok {
			c.Removed = append(c.Removed, name)
		}
	}
	for _, l := range [][]string{c.Added, c.Removed, c.Rotated, c.RoleChanged} {
		slices.Sort(l)
	}
	return c
}

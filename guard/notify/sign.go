package notify

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync/atomic"
)

// SignatureHeader carries the body's signature.
const SignatureHeader = "X-Canaryd-Signature"

// signaturePrefix names the algorithm in the header's value.
const signaturePrefix = "sha256="

// MinSecretLen is the shortest secret accepted: a secret is a password an
// attacker must not guess.
const MinSecretLen = 16

// Sign is the value of X-Canaryd-Signature for body under secret:
// "sha256=" and the hex HMAC-SHA256.
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return signaturePrefix + hex.EncodeToString(m.Sum(nil))
}

// Verify reports whether header is body's signature under secret, comparing
// in constant time. Receivers written in Go may use it.
func Verify(secret, body []byte, header string) bool {
	got, ok := strings.CutPrefix(header, signaturePrefix)
	if !ok {
		return false
	}
	sum, err := hex.DecodeString(got)
	if err != nil {
		return false
	}
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return hmac.Equal(sum, m.Sum(nil))
}

// ValidateSecret checks a signing secret: empty (no signature) or at least
// MinSecretLen bytes.
func ValidateSecret(secret []byte) error {
	if len(secret) > 0 && len(secret) < MinSecretLen {
		return fmt.Errorf("the secret is %d bytes long; at least %d (openssl rand -hex 24 makes one)", len(secret), MinSecretLen)
	}
	return nil
}

// ParseURL checks an endpoint's URL: http:// or https:// with a host, no
// fragment.
func ParseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errors.New("not a URL")
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%q must be an http:// or https:// URL with a host", redact(u))
	}
	if u.Fragment != "" {
		return nil, fmt.Errorf("%q must not carry a fragment", redact(u))
	}
	return u, nil
}

// redact is u without what may be a secret: credentials, path and query
// (Slack's webhook URLs carry their secret in the path). Logs and errors
// name an endpoint by it.
func redact(u *url.URL) string {
	return u.Scheme + "://" + u.Host + "/…"
}

// plain is err's message without the request URL a *url.Error carries
// (which may hold a secret).
func plain(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Op + " " + "request: " + ue.Err.Error()
	}
	return err.Error()
}

// secret holds a signing secret that SetSecret may replace while requests
// are signed: each request reads it once.
type secret struct{ p atomic.Pointer[[]byte] }

func (s *secret) load() []byte {
	if b := s.p.Load(); b != nil {
		return *b
	}
	return nil
}

func (s *secret) store(b []byte) error {
	if err := ValidateSecret(b); err != nil {
		return err
	}
	b = append([]byte(nil), b...)
	s.p.Store(&b)
	return nil
}

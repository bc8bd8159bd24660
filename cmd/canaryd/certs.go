package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// certReloader serves the key pair from disk. It reloads the pair when
// either file's modification time moves forward (checked every second), and
// on SIGHUP whatever the times say (a copy that kept its old time, a
// rollback to an older certificate).
type certReloader struct {
	certFile, keyFile string
	log               zerolog.Logger

	mu      sync.RWMutex // protects cert and modTime
	cert    *tls.Certificate
	modTime time.Time
}

// load reads the pair and, if it parses, serves it from now on. It returns a
// description of the certificate for the log.
func (r *certReloader) load() (string, error) {
	mod := r.newest()
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return "", err
	}
	r.mu.Lock()
	r.cert, r.modTime = &cert, mod
	r.mu.Unlock()
	return describeCert(r.certFile, &cert), nil
}

// reload is load for SIGHUP; a failure keeps the certificate in use.
func (r *certReloader) reload() (string, error) {
	what, err := r.load()
	if err != nil {
		return "", fmt.Errorf("TLS certificate %s: %v; keeping the one in use", r.certFile, err)
	}
	return what, nil
}

// describeCert names a certificate by file, serial number and expiry.
func describeCert(file string, c *tls.Certificate) string {
	leaf := c.Leaf
	if leaf == nil && len(c.Certificate) > 0 {
		leaf, _ = x509.ParseCertificate(c.Certificate[0])
	}
	if leaf == nil {
		return "TLS certificate " + file
	}
	return fmt.Sprintf("TLS certificate %s (serial %s, expires %s)", file, leaf.SerialNumber, leaf.NotAfter.UTC().Format(time.RFC3339))
}

func (r *certReloader) newest() time.Time {
	var t time.Time
	for _, f := range []string{r.certFile, r.keyFile} {
		if fi, err := os.Stat(f); err == nil && fi.ModTime().After(t) {
			t = fi.ModTime()
		}
	}
	return t
}

func (r *certReloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.cert, nil
}

// Run polls the files' modification times every second until ctx ends. A
// pair that fails to load (say, the key is written after the certificate)
// keeps the old one and is retried on the next change or tick.
func (r *certReloader) Run(ctx context.Context) error {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		r.mu.RLock()
		old := r.modTime
		r.mu.RUnlock()
		if !r.newest().After(old) {
			continue
		}
		what, err := r.load()
		if err != nil {
			r.log.Warn().Err(err).Msg("certificate changed but does not load; keeping the old one")
			continue
		}
		r.log.Info().Str("cert", r.certFile).Msg("reloaded " + what + " after the files changed")
	}
}

package main

import (
	"context"
	"crypto/tls"
	"os"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// certReloader serves the key pair from disk and reloads it when either file
// changes, so certificates rotate without a restart.
type certReloader struct {
	certFile, keyFile string
	log               zerolog.Logger

	mu      sync.RWMutex // protects cert and modTime
	cert    *tls.Certificate
	modTime time.Time
}

func (r *certReloader) load() error {
	mod := r.newest()
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.cert, r.modTime = &cert, mod
	r.mu.Unlock()
	return nil
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

// watch polls the files' modification times every second until ctx ends. A
// pair that fails to load (say, the key is written after the certificate)
// keeps the old one and is retried on the next change or tick.
func (r *certReloader) watch(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r.mu.RLock()
		old := r.modTime
		r.mu.RUnlock()
		if !r.newest().After(old) {
			continue
		}
		if err := r.load(); err != nil {
			r.log.Warn().Err(err).Str("component", "tls").Msg("certificate changed but does not load; keeping the old one")
			continue
		}
		r.log.Info().Str("component", "tls").Str("cert", r.certFile).Msg("certificate reloaded")
	}
}

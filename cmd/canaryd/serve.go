package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	stdlog "log"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/rs/zerolog"

	"github.com/canaryd/canaryd/admin"
	"github.com/canaryd/canaryd/guard"
	"github.com/canaryd/canaryd/guard/judge"
	"github.com/canaryd/canaryd/proxy"
	"github.com/canaryd/canaryd/split"
)

// listening reports the bound addresses once both listeners accept.
type listening func(traffic, admin net.Addr)

// serve builds every part from c, serves until ctx ends, then shuts down
// gracefully: stop accepting, finish in-flight requests (bounded by
// CANARY_SHUTDOWN_TIMEOUT), persist the state, return nil.
func serve(ctx context.Context, c *config, log zerolog.Logger, ready listening) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)

	sp, err := split.New(split.Config{StickyKey: c.StickyKey, OverrideHeader: c.OverrideHeader}, c.weight)
	if err != nil {
		return bad("CANARY_STICKY_KEY", "%v", err)
	}
	px, err := proxy.New(proxy.Config{
		Stable:                 c.stable,
		Canary:                 c.canary,
		Window:                 c.SLOWindow,
		SlowThreshold:          c.SLOP95,
		ResponseHeaderTimeout:  c.UpstreamTimeout,
		MaxConnsPerBackend:     c.MaxConnsPerBackend,
		MaxResponseHeaderBytes: c.MaxResponseHeaderBytes,
		RequestBuffer:          c.RequestBuffer,
		BodyReadTimeout:        c.BodyReadTimeout,
		DisableFastPath:        !bool(c.FastPath),
		TLSClientConfig:        c.upstreamTLS,
		HealthPath:             c.HealthPath,
		HealthInterval:         c.HealthInterval,
		AccessLog:              c.AccessLog,
		Redact:                 []string{c.Token},
	}, sp, log, reg)
	if err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	// Bind before the guard restores (and may rewrite or quarantine) the
	// state file: a port in use must not leave traces on disk.
	trafficLn, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return fmt.Errorf("CANARY_LISTEN: %w", err)
	}
	adminLn, err := net.Listen("tcp", c.AdminListen)
	if err != nil {
		trafficLn.Close()
		return fmt.Errorf("CANARY_ADMIN_LISTEN: %w", err)
	}
	closeListeners := func() {
		trafficLn.Close()
		adminLn.Close()
	}
	g, err := guard.New(guard.Config{
		Release: c.Release,
		Weight:  c.weight,
		Steps:   c.steps,
		SLO: judge.SLO{
			ErrorRate:   c.SLOErrorRate,
			P95:         c.SLOP95,
			MinRequests: c.SLOMinRequests,
			Alpha:       c.Alpha,
		},
		Window:            c.SLOWindow,
		Judge:             c.Judge,
		EvalInterval:      c.EvalInterval,
		StateFile:         c.StateFile,
		IntegrityManifest: c.IntegrityManifest,
		IntegrityRoot:     c.IntegrityRoot,
		IntegrityInterval: c.IntegrityInterval,
	}, px, sp, log, reg)
	if errors.Is(err, guard.ErrStateFile) {
		closeListeners()
		return bad("CANARY_STATE_FILE", "%v", err)
	}
	if err != nil {
		closeListeners()
		return fmt.Errorf("guard: %w", err)
	}
	adm, err := admin.New(admin.Config{Token: c.Token, Version: version}, g, reg, log, reg)
	if err != nil {
		closeListeners()
		return fmt.Errorf("admin: %w", err)
	}

	httpLog := stdlog.New(log.With().Str("component", "http").Logger(), "", 0)
	traffic := &http.Server{
		Handler:           px,
		ReadHeaderTimeout: c.ReadHeaderTimeout,
		IdleTimeout:       c.IdleTimeout,
		MaxHeaderBytes:    c.MaxHeaderBytes,
		ErrorLog:          httpLog,
	}
	adminSrv := &http.Server{
		Handler:           adm.Handler(),
		ReadHeaderTimeout: c.ReadHeaderTimeout,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       c.IdleTimeout,
		MaxHeaderBytes:    c.MaxHeaderBytes,
		ErrorLog:          httpLog,
	}
	var certs *certReloader
	if c.tlsEnabled {
		certs = &certReloader{certFile: c.TLSCertFile, keyFile: c.TLSKeyFile, log: log}
		if err := certs.load(); err != nil {
			closeListeners()
			return bad("CANARY_TLS_CERT_FILE", "%v", err)
		}
		tc := &tls.Config{GetCertificate: certs.get, MinVersion: tls.VersionTLS12}
		adminSrv.TLSConfig = tc.Clone()
		// The traffic listener terminates TLS itself, so that the framing
		// guard covers HTTP/1.1 over TLS too; "h2" in NextProtos makes
		// net/http serve the HTTP/2 connections it hands over.
		tc.NextProtos = []string{"h2", "http/1.1"}
		traffic.TLSConfig = tc
		traffic.ConnContext = proxy.ConnContext
	}

	smugLog := log.With().Str("component", "listener").Logger()
	rejected := func(reason string) {
		smugLog.Debug().Str("reason", reason).Msg("request refused: ambiguous framing")
	}
	if certs == nil {
		trafficLn = proxy.StrictListener(trafficLn, rejected)
	} else {
		trafficLn = proxy.StrictTLSListener(trafficLn, traffic.TLSConfig.Clone(), c.ReadHeaderTimeout, rejected)
	}

	// The guard and the proxy's background work run until everything else
	// has drained, so the final state is persisted after the last request.
	bgCtx, stopBackground := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBackground()
	var wg sync.WaitGroup
	errc := make(chan error, 4)
	wg.Go(func() { errc <- named("guard", g.Run(bgCtx)) })
	wg.Go(func() { errc <- named("proxy", px.Run(bgCtx)) })
	serveOn := func(name string, srv *http.Server, ln net.Listener) {
		var err error
		if certs != nil && srv != traffic { // the traffic listener terminates TLS itself
			err = srv.ServeTLS(ln, "", "")
		} else {
			err = srv.Serve(ln)
		}
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		errc <- named(name, err)
	}
	var servers sync.WaitGroup
	servers.Go(func() { serveOn("traffic listener", traffic, trafficLn) })
	servers.Go(func() { serveOn("admin listener", adminSrv, adminLn) })

	scheme := "http"
	if certs != nil {
		scheme = "https"
	}
	log.Info().Str("traffic", scheme+"://"+trafficLn.Addr().String()).Str("admin", scheme+"://"+adminLn.Addr().String()).
		Str("stable", c.stable.Redacted()).Str("canary", c.canary.Redacted()).Str("release", c.Release).
		Str("version", version).Msg("canaryd serving")
	if ready != nil {
		ready(trafficLn.Addr(), adminLn.Addr())
	}
	if certs != nil {
		wg.Go(func() { certs.watch(bgCtx) })
	}
	if c.PprofListen != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		dbg := &http.Server{Addr: c.PprofListen, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go dbg.ListenAndServe()
		defer dbg.Close()
		log.Warn().Str("addr", c.PprofListen).Msg("pprof enabled")
	}

	var runErr error
	select {
	case <-ctx.Done():
		log.Info().Dur("timeout", c.ShutdownTimeout).Msg("shutting down: finishing in-flight requests")
	case runErr = <-errc:
		if runErr == nil {
			runErr = errors.New("a component stopped unexpectedly")
		}
		log.Error().Err(runErr).Msg("shutting down after a failure")
	}
	shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.ShutdownTimeout)
	defer cancel()
	var shut sync.WaitGroup
	for _, srv := range []*http.Server{traffic, adminSrv} {
		shut.Go(func() {
			if err := srv.Shutdown(shutCtx); err != nil {
				log.Warn().Err(err).Msg("in-flight requests cut off at the shutdown timeout")
				srv.Close()
			}
		})
	}
	shut.Wait()
	servers.Wait()
	stopBackground()
	wg.Wait()
	close(errc)
	for err := range errc {
		if err != nil && runErr == nil {
			runErr = err
		}
	}
	if runErr == nil {
		log.Info().Msg("canaryd stopped")
	}
	return runErr
}

func named(name string, err error) error {
	if err == nil || errors.Is(err, context.Canceled) {
		return nil
	}
	return fmt.Errorf("%s: %w", name, err)
}

package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	stdlog "log"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/rs/zerolog"

	"github.com/canaryd/canaryd/admin"
	"github.com/canaryd/canaryd/guard"
	"github.com/canaryd/canaryd/guard/etcdstore"
	"github.com/canaryd/canaryd/guard/judge"
	"github.com/canaryd/canaryd/guard/metricgate"
	"github.com/canaryd/canaryd/guard/notify"
	"github.com/canaryd/canaryd/proxy"
	"github.com/canaryd/canaryd/split"
)

// runServe is `canaryd` and `canaryd serve`: configuration from the
// environment, then serve until SIGTERM/SIGINT. Any failure to start is one
// line on stderr, `canaryd: VARIABLE: problem` (exit 2) when a variable's
// value is the cause.
func runServe(ctx context.Context, c cli, args []string) int {
	// SIGHUP reloads; registered first, so that a HUP sent as soon as the
	// process exists never kills it.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	rest, code, ok := parseFlags(fs, c, args, printHelp)
	if !ok {
		return code
	}
	if len(rest) > 0 {
		return usageExit(c, "serve", "unexpected argument %q (configuration comes from CANARY_* variables)", rest[0])
	}
	cfg, err := loadConfig(c.environ)
	if err != nil {
		return configExit(c.stderr, err)
	}
	log := newLogger(cfg, c.stderr)
	err = serve(ctx, cfg, log, serveOptions{reload: hup})
	if ce, ok := errors.AsType[*configError](err); ok {
		return configExit(c.stderr, ce)
	}
	if err != nil {
		log.Error().Err(err).Msg("canaryd stopped")
		fmt.Fprintf(c.stderr, "canaryd: %v\n", err)
		return exitFail
	}
	return exitOK
}

func newLogger(c *config, w io.Writer) zerolog.Logger {
	if c.LogFormat == "console" {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
	}
	return zerolog.New(w).Level(c.level).With().Timestamp().Logger()
}

// serveOptions are serve's hooks; the zero value has none.
type serveOptions struct {
	// ready, if set, is called with the bound addresses once both listeners
	// accept.
	ready func(traffic, admin net.Addr)
	// reload delivers SIGHUP; nil means no reloads.
	reload <-chan os.Signal
}

// serve builds every part from c, serves until ctx ends, then shuts down
// gracefully: stop accepting, finish in-flight requests (bounded by
// CANARY_SHUTDOWN_TIMEOUT), persist the state, return nil.
func serve(ctx context.Context, c *config, log zerolog.Logger, opts serveOptions) error {
	s, err := build(c, log)
	if err != nil {
		return err
	}
	return s.run(ctx, opts)
}

// server is canaryd built and bound, not yet running.
type server struct {
	cfg   *config
	log   zerolog.Logger
	proxy *proxy.Proxy
	guard *guard.Guard
	fleet *etcdstore.Fleet // nil for a single canaryd (the state file)
	// webhook delivers the rollout's events (nil without
	// CANARY_WEBHOOK_URL); it runs after everything else has stopped, so
	// that the last transitions are sent.
	webhook *notify.Webhook
	scheme  string // http or https, for the log
	// replica is this canaryd's id (CANARY_REPLICA_ID, or derived).
	replica string

	traffic, admin, pprof       *http.Server
	trafficLn, adminLn, pprofLn net.Listener // pprofLn is nil when off
	// trafficServer serves trafficLn: the server loop (proxy.Server, with
	// traffic as its fallback) for plaintext with the fast path on, else
	// traffic itself.
	trafficServer httpServer

	// history is the dashboard's last hour of figures, sampled from the
	// guard.
	history *admin.History

	certs  *certReloader // nil without TLS
	tokens *tokenWatcher // nil without a token file
	// reloadables are re-read on SIGHUP: the TLS certificate and the token
	// files.
	reloadables []reloadable
}

// build creates every part from c and binds the listeners. The listeners are
// bound before the guard restores (and may rewrite or quarantine) the state
// file, so a port in use leaves no trace on disk. On error, whatever was
// bound is closed again.
func build(c *config, log zerolog.Logger) (_ *server, err error) {
	s := &server{cfg: c, log: log, scheme: "http"}
	defer func() {
		if err != nil {
			s.closeListeners()
		}
	}()
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	sp, err := split.New(split.Config{
		StickyKey: c.StickyKey, OverrideHeader: c.OverrideHeader,
		Match: c.match, TrustedProxies: c.trustedProxies,
		SetCookie: c.StickySetCookie, CookieMaxAge: c.StickyMaxAge,
	}, c.weight)
	if err != nil {
		return nil, bad("CANARY_STICKY_KEY", "%v", err)
	}
	if s.proxy, err = newProxy(c, sp, log, reg); err != nil {
		return nil, err
	}
	if err := s.bind(); err != nil {
		return nil, err
	}
	s.replica = replicaID(c, s.adminLn.Addr())
	if c.etcd != nil {
		if s.fleet, err = newFleet(c, s.replica, log); err != nil {
			return nil, err
		}
		defer func() {
			if err != nil {
				s.fleet.Close()
			}
		}()
	}
	hooks, err := newIntegrations(c, log, reg)
	if err != nil {
		return nil, err
	}
	s.webhook = hooks.webhook
	if c.WebhookSecretFile != "" {
		s.reloadables = append(s.reloadables, &secretFile{path: c.WebhookSecretFile, current: c.webhookSecret, hooks: hooks})
	}
	if s.guard, err = newGuard(c, s.proxy, sp, s.fleet, s.replica, hooks, log, reg); err != nil {
		return nil, err
	}
	if s.history, err = admin.NewHistory(s.guard, admin.HistoryConfig{}); err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	adm, err := admin.New(admin.Config{Tokens: c.tokens, Version: buildVersion(), History: s.history}, s.guard, reg, log, reg)
	if err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	if err := s.buildHTTP(adm.Handler()); err != nil {
		return nil, err
	}
	if src := c.tokenSources(); len(src.files()) > 0 {
		set := func(tokens []admin.Token) (admin.TokenChange, error) {
			change, err := adm.SetTokens(tokens)
			if err == nil {
				s.proxy.SetRedact(secretsOf(tokens))
			}
			return change, err
		}
		s.tokens = &tokenWatcher{src: src, set: set, log: log.With().Str("component", "tokens").Logger(), loaded: c.tokenStamp}
		s.reloadables = append(s.reloadables, s.tokens)
	}
	return s, nil
}

func newProxy(c *config, sp *split.Splitter, log zerolog.Logger, reg prometheus.Registerer) (*proxy.Proxy, error) {
	cfg := proxy.Config{
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
		Redact:                 secretsOf(c.tokens),
		MirrorPercent:          c.mirrorPercent,
		MirrorMethods:          c.mirrorMethods,
	}
	// The backends as pools, and what counts as an error.
	cfg.StableURLs, cfg.CanaryURLs = c.stable, c.canary
	cfg.LoadBalancer = c.lb
	cfg.DNSRefresh = c.DNSRefresh
	cfg.EjectConsecutiveFailures = ejectAfter(c.EjectConsecutiveFailures)
	cfg.EjectTime = c.EjectTime
	cfg.ErrorStatuses = c.errorStatuses
	cfg.GRPCErrorCodes = c.grpcErrorCodes
	px, err := proxy.New(cfg, sp, log, reg)
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	return px, nil
}

// ejectAfter is CANARY_EJECT_CONSECUTIVE_FAILURES for the proxy, whose
// zero means the default: 0 (never) is negative there.
func ejectAfter(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

// secretsOf lists the tokens' secrets, for the proxy's access-log redaction
// (renewed when the token files are reloaded).
func secretsOf(tokens []admin.Token) []string {
	out := make([]string, len(tokens))
	for i, t := range tokens {
		out[i] = t.Secret
	}
	return out
}

// replicaID is CANARY_REPLICA_ID, or the host name and the admin
// listener's port ("web-1:8000"), unique among replicas on distinct hosts
// and among several on one host.
func replicaID(c *config, adminAddr net.Addr) string {
	if c.ReplicaID != "" {
		return c.ReplicaID
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "canaryd"
	}
	host = strings.Map(func(r rune) rune {
		if r == '/' || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return '-'
		}
		return r
	}, host)
	port := "0"
	if ta, ok := adminAddr.(*net.TCPAddr); ok {
		port = strconv.Itoa(ta.Port)
	}
	return host + ":" + port
}

// newFleet prepares this replica's etcd store and registers it, so that a
// second live replica with the same id is refused at start (exit 2). When
// etcd does not answer, canaryd starts anyway (the canary blocked until the
// fleet's rollout is read) and registers later.
func newFleet(c *config, replica string, log zerolog.Logger) (*etcdstore.Fleet, error) {
	cfg := *c.etcd
	cfg.ReplicaID = replica
	f, err := etcdstore.New(cfg, log)
	switch {
	case errors.Is(err, etcdstore.ErrAuth):
		return nil, bad("CANARY_ETCD_PASSWORD_FILE", "%v", err)
	case err != nil:
		return nil, bad("CANARY_ETCD_ENDPOINTS", "%v", err)
	}
	// A crashed replica's registration lasts until its lease expires:
	// allow for that wait, plus the operations.
	ctx, cancel := context.WithTimeout(context.Background(), c.EtcdLeaseTTL+10*time.Second)
	defer cancel()
	switch err := f.Register(ctx); {
	case errors.Is(err, etcdstore.ErrReplicaIDTaken):
		f.Close()
		return nil, replicaTaken(err)
	case err != nil:
		log.Warn().Err(err).Strs("endpoints", cfg.Endpoints).
			Msg("etcd does not answer: serving with the canary blocked until the fleet's rollout can be read")
	}
	return f, nil
}

// replicaTaken is the configuration error of a replica id another live
// replica holds.
func replicaTaken(err error) error {
	return bad("CANARY_REPLICA_ID", "%v (another live replica of this fleet uses it; give each replica its own CANARY_REPLICA_ID)", err)
}

// integrations are the guard's outside parts, each nil when not
// configured.
type integrations struct {
	webhook   *notify.Webhook
	confirmer *notify.Confirmer
	gates     *metricgate.Set
}

// newIntegrations builds the webhook, the confirmation client and the
// metric gates from c. canary_webhook_deliveries_total is registered
// either way, so that dashboards always find it.
func newIntegrations(c *config, log zerolog.Logger, reg prometheus.Registerer) (integrations, error) {
	var in integrations
	m, err := notify.NewMetrics(reg)
	if err != nil {
		return in, err
	}
	if c.WebhookURL != "" {
		in.webhook, err = notify.New(notify.Config{URL: c.WebhookURL, Secret: c.webhookSecret, Format: c.webhookFormat, Version: buildVersion(), Metrics: m}, log)
		if err != nil {
			return in, bad("CANARY_WEBHOOK_URL", "%v", err)
		}
	}
	if c.ConfirmURL != "" {
		in.confirmer, err = notify.NewConfirmer(notify.ConfirmConfig{URL: c.ConfirmURL, Secret: c.webhookSecret, Version: buildVersion()})
		if err != nil {
			return in, bad("CANARY_CONFIRM_URL", "%v", err)
		}
	}
	if len(c.metricGates) > 0 {
		in.gates, err = metricgate.New(metricgate.Config{URL: c.PrometheusURL, Gates: c.metricGates})
		if err != nil {
			return in, bad("CANARY_PROMETHEUS_URL", "%v", err)
		}
	}
	return in, nil
}

func newGuard(c *config, px *proxy.Proxy, sp *split.Splitter, fleet *etcdstore.Fleet, replica string, hooks integrations, log zerolog.Logger, reg prometheus.Registerer) (*guard.Guard, error) {
	cfg := guard.Config{
		Release: c.Release,
		Weight:  c.weight,
		Steps:   c.steps,
		SLO: judge.SLO{
			ErrorRate:   c.SLOErrorRate,
			P95:         c.SLOP95,
			MinRequests: c.SLOMinRequests,
			Alpha:       c.Alpha,
			Margin:      c.CompareMargin,
			Compare:     c.compare,
		},
		Window:            c.SLOWindow,
		Judge:             c.Judge,
		EvalInterval:      c.EvalInterval,
		StateFile:         c.StateFile,
		IntegrityManifest: c.IntegrityManifest,
		IntegrityRoot:     c.IntegrityRoot,
		IntegrityInterval: c.IntegrityInterval,
		ReplicaID:         replica,
		ProgressDeadline:  c.ProgressDeadline,
		DeadlineAction:    c.deadlineAction,
	}
	if fleet != nil {
		cfg.Store, cfg.Fleet = fleet, fleet
	}
	// Interfaces get nil, not a typed nil pointer, when a part is off.
	if hooks.webhook != nil {
		cfg.Notifier = hooks.webhook
	}
	if hooks.confirmer != nil {
		cfg.Confirmer = hooks.confirmer
	}
	if hooks.gates != nil {
		cfg.MetricGates, cfg.MetricGateInterval = hooks.gates, c.MetricGateInterval
	}
	g, err := guard.New(cfg, px, sp, log, reg)
	if errors.Is(err, guard.ErrStateFile) {
		return nil, bad("CANARY_STATE_FILE", "%v", err)
	}
	if errors.Is(err, guard.ErrRelease) {
		return nil, bad("CANARY_RELEASE", "%v", err)
	}
	if err != nil {
		return nil, fmt.Errorf("guard: %w", err)
	}
	return g, nil
}

// bind opens the traffic, admin and (when configured) pprof listeners.
func (s *server) bind() (err error) {
	if s.trafficLn, err = listen("CANARY_LISTEN", s.cfg.Listen); err != nil {
		return err
	}
	if s.adminLn, err = listen("CANARY_ADMIN_LISTEN", s.cfg.AdminListen); err != nil {
		return err
	}
	if s.cfg.PprofListen != "" {
		if s.pprofLn, err = listen("CANARY_PPROF_LISTEN", s.cfg.PprofListen); err != nil {
			return err
		}
	}
	return nil
}

func (s *server) closeListeners() {
	for _, ln := range []net.Listener{s.trafficLn, s.adminLn, s.pprofLn} {
		if ln != nil {
			ln.Close()
		}
	}
}

// buildHTTP creates the HTTP servers: traffic (the proxy), admin, and pprof
// when configured; with TLS, both main listeners serve the reloadable
// certificate.
func (s *server) buildHTTP(adminHandler http.Handler) error {
	c := s.cfg
	httpLog := stdlog.New(s.log.With().Str("component", "http").Logger(), "", 0)
	s.traffic = &http.Server{
		Handler:           s.proxy,
		ReadHeaderTimeout: c.ReadHeaderTimeout,
		IdleTimeout:       c.IdleTimeout,
		MaxHeaderBytes:    c.MaxHeaderBytes,
		ErrorLog:          httpLog,
	}
	s.admin = &http.Server{
		Handler:           adminHandler,
		ReadHeaderTimeout: c.ReadHeaderTimeout,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       c.IdleTimeout,
		MaxHeaderBytes:    c.MaxHeaderBytes,
		ErrorLog:          httpLog,
	}
	if c.tlsEnabled {
		s.certs = &certReloader{certFile: c.TLSCertFile, keyFile: c.TLSKeyFile, log: s.log.With().Str("component", "tls").Logger()}
		if _, err := s.certs.load(); err != nil {
			return bad("CANARY_TLS_CERT_FILE", "%v", err)
		}
		tc := &tls.Config{GetCertificate: s.certs.get, MinVersion: tls.VersionTLS12}
		s.admin.TLSConfig = tc.Clone()
		// The traffic listener terminates TLS itself (StrictTLSListener), so
		// that the framing guard covers HTTP/1.1 over TLS too; "h2" in
		// NextProtos makes net/http serve the HTTP/2 connections it hands
		// over, and ConnContext gives requests their TLS state.
		tc.NextProtos = []string{"h2", "http/1.1"}
		s.traffic.TLSConfig = tc
		s.traffic.ConnContext = proxy.ConnContext
		s.reloadables = append(s.reloadables, s.certs)
		s.scheme = "https"
	}
	// Every HTTP/1.1 connection of the traffic listener is guarded: ambiguous
	// framing (request smuggling) is refused before net/http parses it.
	smugLog := s.log.With().Str("component", "listener").Logger()
	rejected := func(reason string) {
		smugLog.Debug().Str("reason", reason).Msg("request refused: ambiguous framing")
	}
	s.trafficServer = s.traffic
	if s.certs == nil && c.H2C {
		// Plaintext HTTP/2 with prior knowledge: a connection that opens
		// with the HTTP/2 preface goes to net/http's h2c server unguarded
		// (HTTP/2 frames its messages unambiguously); every other one is
		// guarded as HTTP/1.1.
		s.traffic.Protocols = new(http.Protocols)
		s.traffic.Protocols.SetHTTP1(true)
		s.traffic.Protocols.SetUnencryptedHTTP2(true)
	}
	switch {
	case s.certs != nil:
		s.trafficLn = proxy.StrictTLSListener(s.trafficLn, s.traffic.TLSConfig.Clone(), c.ReadHeaderTimeout, rejected)
	case bool(c.FastPath):
		// The server loop parses each request head once, with the guard's
		// parser, and hands what it does not serve to s.traffic, guarded.
		s.trafficServer = proxy.NewServer(proxy.ServerConfig{Fallback: s.traffic, Rejected: rejected, HTTP2PriorKnowledge: c.H2C})
	case c.H2C:
		s.trafficLn = proxy.StrictH2CListener(s.trafficLn, rejected)
	default:
		s.trafficLn = proxy.StrictListener(s.trafficLn, rejected)
	}
	if s.pprofLn != nil {
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		s.pprof = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ErrorLog: httpLog}
	}
	return nil
}

// listen binds addr for the variable name; a failure is that variable's
// error, with a hint at the usual causes.
func listen(name, addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err == nil {
		return ln, nil
	}
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return nil, bad(name, "%s is already in use by another process (hint: find it with `ss -ltnp`, stop it, or choose another %s)", addr, name)
	case errors.Is(err, syscall.EACCES):
		return nil, bad(name, "no permission to listen on %s (hint: ports below 1024 need root or CAP_NET_BIND_SERVICE)", addr)
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return nil, bad(name, "%s is not an address of this machine (hint: use :PORT for every address, or 127.0.0.1:PORT)", addr)
	}
	return nil, bad(name, "cannot listen on %s: %v", addr, err)
}

// run serves until ctx ends or a part fails, then shuts down in order: the
// listeners drain first, then the background parts (guard, proxy, reloads)
// stop, so the state the guard saves last is after the last request.
func (s *server) run(ctx context.Context, opts serveOptions) error {
	// The webhook starts first and stops last: it delivers what the guard
	// stores until the guard's final save.
	last := newGroup(context.WithoutCancel(ctx))
	if s.webhook != nil {
		last.Go("webhook", s.webhook.Run)
	}
	background := newGroup(context.WithoutCancel(ctx))
	background.Go("guard", s.guard.Run)
	background.Go("proxy", s.proxy.Run)
	background.Go("dashboard history", s.history.Run)
	if s.fleet != nil {
		background.Go("fleet", func(ctx context.Context) error {
			err := s.fleet.Run(ctx)
			if errors.Is(err, etcdstore.ErrReplicaIDTaken) {
				return replicaTaken(err)
			}
			return err
		})
		defer s.fleet.Close() // after the guard's last save
	}
	if s.certs != nil {
		background.Go("tls certificate watcher", s.certs.Run)
	}
	if s.tokens != nil {
		background.Go("admin token watcher", s.tokens.Run)
	}
	if opts.reload != nil {
		background.Go("reload on SIGHUP", func(ctx context.Context) error { return s.reloadOn(ctx, opts.reload) })
	}

	front := newGroup(ctx)
	// The traffic listener's connections arrive with TLS terminated already.
	front.Go("traffic listener", s.serveHTTP(s.trafficServer, s.trafficLn, s.cfg.ShutdownTimeout, false))
	front.Go("admin listener", s.serveHTTP(s.admin, s.adminLn, s.cfg.ShutdownTimeout, s.admin.TLSConfig != nil))
	if s.pprof != nil {
		// Profiles in flight are cut at shutdown: they do not hold it up.
		front.Go("pprof listener", s.serveHTTP(s.pprof, s.pprofLn, 0, false))
		s.log.Warn().Str("addr", s.pprofLn.Addr().String()).Msg("pprof enabled")
	}

	s.log.Info().Str("traffic", s.scheme+"://"+s.trafficLn.Addr().String()).Str("admin", s.scheme+"://"+s.adminLn.Addr().String()).
		Str("stable", redactedAll(s.cfg.stable)).Str("canary", redactedAll(s.cfg.canary)).Str("release", s.cfg.Release).
		Str("replica", s.replica).Str("store", s.storeName()).Strs("integrations", s.integrationNames()).Str("version", buildVersion()).Msg("canaryd serving")
	if opts.ready != nil {
		opts.ready(s.trafficLn.Addr(), s.adminLn.Addr())
	}

	select {
	case <-front.Done():
	case <-background.Done():
	}
	if ctx.Err() != nil {
		s.log.Info().Dur("timeout", s.cfg.ShutdownTimeout).Msg("shutting down: finishing in-flight requests")
	} else {
		s.log.Error().Err(errors.Join(front.Err(), background.Err())).Msg("shutting down after a failure")
	}
	front.Stop()
	frontErr := front.Wait()
	background.Stop()
	backgroundErr := background.Wait()
	last.Stop()
	err := errors.Join(frontErr, backgroundErr, last.Wait())
	if err == nil {
		s.log.Info().Msg("canaryd stopped")
	}
	return err
}

// integrationNames says which integrations are on, for the log (never
// their URLs, which may hold secrets).
func (s *server) integrationNames() []string {
	c := s.cfg
	names := []string{}
	if c.WebhookURL != "" {
		names = append(names, "webhook ("+c.webhookFormat.String()+")")
	}
	if c.ConfirmURL != "" {
		names = append(names, "confirmation")
	}
	if c.ProgressDeadline > 0 {
		names = append(names, fmt.Sprintf("progress deadline %v (%s)", c.ProgressDeadline, c.deadlineAction))
	}
	if len(c.metricGates) > 0 {
		names = append(names, fmt.Sprintf("%d metric gates every %v", len(c.metricGates), c.MetricGateInterval))
	}
	return names
}

// redactedAll lists a backend's URLs, credentials removed, for the log.
func redactedAll(urls []*url.URL) string {
	out := make([]string, len(urls))
	for i, u := range urls {
		out[i] = u.Redacted()
	}
	return strings.Join(out, ",")
}

// storeName says where the rollout is kept, for the log.
func (s *server) storeName() string {
	if s.fleet != nil {
		return "etcd " + strings.Join(s.cfg.etcd.Endpoints, ",") + " prefix " + s.cfg.etcd.Prefix
	}
	return "file " + s.cfg.StateFile
}

// httpServer is a server serveHTTP runs: an *http.Server, or the traffic
// listener's server loop (*proxy.Server).
type httpServer interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
	Close() error
}

// serveHTTP is srv serving on ln as a Run-style function: it serves until
// ctx ends, then shuts srv down, waiting up to drain for in-flight requests
// (0: none) before cutting them off. With terminateTLS, srv (an
// *http.Server) terminates TLS on ln's connections (ServeTLS).
func (s *server) serveHTTP(srv httpServer, ln net.Listener, drain time.Duration, terminateTLS bool) func(context.Context) error {
	return func(ctx context.Context) error {
		served := make(chan error, 1) // Serve's one result
		go func() {
			if terminateTLS {
				served <- srv.(*http.Server).ServeTLS(ln, "", "")
			} else {
				served <- srv.Serve(ln)
			}
		}()
		select {
		case err := <-served:
			return err // it cannot be ErrServerClosed: nothing shut it down yet
		case <-ctx.Done():
		}
		shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), drain)
		defer cancel()
		if err := srv.Shutdown(shutCtx); err != nil {
			if drain > 0 {
				s.log.Warn().Err(err).Msg("in-flight requests cut off at the shutdown timeout")
			}
			srv.Close()
		}
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}
}

// reloadable is a part SIGHUP re-reads without a restart.
type reloadable interface {
	// reload re-reads the part and says what it now uses, for the log.
	reload() (what string, err error)
}

// reloadOn reloads every reloadable part on each signal from hup until ctx
// ends, and logs what it reloaded. A part that fails to reload keeps what
// it had; the process never stops for a SIGHUP.
func (s *server) reloadOn(ctx context.Context, hup <-chan os.Signal) error {
	log := s.log.With().Str("component", "reload").Logger()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-hup:
		}
		if len(s.reloadables) == 0 {
			log.Info().Msg("SIGHUP: nothing to reload (no TLS certificate, token file or webhook secret file configured); other settings need a restart")
			continue
		}
		var reloaded, failed []string
		for _, r := range s.reloadables {
			what, err := r.reload()
			if err != nil {
				failed = append(failed, err.Error())
				continue
			}
			reloaded = append(reloaded, what)
		}
		ev := log.Info()
		if len(failed) > 0 {
			ev = log.Warn().Strs("failed", failed)
		}
		ev.Strs("reloaded", reloaded).Msg("SIGHUP: reloaded " + joinOr(reloaded, "nothing") + "; other settings need a restart")
	}
}

func joinOr(items []string, none string) string {
	if len(items) == 0 {
		return none
	}
	out := items[0]
	for _, it := range items[1:] {
		out += ", " + it
	}
	return out
}

// secretFile is CANARY_WEBHOOK_SECRET_FILE, re-read on SIGHUP: a rotated
// secret signs every event and confirmation request from then on.
type secretFile struct {
	path    string
	current []byte
	hooks   integrations
}

func (f *secretFile) reload() (string, error) {
	key, err := readSecretFile(f.path)
	if err == nil {
		// The one check is SetSecret's; both take the same key, so the
		// first refuses it before the second is asked.
		if f.hooks.webhook != nil {
			err = f.hooks.webhook.SetSecret(key)
		}
		if err == nil && f.hooks.confirmer != nil {
			err = f.hooks.confirmer.SetSecret(key)
		}
	}
	if err != nil {
		return "", fmt.Errorf("webhook secret %s: %v (the previous secret stays in force)", f.path, err)
	}
	if bytes.Equal(key, f.current) {
		return "webhook secret " + f.path + " (unchanged)", nil
	}
	f.current = key
	return "webhook secret " + f.path + " (rotated)", nil
}

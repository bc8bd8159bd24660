// Package etcdtest runs a real etcd server for tests: the etcd binary
// (Debian's etcd-server package, or ETCD_BIN), one member on loopback ports
// chosen at random, with its data in a temporary folder. Tests stop, kill
// and start it again to play an outage. Without the binary a test skips,
// saying so, unless CANARY_REQUIRE_ETCD=1 (set by .ci/run), which turns the
// skip into a failure.
package etcdtest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// RequireEnv names the variable that turns a missing etcd binary into a
// test failure.
const RequireEnv = "CANARY_REQUIRE_ETCD"

// Server is one etcd member serving on a loopback client URL.
type Server struct {
	t       testing.TB
	bin     string
	dataDir string
	client  string // http://127.0.0.1:port
	peer    string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	logs *tail
}

// Binary returns the etcd binary's path, or skips t (fails it when
// CANARY_REQUIRE_ETCD=1).
func Binary(t testing.TB) string {
	t.Helper()
	bin := os.Getenv("ETCD_BIN")
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("etcd"); err != nil {
			if os.Getenv(RequireEnv) == "1" {
				t.Fatalf("etcd not found on PATH and %s=1: install Debian's etcd-server (apt-get install etcd-server) or set ETCD_BIN", RequireEnv)
			}
			t.Skipf("etcd not found on PATH: skipping (install Debian's etcd-server, or set ETCD_BIN; %s=1 makes this a failure)", RequireEnv)
		}
	}
	return bin
}

// Start runs a fresh etcd member and stops it when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{t: t, bin: Binary(t), dataDir: t.TempDir()}
	for attempt := 0; ; attempt++ {
		s.client = "http://" + freeAddr(t)
		s.peer = "http://" + freeAddr(t)
		err := s.start()
		if err == nil {
			break
		}
		if attempt == 4 {
			t.Fatalf("etcd did not start: %v", err)
		}
	}
	t.Cleanup(func() {
		s.Kill()
		if t.Failed() {
			t.Logf("etcd log (last lines):\n%s", s.logs.String())
		}
	})
	return s
}

// Endpoint is the client URL.
func (s *Server) Endpoint() string { return s.client }

// start runs the member (again, on the same folder and ports) and waits
// until it answers.
func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return errors.New("etcd already runs")
	}
	cmd := exec.Command(s.bin,
		"--name", "test",
		"--data-dir", s.dataDir,
		"--listen-client-urls", s.client,
		"--advertise-client-urls", s.client,
		"--listen-peer-urls", s.peer,
		"--initial-advertise-peer-urls", s.peer,
		"--initial-cluster", "test="+s.peer,
		"--initial-cluster-state", "new",
		"--logger", "zap",
		"--log-outputs", "stderr",
		"--log-level", "warn",
	)
	logs := newTail(64)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	s.cmd, s.done, s.logs = cmd, done, logs
	deadline := time.Now().Add(20 * time.Second)
	for {
		if ok := s.healthy(); ok {
			return nil
		}
		select {
		case <-done:
			s.cmd = nil
			return fmt.Errorf("etcd exited at start:\n%s", logs.String())
		default:
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-done
			s.cmd = nil
			return fmt.Errorf("etcd not healthy within 20s:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// healthy asks the member's /health.
func (s *Server) healthy() bool {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get(s.client + "/health")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode == http.StatusOK && strings.Contains(string(b), "true")
}

// Restart starts the member again after Stop or Kill, on the same ports
// and data.
func (s *Server) Restart() {
	s.t.Helper()
	if err := s.start(); err != nil {
		s.t.Fatalf("restart etcd: %v", err)
	}
}

// Stop ends the member with SIGTERM and waits for it.
func (s *Server) Stop() { s.signal(syscall.SIGTERM) }

// Kill ends the member with SIGKILL and waits for it.
func (s *Server) Kill() { s.signal(syscall.SIGKILL) }

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(sig)
	select {
	case <-s.done:
	case <-time.After(15 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd = nil
}

// Counter reads one counter or gauge of the member's /metrics (the sum of
// its series), e.g. etcd_server_proposals_committed_total.
func (s *Server) Counter(ctx context.Context, name string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.client+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sum, found := 0.0, false
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		if rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %q: %w", name, line, err)
		}
		sum, found = sum+v, true
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	if !found {
		return 0, fmt.Errorf("etcd /metrics has no %s", name)
	}
	return sum, nil
}

// DataDir is the member's data folder.
func (s *Server) DataDir() string { return filepath.Clean(s.dataDir) }

// freeAddr returns a loopback address whose port was free a moment ago.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// tail keeps the last lines written to it.
type tail struct {
	mu    sync.Mutex
	max   int
	lines []string
	part  string
}

func newTail(n int) *tail { return &tail{max: n} }

func (w *tail) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	text := w.part + string(p)
	parts := strings.Split(text, "\n")
	w.part = parts[len(parts)-1]
	w.lines = append(w.lines, parts[:len(parts)-1]...)
	if n := len(w.lines) - w.max; n > 0 {
		w.lines = w.lines[n:]
	}
	return len(p), nil
}

func (w *tail) String() string {
	if w == nil {
		return ""
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(append(append([]string{}, w.lines...), w.part), "\n")
}

package admin_test

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/canaryd/canaryd/admin"
)

// BenchmarkCanaryCheck measures one authenticated GET /canary_check:
// token check, routing and JSON encoding.
func BenchmarkCanaryCheck(b *testing.B) {
	ts := newTestServer(b, nil, admin.LimiterConfig{})
	req := httptest.NewRequest("GET", "/canary_check", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		ts.handler.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d", rec.Code)
		}
	}
}

// BenchmarkRejectedToken measures a wrong token from many addresses: the
// cost an attacker imposes per guess (log line, limiter bookkeeping).
func BenchmarkRejectedToken(b *testing.B) {
	ts := newTestServer(b, nil, admin.LimiterConfig{MaxAddresses: 1024})
	req := httptest.NewRequest("GET", "/canary_check", nil)
	req.Header.Set("Authorization", "Bearer wrong-token-0123456789")
	addrs := make([]string, 4096)
	for i := range addrs {
		addrs[i] = "10.0." + itoa(i/256) + "." + itoa(i%256) + ":1"
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		req.RemoteAddr = addrs[i%len(addrs)]
		i++
		rec := httptest.NewRecorder()
		ts.handler.ServeHTTP(rec, req)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

// BenchmarkTokenLookup measures one authenticated GET /dashboard/session
// with n tokens in force, presenting the last one: the lookup compares the
// hash with every token's, so its cost grows with n, not with which matches.
func BenchmarkTokenLookup(b *testing.B) {
	for _, n := range []int{1, 10, 100} {
		b.Run("tokens="+itoa(n), func(b *testing.B) {
			list := make([]admin.Token, n)
			for i := range list {
				list[i] = admin.Token{Name: "t" + itoa(i), Role: admin.RoleRead, Secret: "bench-token-0123456789-" + itoa(i)}
			}
			srv, err := admin.New(admin.Config{Tokens: list}, newFakeController(), prometheus.NewRegistry(), zerolog.Nop(), nil)
			if err != nil {
				b.Fatal(err)
			}
			h := srv.Handler()
			req := httptest.NewRequest("GET", "/dashboard/session", nil)
			req.Header.Set("Authorization", "Bearer "+list[n-1].Secret)
			b.ReportAllocs()
			for b.Loop() {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("status %d", rec.Code)
				}
			}
		})
	}
}

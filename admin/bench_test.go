package admin_test

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

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

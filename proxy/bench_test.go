package proxy_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/canaryd/canaryd/proxy"
)

func TestWindowRecordDoesNotAllocate(t *testing.T) {
	w := proxy.NewWindow(time.Minute)
	now := time.Now().UnixNano()
	allocs := testing.AllocsPerRun(1000, func() {
		now += int64(time.Millisecond)
		w.Record(now, 12*time.Millisecond, false, false)
	})
	if allocs != 0 {
		t.Errorf("window record allocates %v times; want 0", allocs)
	}
	if st := w.Read(now); st.Requests == 0 || st.Latency.Count() != st.Requests {
		t.Errorf("window read = %d requests, histogram %d; want equal and > 0", st.Requests, st.Latency.Count())
	}
}

func BenchmarkRecord(b *testing.B) {
	w := proxy.NewWindow(5 * time.Minute)
	now := time.Now().UnixNano()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		// Move time forward so slot rotation is part of the cost.
		w.Record(now+int64(i)*1000, time.Duration(i%4096)*time.Microsecond, i%100 == 0, false)
	}
}

func BenchmarkRecordParallel(b *testing.B) {
	w := proxy.NewWindow(5 * time.Minute)
	var n atomic.Int64
	base := time.Now().UnixNano()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			w.Record(base+i*1000, time.Duration(i%4096)*time.Microsecond, false, false)
		}
	})
}

func BenchmarkSnapshot(b *testing.B) {
	p, _, _, _ := newFakeProxy(b, 10, nil)
	for i := range 6000 {
		do(p, "canary", http.StatusOK, time.Duration(i%100)*time.Microsecond)
		do(p, "stable", http.StatusOK, time.Duration(i%100)*time.Microsecond)
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = p.Snapshot()
	}
}

// BenchmarkProxy is a full proxied round trip over loopback (client,
// canaryd and backend in one process), a GET on the fast path.
func BenchmarkProxy(b *testing.B) { benchmarkProxy(b, false) }

// BenchmarkProxyFastPathOff is BenchmarkProxy through the standard path
// (httputil.ReverseProxy), as CANARY_FAST_PATH=off serves it.
func BenchmarkProxyFastPathOff(b *testing.B) { benchmarkProxy(b, true) }

func benchmarkProxy(b *testing.B, fastPathOff bool) {
	body := strings.Repeat("x", 100)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, body)
	}))
	defer backend.Close()
	_, _, _, front := newRealProxy(b, proxy.Config{
		Stable: mustURL(b, backend.URL), Canary: mustURL(b, backend.URL+"/canary"), DisableFastPath: fastPathOff,
	}, 10)
	client := front.Client()
	client.Transport.(*http.Transport).MaxIdleConnsPerHost = 64
	b.ReportAllocs()
	for b.Loop() {
		resp, err := client.Get(front.URL + "/bench")
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// BenchmarkServeHTTP isolates the handler's own cost: an in-memory backend
// and a recorder, no sockets.
func BenchmarkServeHTTP(b *testing.B) {
	p, _, _, _ := newFakeProxy(b, 10, nil)
	r := httptest.NewRequest(http.MethodGet, "/x", nil)
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		p.ServeHTTP(w, r)
	}
}

// newMeasureProxy is a proxy on the real clock for the measurement path.
func newMeasureProxy(tb testing.TB) *proxy.Proxy {
	p, _, _, _ := newFakeProxy(tb, 10, func(c *proxy.Config) { c.Now = nil })
	return p
}

func TestMeasureDoesNotAllocate(t *testing.T) {
	p := newMeasureProxy(t)
	r := httptest.NewRequest(http.MethodGet, "/x", nil)
	allocs := testing.AllocsPerRun(1000, func() { p.Measure(r, http.StatusOK) })
	if allocs != 0 {
		t.Errorf("pick + record allocates %v times per request; want 0", allocs)
	}
	if s := p.Snapshot(); s.Stable.Requests+s.Canary.Requests != 1001 || s.Canary.Requests != 100 {
		t.Errorf("recorded %d stable + %d canary; want 901 + 100", s.Stable.Requests, s.Canary.Requests)
	}
}

// BenchmarkMeasure is the per-request measurement cost: Pick, two clock
// reads, the window and counter updates.
func BenchmarkMeasure(b *testing.B) {
	p := newMeasureProxy(b)
	r := httptest.NewRequest(http.MethodGet, "/x", nil)
	b.ReportAllocs()
	for b.Loop() {
		p.Measure(r, http.StatusOK)
	}
}

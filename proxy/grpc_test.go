package proxy_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/canaryd/canaryd/proxy"
)

// h2cServer serves h over plaintext HTTP/2 (and HTTP/1.1).
func h2cServer(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	s := httptest.NewUnstartedServer(h)
	s.Config.Protocols = new(http.Protocols)
	s.Config.Protocols.SetHTTP1(true)
	s.Config.Protocols.SetUnencryptedHTTP2(true)
	s.Start()
	t.Cleanup(s.Close)
	return s
}

func h2cClient() *http.Client {
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// TestGRPCStatusJudged: a gRPC answer is judged by its grpc-status, from
// its trailers or, for a trailers-only answer, its headers, whatever its
// HTTP status; the client gets headers and trailers as the backend sent
// them, over h2c both ways.
func TestGRPCStatusJudged(t *testing.T) {
	backend := h2cServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 2 {
			http.Error(w, "HTTP/2 only", http.StatusHTTPVersionNotSupported)
			return
		}
		io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("X-Backend-Header", "kept")
		kind, code, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
		switch kind {
		case "trailers":
			w.WriteHeader(http.StatusOK)
			w.Write([]byte{0, 0, 0, 0, 1, 'x'}) // one length-prefixed message
			w.Header().Set(http.TrailerPrefix+"Grpc-Status", code)
			w.Header().Set(http.TrailerPrefix+"Grpc-Message", "from the trailers")
		case "only":
			w.Header().Set("Grpc-Status", code)
			w.WriteHeader(http.StatusOK)
		case "none":
			w.WriteHeader(http.StatusOK)
			w.Write([]byte{0, 0, 0, 0, 0})
		case "http":
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	for _, tc := range []struct {
		path     string
		code     string // grpc_code label
		trailer  string // Grpc-Status the client reads in the trailers
		header   string // … or in the headers
		wantErr  bool
		httpCode int
	}{
		{"/trailers/0", "OK", "0", "", false, 200},
		{"/trailers/14", "Unavailable", "14", "", true, 200},
		{"/trailers/5", "NotFound", "5", "", false, 200},
		{"/only/14", "Unavailable", "", "14", true, 200},
		{"/only/5", "NotFound", "", "5", false, 200},
		{"/only/99", "Unknown", "", "99", true, 200},
		{"/none/", "Internal", "", "", true, 200},
		{"/http/", "Unavailable", "", "", true, 503},
	} {
		t.Run(tc.path, func(t *testing.T) {
			p, _, reg, _ := newRealProxy(t, proxy.Config{
				Stable: mustURL(t, "h2c://"+backend.Listener.Addr().String()),
				Canary: mustURL(t, refusedURL(t)),
			}, 0)
			front := h2cServer(t, p)
			req, _ := http.NewRequest(http.MethodPost, front.URL+tc.path, strings.NewReader("\x00\x00\x00\x00\x00"))
			req.Header.Set("Content-Type", "application/grpc")
			req.Header.Set("Te", "trailers")
			resp, err := h2cClient().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.ProtoMajor != 2 || resp.StatusCode != tc.httpCode {
				t.Errorf("answer %s %d; want HTTP/2 %d", resp.Proto, resp.StatusCode, tc.httpCode)
			}
			if tc.httpCode == 200 && resp.Header.Get("X-Backend-Header") != "kept" {
				t.Errorf("headers = %v; want the backend's", resp.Header)
			}
			if got := resp.Trailer.Get("Grpc-Status"); got != tc.trailer {
				t.Errorf("trailer Grpc-Status = %q; want %q", got, tc.trailer)
			}
			if tc.trailer != "" && resp.Trailer.Get("Grpc-Message") != "from the trailers" {
				t.Errorf("trailer Grpc-Message = %q; want it passed through", resp.Trailer.Get("Grpc-Message"))
			}
			if got := resp.Header.Get("Grpc-Status"); got != tc.header {
				t.Errorf("header Grpc-Status = %q; want %q", got, tc.header)
			}
			waitFor(t, "the call to be recorded", func() bool { return p.Snapshot().Stable.Requests == 1 })
			if got := p.Snapshot().Stable.Errors == 1; got != tc.wantErr {
				t.Errorf("counted as error = %v; want %v", got, tc.wantErr)
			}
			if v := metricValue(t, reg, "canary_grpc_responses_total", map[string]string{"backend": "stable", "grpc_code": tc.code}); v != 1 {
				t.Errorf("canary_grpc_responses_total{stable,%s} = %v; want 1", tc.code, v)
			}
		})
	}
}

// TestGRPCCodesConfigurable: GRPCErrorCodes decides which codes are errors.
func TestGRPCCodesConfigurable(t *testing.T) {
	backend := h2cServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Grpc-Status", "5")
		w.WriteHeader(http.StatusOK)
	}))
	codes, err := proxy.ParseGRPCCodes("NOT_FOUND")
	if err != nil {
		t.Fatal(err)
	}
	p, _, _, _ := newRealProxy(t, proxy.Config{
		Stable:         mustURL(t, "h2c://"+backend.Listener.Addr().String()),
		Canary:         mustURL(t, refusedURL(t)),
		GRPCErrorCodes: codes,
	}, 0)
	front := h2cServer(t, p)
	req, _ := http.NewRequest(http.MethodPost, front.URL+"/svc/Method", strings.NewReader("\x00\x00\x00\x00\x00"))
	req.Header.Set("Content-Type", "application/grpc+proto")
	resp, err := h2cClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(resp.Body)
	resp.Body.Close()
	waitFor(t, "the call to be recorded", func() bool { return p.Snapshot().Stable.Requests == 1 })
	if p.Snapshot().Stable.Errors != 1 {
		t.Error("NOT_FOUND is not counted as an error with GRPCErrorCodes=NOT_FOUND")
	}
}

package proxy_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"syscall"
	"testing"

	"github.com/canaryd/canaryd/proxy"
)

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "net/http: timeout awaiting response headers" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestClassify(t *testing.T) {
	dial := func(err error) error { return &net.OpError{Op: "dial", Net: "tcp", Err: err} }
	read := func(err error) error { return &net.OpError{Op: "read", Net: "tcp", Err: err} }
	tests := []struct {
		name string
		err  error
		gone bool
		want proxy.ErrorKind
	}{
		{"refused", dial(os.NewSyscallError("connect", syscall.ECONNREFUSED)), false, proxy.KindConnect},
		{"dns", dial(&net.DNSError{Err: "no such host", Name: "canary.invalid", IsNotFound: true}), false, proxy.KindDNS},
		{"dial timeout", dial(timeoutErr{}), false, proxy.KindConnect},
		{"bad record", tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, false, proxy.KindTLS},
		{"unknown authority", &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}, false, proxy.KindTLS},
		{"handshake alert", fmt.Errorf("remote error: %w", tls.AlertError(40)), false, proxy.KindTLS},
		{"header timeout", timeoutErr{}, false, proxy.KindTimeout},
		{"deadline", fmt.Errorf("round trip: %w", context.DeadlineExceeded), false, proxy.KindTimeout},
		{"reset", read(os.NewSyscallError("read", syscall.ECONNRESET)), false, proxy.KindReset},
		{"closed early", &url.Error{Op: "Get", URL: "http://x", Err: io.EOF}, false, proxy.KindReset},
		{"unexpected eof", io.ErrUnexpectedEOF, false, proxy.KindReset},
		{"client gone", context.Canceled, true, proxy.KindCanceled},
		{"canceled, client still there", context.Canceled, false, proxy.KindOther},
		{"other", errors.New("malformed HTTP response"), false, proxy.KindOther},
	}
	for _, tt := range tests {
		if got := proxy.Classify(tt.err, tt.gone); got != tt.want {
			t.Errorf("%s: Classify(%v, %v) = %v; want %v", tt.name, tt.err, tt.gone, got, tt.want)
		}
	}
}

// TestHTTPSBackend proxies to an HTTP/2 TLS backend with a path prefix,
// trusting it through Config.TLSClientConfig.
func TestHTTPSBackend(t *testing.T) {
	backend := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s", r.Proto, r.URL.Path)
	}))
	backend.EnableHTTP2 = true
	backend.StartTLS()
	defer backend.Close()
	pool := x509.NewCertPool()
	pool.AddCert(backend.Certificate())
	_, _, _, front := newRealProxy(t, proxy.Config{
		Stable: mustURL(t, backend.URL+"/v1"), Canary: mustURL(t, "http://127.0.0.1:1"),
		TLSClientConfig: &tls.Config{RootCAs: pool},
	}, 0)
	resp, err := front.Client().Get(front.URL + "/items")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if got, want := string(body), "HTTP/2.0 /v1/items"; resp.StatusCode != 200 || got != want {
		t.Errorf("answer = %d %q; want 200 %q", resp.StatusCode, got, want)
	}
}

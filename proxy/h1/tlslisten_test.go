package h1_test

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/canaryd/canaryd/proxy/h1"
)

// tlsServer serves h over a TLSListener on loopback, as canaryd's traffic
// listener does, with httptest's certificate.
func tlsServer(t *testing.T, h http.HandlerFunc, handshake time.Duration) (addr string, ln net.Listener) {
	t.Helper()
	cert := httptest.NewTLSServer(http.NotFoundHandler())
	tc := cert.TLS.Clone()
	cert.Close()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln = h1.TLSListener(raw, tc, handshake, h1.GuardConfig{})
	srvConfig := tc.Clone()
	srvConfig.NextProtos = []string{"h2", "http/1.1"}
	srv := &http.Server{Handler: h, TLSConfig: srvConfig, ConnContext: h1.ConnContext, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return raw.Addr().String(), ln
}

// tlsProto answers with the protocol and whether the handler can see TLS.
func tlsProto(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	st := r.TLS
	if st == nil {
		st = h1.TLSState(r.Context())
	}
	if st == nil {
		io.WriteString(w, r.Proto+" no TLS")
		return
	}
	io.WriteString(w, r.Proto+" TLS "+st.NegotiatedProtocol)
}

func TestTLSListener(t *testing.T) {
	addr, _ := tlsServer(t, tlsProto, 5*time.Second)
	insecure := &tls.Config{InsecureSkipVerify: true}

	t.Run("HTTP/2 goes to net/http as a *tls.Conn", func(t *testing.T) {
		tr := &http.Transport{TLSClientConfig: insecure, ForceAttemptHTTP2: true}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr}).Get("https://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "HTTP/2.0 TLS h2" {
			t.Errorf("answer %q; want HTTP/2.0 TLS h2", b)
		}
	})
	t.Run("HTTP/1.1 is guarded and keeps its TLS state", func(t *testing.T) {
		for _, tc := range []struct{ raw, want string }{
			{"GET / HTTP/1.1\r\nHost: a\r\n\r\n", "200"},
			{"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "400"},
			{"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nX\r\n0\r\n\r\n", "400"},
		} {
			c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
			if err != nil {
				t.Fatal(err)
			}
			c.SetDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(c, tc.raw)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			c.Close()
			if err != nil {
				t.Fatalf("%.30q: %v", tc.raw, err)
			}
			b, _ := io.ReadAll(resp.Body)
			if got := resp.Status[:3]; got != tc.want {
				t.Errorf("%.30q: status %s; want %s", tc.raw, got, tc.want)
			}
			if tc.want == "200" && string(b) != "HTTP/1.1 TLS http/1.1" {
				t.Errorf("answer %q; want HTTP/1.1 TLS http/1.1", b)
			}
		}
	})
	t.Run("plain HTTP on the TLS port", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
		b, _ := io.ReadAll(c)
		if !strings.HasPrefix(string(b), "HTTP/1.0 400 Bad Request") {
			t.Errorf("answer %q; want net/http's 400", b)
		}
	})
}

// A client that never completes its handshake holds up no one, is cut
// off at the handshake timeout, and Close does not wait for it.
func TestTLSListenerSlowHandshake(t *testing.T) {
	addr, ln := tlsServer(t, tlsProto, 300*time.Millisecond)
	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("https://" + addr + "/")
	if err != nil {
		t.Fatalf("a request behind a silent client: %v", err)
	}
	resp.Body.Close()
	silent.SetReadDeadline(time.Now().Add(5 * time.Second))
	begin := time.Now()
	if _, err := silent.Read(make([]byte, 1)); err == nil {
		t.Error("the silent client got data; want its connection closed")
	} else if d := time.Since(begin); d > 3*time.Second {
		t.Errorf("the silent client was cut off after %v; want about 300ms", d)
	}
	another, _ := net.Dial("tcp", addr)
	defer another.Close()
	done := make(chan error, 1)
	go func() { done <- ln.Close() }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("Close waited for a handshake in flight")
	}
}

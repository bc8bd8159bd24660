package h1_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/canaryd/canaryd/proxy/h1"
)

// guardedH2C serves h over HTTP/1.1 and plaintext HTTP/2 on a guarded
// listener that lets the HTTP/2 preface through (AllowH2C).
func guardedH2C(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, Protocols: new(http.Protocols)}
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	go srv.Serve(h1.GuardListener(ln, h1.GuardConfig{AllowH2C: true}))
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// TestGuardH2C: with AllowH2C a connection opening with the HTTP/2 preface
// is served as HTTP/2; HTTP/1.1 on the same listener stays guarded, bytes
// arriving one at a time included (a request starting like the preface,
// "P…", is scanned whole once it departs from it); the preface later in a
// connection, or a PRI request that is not the preface, is still refused.
func TestGuardH2C(t *testing.T) {
	addr := guardedH2C(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		io.WriteString(w, r.Proto+" "+string(b))
	})
	t.Run("h2c client", func(t *testing.T) {
		tr := &http.Transport{Protocols: new(http.Protocols)}
		tr.Protocols.SetUnencryptedHTTP2(true)
		defer tr.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/", strings.NewReader("body"))
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "HTTP/2.0 body" {
			t.Errorf("h2c POST = %d %q; want 200 %q", resp.StatusCode, b, "HTTP/2.0 body")
		}
	})
	for _, tc := range []struct {
		name, raw string
		step      int
		want      []int
	}{
		{"HTTP/1.1 POST byte by byte", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nok", 1, []int{200}},
		{"smuggling POST byte by byte", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 1, []int{400}},
		{"smuggling POST at once", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 4096, []int{400}},
		{"PRI head that is not the preface", "PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n", 1, []int{400}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resps := exchangeRaw(t, addr, tc.raw, tc.step, len(tc.want))
			if len(resps) != len(tc.want) {
				t.Fatalf("%d answers; want %v", len(resps), tc.want)
			}
			for i, resp := range resps {
				if resp.StatusCode != tc.want[i] {
					t.Errorf("answer %d = %d; want %d", i, resp.StatusCode, tc.want[i])
				}
			}
		})
	}
	t.Run("preface after a request", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		for i, tc := range []struct {
			raw  string
			want int
		}{{"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 200}, {"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400}} {
			io.WriteString(c, tc.raw)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
			io.Copy(io.Discard, resp.Body)
			if resp.StatusCode != tc.want {
				t.Errorf("request %d = %d; want %d", i, resp.StatusCode, tc.want)
			}
		}
	})
}

package h1_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/canaryd/canaryd/proxy/h1"
)

// guarded serves h on a guarded loopback listener and returns its address
// and the reasons of the guard's refusals so far.
func guarded(t *testing.T, h http.HandlerFunc) (addr string, reasons func() []string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu  sync.Mutex
		got []string
	)
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(h1.GuardListener(ln, h1.GuardConfig{Rejected: func(r string) {
		mu.Lock()
		got = append(got, r)
		mu.Unlock()
	}}))
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), got...)
	}
}

// exchangeRaw writes raw to addr in pieces of step bytes and reads the
// answers until want of them are in or the connection ends.
func exchangeRaw(t *testing.T, addr, raw string, step, want int) []*http.Response {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	go func() {
		for i := 0; i < len(raw); i += step {
			c.Write([]byte(raw[i:min(i+step, len(raw))]))
			if step < 64 && len(raw) < 1000 {
				time.Sleep(50 * time.Microsecond)
			}
		}
	}()
	br := bufio.NewReader(c)
	var out []*http.Response
	for len(out) < want {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			break
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body = io.NopCloser(strings.NewReader(string(body)))
		if resp.StatusCode != http.StatusContinue {
			out = append(out, resp)
		}
	}
	return out
}

func echo(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	w.Write(b)
}

// Valid traffic passes the guard unchanged, however it is split into reads.
func TestGuardPassesValidTraffic(t *testing.T) {
	addr, reasons := guarded(t, echo)
	cases := []struct{ name, raw, second string }{
		{"chunk extensions and trailer", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;name=\"v;x\"\r\nabc\r\n0;e\r\nX-T: 1\r\n\r\n", "abc"},
		{"pipelined Content-Length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc", "abc"},
		{"HTTP/1.0 keep-alive", "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", ""},
		{"large field", "GET / HTTP/1.1\r\nHost: a\r\nCookie: " + strings.Repeat("x", 20000) + "\r\nContent-Length: 0\r\n\r\n", ""},
		{"100-continue", "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi", "hi"},
		{"CRLF after a POST", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nok\r\n", "ok"},
		{"upper-case hex, leading zeros", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n00A\r\n0123456789\r\n0\r\n\r\n", "0123456789"},
		{"bytes above 0x7f in a value", "GET / HTTP/1.1\r\nHost: a\r\nX-Obs: caf\xc3\xa9\r\n\r\n", ""},
	}
	for _, tc := range cases {
		raw := tc.raw + "GET / HTTP/1.1\r\nHost: a\r\n\r\n"
		for _, step := range []int{1, 7, 1000, len(raw)} {
			got := exchangeRaw(t, addr, raw, step, 2)
			if len(got) != 2 || got[0].StatusCode != 200 || got[1].StatusCode != 200 {
				t.Errorf("%s, reads of %d: %d answers, reasons %v; want 2 × 200", tc.name, step, len(got), reasons())
				continue
			}
			if b, _ := io.ReadAll(got[0].Body); string(b) != tc.second {
				t.Errorf("%s, reads of %d: body %q; want %q", tc.name, step, b, tc.second)
			}
		}
	}
	if r := reasons(); len(r) != 0 {
		t.Errorf("valid traffic refused: %v", r)
	}
}

// Ambiguous framing is answered 400 with a JSON error, whatever the reads.
// A refused head never reaches the handler; a refused body never reaches
// it whole (the handler's read fails).
func TestGuardRefusesAmbiguousFraming(t *testing.T) {
	var whole atomic.Int64
	addr, _ := guarded(t, func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err == nil {
			whole.Add(1)
		}
	})
	for _, tc := range []struct{ name, raw string }{
		{"CL and TE", "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{"conflicting CL", "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde"},
		{"signed CL", "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: +4\r\n\r\nabcd"},
		{"obs-fold", "GET /x HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n"},
		{"TE not chunked", "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"},
		{"two TE fields", "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{"TE on HTTP/1.0", "POST /x HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		{"space before colon", "GET /x HTTP/1.1\r\nHost: a\r\nContent-Length : 0\r\n\r\n"},
		{"bare LF", "GET /lf HTTP/1.1\nHost: a\n\n"},
		{"bare LF after CRLF lines", "GET /lf HTTP/1.1\r\nHost: a\n\r\n"},
		{"chunk size +1", "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n+1\r\nX\r\n0\r\n\r\n"},
		{"chunk size -0", "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n-0\r\n\r\n"},
		{"chunk size 0x1", "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0x1\r\nX\r\n0\r\n\r\n"},
		{"chunk size with space", "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1 ;x\r\nX\r\n0\r\n\r\n"},
		{"chunk size zz", "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nX\r\n0\r\n\r\n"},
		{"chunk line ends in LF", "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\nX\r\n0\r\n\r\n"},
		{"chunk data too long", "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nXY\r\n0\r\n\r\n"},
		{"obs-fold in a trailer", "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-T: 1\r\n t\r\n\r\n"},
		{"HTTP/2 prior knowledge", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"},
	} {
		for _, step := range []int{1, len(tc.raw)} {
			got := exchangeRaw(t, addr, tc.raw, step, 1)
			if len(got) != 1 || got[0].StatusCode != http.StatusBadRequest {
				t.Errorf("%s, reads of %d: %d answers; want one 400", tc.name, step, len(got))
				continue
			}
			var e struct{ Error string }
			if err := json.NewDecoder(got[0].Body).Decode(&e); err != nil || e.Error == "" || got[0].Header.Get("Content-Type") != "application/json" {
				t.Errorf("%s: the 400 is not a JSON error: %v %q", tc.name, err, e.Error)
			}
		}
	}
	if n := whole.Load(); n != 0 {
		t.Errorf("%d refused requests reached the handler whole", n)
	}
}

// The guard stays on after a CONNECT (answered 2xx here) and after an
// upgrade the server refused: only a 101 makes the connection another
// protocol's.
func TestGuardStaysOnWithoutA101(t *testing.T) {
	addr, _ := guarded(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	for _, first := range []string{
		"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: foo\r\nConnection: upgrade\r\n\r\n",
	} {
		got := exchangeRaw(t, addr, first+"GET /x HTTP/1.1\r\nHost: a\nX-Bare: lf\r\n\r\n", len(first), 2)
		if len(got) != 2 || got[0].StatusCode != 200 || got[1].StatusCode != http.StatusBadRequest {
			t.Errorf("after %.20q: %d answers; want 200 then 400", first, len(got))
		}
	}
}

// After a 101 the bytes are another protocol's and pass unchecked.
func TestGuardOpaqueAfterSwitchingProtocols(t *testing.T) {
	addr, reasons := guarded(t, func(w http.ResponseWriter, r *http.Request) {
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		buf := make([]byte, 64)
		n, _ := brw.Read(buf)
		c.Write(buf[:n])
	})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
	br := bufio.NewReader(c)
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	frame := "frame\nwith\x00bare LF\n"
	io.WriteString(c, frame)
	got := make([]byte, len(frame))
	if _, err := io.ReadFull(br, got); err != nil || string(got) != frame {
		t.Errorf("echo after the upgrade: %q %v; want %q (reasons %v)", got, err, frame, reasons())
	}
}

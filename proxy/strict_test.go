package proxy_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/canaryd/canaryd/proxy"
)

func TestStrictAcceptsValidTraffic(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	var reasons []string
	sln := proxy.StrictListener(ln, func(r string) { reasons = append(reasons, r) })
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "ok")
	})}
	go srv.Serve(sln)
	defer srv.Close()
	cases := map[string]string{
		"chunk-ext+trailer": "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;name=\"v;x\"\r\nabc\r\n0;e\r\nX-T: 1\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"pipelined CL":      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"http1.0 ka":        "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"big header":        "GET / HTTP/1.1\r\nHost: a\r\nCookie: " + strings.Repeat("x", 20000) + "\r\nContent-Length: 0\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"expect":            "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhiGET / HTTP/1.1\r\nHost: a\r\n\r\n",
	}
	for name, raw := range cases {
		for _, step := range []int{1, 7, 1000, len(raw)} {
			reasons = nil
			c, _ := net.Dial("tcp", ln.Addr().String())
			go func() {
				for i := 0; i < len(raw); i += step {
					c.Write([]byte(raw[i:min(i+step, len(raw))]))
					if step > 7 || len(raw) < 1000 {
						time.Sleep(time.Millisecond / 10)
					}
				}
			}()
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			br := bufio.NewReader(c)
			ok := 0
			for ok < 2 {
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					break
				}
				io.Copy(io.Discard, resp.Body)
				if resp.StatusCode == 200 {
					ok++
				} else if resp.StatusCode != 100 {
					t.Errorf("%s step %d: status %d %v", name, step, resp.StatusCode, reasons)
					break
				}
			}
			if ok != 2 {
				t.Errorf("%s step %d: %d ok answers, reasons %v", name, step, ok, reasons)
			}
			c.Close()
		}
	}
}

package proxy_test

import (
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/canaryd/canaryd/proxy"
)

func TestStatusBelow100Answers502(t *testing.T) {
	var n atomic.Int64
	url, _ := rawBackend(t, func(c net.Conn) {
		readRequests(c, func(*http.Request) bool {
			if n.Add(1) == 1 {
				io.WriteString(c, "HTTP/1.1 099 Odd\r\nContent-Length: 0\r\n\r\n")
				return false // backend closes at once
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			return true
		})
	})
	p, front := stableOnly(t, url, func(c *proxy.Config) { c.MaxConnsPerBackend = 1 })
	cl := &http.Client{Timeout: 2 * time.Second}
	if r, err := cl.Get(front.URL + "/a"); err == nil {
		r.Body.Close()
	}
	time.Sleep(300 * time.Millisecond)
	s := p.Snapshot()
	t.Logf("after 099: stable requests=%d errors=%d", s.Stable.Requests, s.Stable.Errors)
	if _, err := cl.Get(front.URL + "/b"); err != nil {
		t.Fatalf("request long after the backend closed: %v", err)
	}
}

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

// A final status below 100 (http.ReadResponse accepts "099") is answered
// 502 and counted as the backend's error; its connection and slot of the
// cap are freed, so the next request (cap 1) gets through although the
// backend keeps the bad connection open.
func TestStatusBelow100FreesTheSlot(t *testing.T) {
	var n atomic.Int64
	url, _ := rawBackend(t, func(c net.Conn) {
		readRequests(c, func(*http.Request) bool {
			if n.Add(1) == 1 {
				io.WriteString(c, "HTTP/1.1 099 Odd\r\nContent-Length: 0\r\n\r\n")
				time.Sleep(3 * time.Second) // keep conn open
				return false
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			return true
		})
	})
	p, front := stableOnly(t, url, func(c *proxy.Config) { c.MaxConnsPerBackend = 1 })
	cl := &http.Client{Timeout: 1500 * time.Millisecond}
	resp, err := cl.Get(front.URL + "/a")
	if err != nil {
		t.Fatalf("a 099 answer: %v; want 502", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("a 099 answer: status %d; want 502", resp.StatusCode)
	}
	if s := p.Snapshot(); s.Stable.Errors != 1 {
		t.Errorf("stable errors after a 099 answer = %d; want 1", s.Stable.Errors)
	}
	resp, err = cl.Get(front.URL + "/b")
	if err != nil {
		t.Fatalf("second request after a 099 answer: %v (slot leaked)", err)
	}
	resp.Body.Close()
}

// A request retried on a fresh connection (its reused one died) does not
// wait behind idle connections that hold every slot of the cap: it closes
// one to free a slot.
func TestFreshRetryDoesNotStarve(t *testing.T) {
	url, _ := rawBackend(t, func(c net.Conn) {
		i := 0
		readRequests(c, func(*http.Request) bool {
			i++
			if i == 2 {
				time.Sleep(300 * time.Millisecond)
				return false // close without answering
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			return true
		})
	})
	_, front := stableOnly(t, url, func(c *proxy.Config) { c.MaxConnsPerBackend = 1 })
	cl := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	resp, _ := get(t, cl, "GET", front.URL+"/warm", nil)
	_ = resp
	errA := make(chan error, 1)
	go func() {
		r, err := cl.Get(front.URL + "/A")
		if err == nil {
			r.Body.Close()
		}
		errA <- err
	}()
	time.Sleep(100 * time.Millisecond)
	get(t, cl, "GET", front.URL+"/B", nil) // queued in waitSlot, takes A's freed slot
	select {
	case err := <-errA:
		if err != nil {
			t.Fatalf("A: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("A (retried on a fresh connection) still waiting 2s later, while an idle connection sits in the stack")
	}
}

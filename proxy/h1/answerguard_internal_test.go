package h1

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// guardedClient is an http.Client over a Transport of the standard path's
// shape: dialing through GuardDial and the limiter, requests through
// GuardAnswers.
func guardedClient(t *testing.T) *http.Client {
	t.Helper()
	tr := &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}
	d := &net.Dialer{Timeout: 5 * time.Second}
	tr.DialContext = NewLimiter(64, tr.CloseIdleConnections).DialContext(GuardDial(d.DialContext))
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: GuardAnswers(tr), Timeout: 10 * time.Second}
}

// An answer padded to the Transport's 4 KiB read buffer, then poison in the
// same write: the unasked bytes wait in the socket when the answer is done.
func poisoned(c net.Conn, method string) {
	const size = 4096
	if method == http.MethodHead {
		head := "HTTP/1.1 200 OK\r\nContent-Length: " + strconv.Itoa(len(poison)) + "\r\nX-Pad: "
		io.WriteString(c, head+strings.Repeat("p", size-len(head)-4)+"\r\n\r\n"+poison)
		return
	}
	head := "HTTP/1.1 200 OK\r\nContent-Length: 4\r\nX-Pad: "
	io.WriteString(c, head+strings.Repeat("p", size-4-len(head)-4)+"\r\n\r\nlate"+poison)
}

// Under steady load, no request through the guarded Transport gets bytes
// sent after another request's answer: idempotent ones all get their own
// answer (the Transport sends them again on another connection when a
// write is refused), others their own answer or an error, never another's.
func TestAnswerGuardKeepsUnaskedBytesFromTheNextRequest(t *testing.T) {
	url, _ := rawBackend(t, func(c net.Conn) {
		answer(c, func(r *http.Request) bool {
			if strings.HasPrefix(r.URL.Path, "/poison") {
				poisoned(c, r.Method)
				return true
			}
			body, _ := io.ReadAll(r.Body)
			id := r.URL.Path + string(body)
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(id), id)
			return true
		})
	})
	client := guardedClient(t)
	var mixed, failedGets, posts, failedPosts atomic.Int64
	stop := make(chan struct{})
	var hostile sync.WaitGroup
	for _, method := range []string{http.MethodHead, http.MethodGet} {
		hostile.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest(method, url+"/poison", nil)
				if resp, err := client.Do(req); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		})
	}
	var wellBehaved sync.WaitGroup
	for w := range 8 {
		wellBehaved.Go(func() {
			for i := range 100 {
				id := fmt.Sprintf("/id/%d-%d", w, i)
				var (
					resp *http.Response
					err  error
					want = id
				)
				if i%2 == 0 {
					resp, err = client.Get(url + id)
				} else {
					posts.Add(1)
					want = id + "body"
					resp, err = client.Post(url+id, "text/plain", strings.NewReader("body"))
				}
				if err != nil {
					if i%2 == 0 {
						failedGets.Add(1)
					} else {
						failedPosts.Add(1)
					}
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if string(b) != want {
					mixed.Add(1)
				}
			}
		})
	}
	wellBehaved.Wait()
	close(stop)
	hostile.Wait()
	if mixed.Load() != 0 || failedGets.Load() != 0 {
		t.Errorf("of 800 requests: %d got bytes that were not their answer, %d GETs failed; want 0 and 0", mixed.Load(), failedGets.Load())
	}
	t.Logf("%d of %d POSTs failed (a refused write on a spoilt connection)", failedPosts.Load(), posts.Load())
	if failedPosts.Load() > posts.Load()/10 {
		t.Errorf("%d of %d POSTs failed; want a few at most (a refused write on a spoilt connection)", failedPosts.Load(), posts.Load())
	}
}

// An idle connection the backend closes is let go as before (the read
// loop's wait ends with io.EOF), and a connection is reused while the
// backend keeps it: the guard costs no connections.
func TestAnswerGuardReusesAndNoticesClose(t *testing.T) {
	closeAfter := make(chan net.Conn, 1)
	url, conns := rawBackend(t, func(c net.Conn) {
		answer(c, func(r *http.Request) bool {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			if r.URL.Path == "/bye" {
				closeAfter <- c
			}
			return true
		})
	})
	client := guardedClient(t)
	get := func(path string) {
		t.Helper()
		resp, err := client.Get(url + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "ok" {
			t.Fatalf("GET %s: %q", path, b)
		}
	}
	for range 5 {
		get("/")
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("5 sequential requests used %d connections; want 1", n)
	}
	get("/bye")
	(<-closeAfter).Close() // the backend closes the idle connection
	time.Sleep(50 * time.Millisecond)
	get("/")
	if n := conns.Load(); n != 2 {
		t.Errorf("after the backend closed the idle connection: %d connections; want 2", n)
	}
	// A request with a body reaches the backend too (the first write of a
	// request looks into the socket, then sends).
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, url+"/", strings.NewReader("x"))
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

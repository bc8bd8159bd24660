// Command slowclients measures whether slow uploaders can starve a proxy's
// upstream connections (scripts/slow-uploads.sh runs it against canaryd).
//
//	slowclients serve -listen ADDR
//	    a backend that reads every body whole and answers "ok"
//	slowclients attack -target URL -small N -large N -drip 5s -duration 30s -rate 50
//	    opens N slow uploads of each kind, then sends ordinary requests (a
//	    GET and a 1 KiB POST, alternately) at -rate per second for -duration
//	    and reports how many succeeded and their latency
//
// A small slow upload announces 1,000 bytes and sends one byte per -drip; a
// large one announces 1 MiB, sends 64 KiB and 10 bytes at once, then one byte
// per -drip.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: slowclients serve|attack [flags]")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "serve":
		fs := flag.NewFlagSet("serve", flag.ExitOnError)
		listen := fs.String("listen", "127.0.0.1:18181", "address")
		fs.Parse(os.Args[2:])
		srv := &http.Server{Addr: *listen, ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			io.WriteString(w, "ok")
		})}
		fmt.Fprintln(os.Stderr, srv.ListenAndServe())
		os.Exit(1)
	case "attack":
		attack(os.Args[2:])
	default:
		fmt.Fprintln(os.Stderr, "usage: slowclients serve|attack [flags]")
		os.Exit(2)
	}
}

// dripper is one slow upload; it counts how its connection ended.
type outcome struct {
	answered map[string]int // by status line
	closed   int
	mu       sync.Mutex
}

func (o *outcome) add(status string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if status == "" {
		o.closed++
		return
	}
	o.answered[status]++
}

func attack(args []string) {
	fs := flag.NewFlagSet("attack", flag.ExitOnError)
	target := fs.String("target", "http://127.0.0.1:18091", "the proxy")
	small := fs.Int("small", 1100, "slow uploads of a small body")
	large := fs.Int("large", 0, "slow uploads of a large body (64 KiB sent at once)")
	drip := fs.Duration("drip", 5*time.Second, "one byte every")
	duration := fs.Duration("duration", 30*time.Second, "how long to measure ordinary requests")
	rate := fs.Int("rate", 50, "ordinary requests per second")
	fs.Parse(args)
	u, err := url.Parse(*target)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, stop := context.WithCancel(context.Background())
	out := &outcome{answered: map[string]int{}}
	var opened atomic.Int64
	var wg sync.WaitGroup
	start := func(head, first string) {
		wg.Go(func() {
			c, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
			if err != nil {
				out.add("")
				return
			}
			defer c.Close()
			opened.Add(1)
			if _, err := io.WriteString(c, head+first); err != nil {
				out.add("")
				return
			}
			answer := make(chan string, 1)
			go func() {
				line, _ := bufio.NewReader(c).ReadString('\n')
				answer <- strings.TrimSpace(line)
			}()
			t := time.NewTicker(*drip)
			defer t.Stop()
			for {
				select {
				case s := <-answer:
					out.add(s)
					return
				case <-ctx.Done():
					return
				case <-t.C:
					if _, err := io.WriteString(c, "x"); err != nil {
						out.add(<-answer)
						return
					}
				}
			}
		})
	}
	for range *small {
		start("POST /slow HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n", "x")
	}
	for range *large {
		start("POST /slow HTTP/1.1\r\nHost: a\r\nContent-Length: 1048576\r\n\r\n", strings.Repeat("y", 64<<10+10))
	}
	time.Sleep(2 * time.Second) // the slow uploads are in
	fmt.Printf("slow uploads: %d small, %d large, %d connected, one byte every %v\n", *small, *large, opened.Load(), *drip)

	cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	var (
		mu     sync.Mutex
		lat    = map[string][]time.Duration{}
		failed = map[string]int{}
		reqs   sync.WaitGroup
	)
	tick := time.NewTicker(time.Second / time.Duration(*rate))
	end := time.After(*duration)
	for i := 0; ; i++ {
		select {
		case <-tick.C:
		case <-end:
			tick.Stop()
			reqs.Wait()
			stop()
			report(lat, failed, out, *duration)
			wg.Wait()
			return
		}
		kind := "GET"
		if i%2 == 1 {
			kind = "POST 1 KiB"
		}
		reqs.Go(func() {
			begin := time.Now()
			var resp *http.Response
			var err error
			if kind == "GET" {
				resp, err = cl.Get(*target + "/get")
			} else {
				resp, err = cl.Post(*target+"/post", "text/plain", strings.NewReader(strings.Repeat("p", 1024)))
			}
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed[kind]++
				return
			}
			lat[kind] = append(lat[kind], time.Since(begin))
		})
	}
}

func report(lat map[string][]time.Duration, failed map[string]int, out *outcome, d time.Duration) {
	fmt.Printf("ordinary requests over %v:\n", d)
	fmt.Println("| request | sent | ok | failed | p50 ms | p99 ms | max ms |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|")
	for _, kind := range []string{"GET", "POST 1 KiB"} {
		l := lat[kind]
		slices.Sort(l)
		q := func(p float64) float64 {
			if len(l) == 0 {
				return 0
			}
			return float64(l[min(int(p*float64(len(l))), len(l)-1)].Microseconds()) / 1000
		}
		fmt.Printf("| %s | %d | %d | %d | %.1f | %.1f | %.1f |\n", kind, len(l)+failed[kind], len(l), failed[kind], q(0.5), q(0.99), q(1))
	}
	out.mu.Lock()
	defer out.mu.Unlock()
	fmt.Printf("slow uploads ended meanwhile: %v answered, %d closed without an answer\n", out.answered, out.closed)
}

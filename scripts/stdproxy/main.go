// Command stdproxy is the standard-library floor for scripts/bench-load.sh:
// a bare httputil.ReverseProxy with a tuned Transport, splitting 90/10 with
// the same exact counter as canaryd, measuring nothing. It is a benchmark
// contestant, not part of canaryd.
//
// Usage: stdproxy LISTEN STABLE_URL CANARY_URL
package main

import (
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"sync/atomic"
	"time"
)

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: stdproxy LISTEN STABLE_URL CANARY_URL")
		os.Exit(2)
	}
	var proxies [2]*httputil.ReverseProxy
	for i, raw := range os.Args[2:] {
		target, err := url.Parse(raw)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		proxies[i] = &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.SetURL(target)
				pr.SetXForwarded()
			},
			Transport: &http.Transport{
				MaxIdleConns:        0,
				MaxIdleConnsPerHost: 512,
				IdleConnTimeout:     90 * time.Second,
			},
		}
	}
	var n atomic.Uint64
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := (n.Add(1) - 1) % 10000
		b := 0
		if (i+1)*1000/10000 > i*1000/10000 { // 10%, exactly
			b = 1
		}
		proxies[b].ServeHTTP(w, r)
	})
	srv := &http.Server{Addr: os.Args[1], Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintln(os.Stderr, srv.ListenAndServe())
	os.Exit(1)
}

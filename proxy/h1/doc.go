// Package h1 holds every byte-level HTTP/1.1 concern of canaryd's request
// path, fenced off from the rest of package proxy, which alone imports it.
//
// On the client side:
//   - ParseRequestHead (request.go), a strict request-head parser, and the
//     framing guard built on it (guard.go): GuardListener wraps a
//     plain-HTTP listener, TLSListener terminates TLS itself so that
//     HTTP/1.1 over TLS is guarded too (tlslisten.go). A request with
//     ambiguous framing is answered 400 before net/http has read it whole.
//     With GuardConfig.AllowH2C, a connection that opens with the HTTP/2
//     preface passes to net/http's plaintext HTTP/2 server unguarded.
//   - Server (server.go), the server loop for plaintext connections:
//     each request head is read into a reused buffer and parsed once, by
//     ParseRequestHead, into the *http.Request net/http would make of it
//     (serverrequest.go, whose bodies follow the guard's framing rules),
//     served in the connection's goroutine and answered by a writer with
//     net/http's semantics (serverwriter.go); a client's disconnect is
//     watched for only once someone waits on the request's context
//     (servercontext.go). What it does not serve (upgrades, the HTTP/2
//     preface, anything unusual) it hands to a net/http server, through
//     the guard. FuzzServerRequest holds its requests to
//     http.ReadRequest's.
//
// On the backend side, the fast path for bodiless requests:
//   - Limiter (limiter.go) caps the connections open to one backend, for
//     the pools and for http.Transport.DialContext alike, with one FIFO of
//     waiters and no polling;
//   - Pool (pool.go) keeps one endpoint's keep-alive connections, checked
//     for unread bytes at every reuse (Pool.Retire drops the pool of an
//     endpoint that left its backend), and Pool.Exchange (exchange.go)
//     sends a request over one and relays the answer in the caller's
//     goroutine;
//   - Target.AppendRequest (outbound.go) writes the request exactly as
//     httputil.ReverseProxy would send it, and the answer's head is read
//     bounded in size and time and parsed (response.go).
//
// One hop-by-hop list (hop.go) and one set of token validators (tokens.go)
// serve all of it; code adapted from the standard library is in
// stdlib.go. Each private parser is fuzzed against net/http's
// (fuzz_test.go, with seed corpora under testdata/fuzz).
package h1

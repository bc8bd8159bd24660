package proxy

import (
	"net/http"
	"strings"
)

// gRPC.
//
// A gRPC call is an HTTP/2 POST with Content-Type application/grpc (or
// application/grpc+proto, …), streaming messages both ways, whose outcome
// is not its HTTP status (200 for a failed call too) but its grpc-status:
// in the trailers after the answer's messages, or in the headers of an
// answer without messages (trailers-only). It reaches an h2c:// or https://
// backend through the standard path, whose HTTP/2 Transport and
// ReverseProxy keep headers, trailers and flow control (a stream is copied
// as it comes, each side's window opening as the other side reads).
//
// What canaryd does differently for a call:
//   - Its request body is not read ahead (see body.go): the client may wait
//     for an answer before it sends more, so waiting for RequestBuffer bytes
//     would stall the call; nor does it take an upload token, since an
//     HTTP/2 stream holds no connection of its own.
//   - Its outcome is its gRPC status: grpcStatus reads grpc-status from the
//     answer's headers or trailers as the client sees them; the codes in
//     Config.GRPCErrorCodes are errors. A call the client cancels is
//     CANCELLED, not an error. An answer without grpc-status is INTERNAL
//     with HTTP 200 (as gRPC clients take it), or the code gRPC maps its
//     HTTP status to (404 is UNIMPLEMENTED, 503 UNAVAILABLE, …).
//   - Its latency is the time to its answer's headers, which gRPC servers
//     send with a unary call's answer: the call's latency; for a stream, the
//     time to its first answer, not the stream's lifetime (which, like a
//     WebSocket's, is no response time).

// isGRPC reports whether r is a gRPC call.
func isGRPC(r *http.Request) bool {
	if r.ProtoMajor < 2 {
		return false
	}
	ct := r.Header["Content-Type"]
	return len(ct) > 0 && isGRPCContentType(ct[0])
}

func isGRPCContentType(ct string) bool {
	const prefix = "application/grpc"
	if len(ct) < len(prefix) || !strings.EqualFold(ct[:len(prefix)], prefix) {
		return false
	}
	// application/grpc, application/grpc+proto, application/grpc;…, but
	// not application/grpc-web (HTTP/1.1, trailers in the body).
	return len(ct) == len(prefix) || ct[len(prefix)] == '+' || ct[len(prefix)] == ';'
}

// streamBody is a gRPC call's body: passed through as it comes, with no
// read-ahead and no read deadline, counting as sent from its first byte.
func streamBody(r *http.Request) *requestBody {
	b := &requestBody{src: r.Body, remaining: -1, window: 1}
	r.Body = b
	return b
}

// grpcStatus returns the gRPC status of the answer rw relayed with HTTP
// status: from grpc-status in its headers (trailers-only) or trailers
// (net/http's ResponseWriter holds both once the answer is written).
// canceled says the client went away after the headers.
func grpcStatus(rw *responseWriter, status int, canceled bool) int {
	h := rw.Header()
	v, ok := h["Grpc-Status"]
	if !ok {
		v, ok = h[http.TrailerPrefix+"Grpc-Status"]
	}
	switch {
	case ok && len(v) > 0:
		return parseGRPCCode(v[0])
	case canceled:
		return grpcCanceled
	case status != http.StatusOK:
		return grpcFromHTTP(status)
	}
	return grpcInternal // "server closed the stream without sending trailers"
}

// parseGRPCCode parses a grpc-status value; anything but 0-16 is UNKNOWN,
// as gRPC clients read it.
func parseGRPCCode(s string) int {
	n := 0
	if s == "" || len(s) > 2 {
		return grpcUnknown
	}
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return grpcUnknown
		}
		n = n*10 + int(s[i]-'0')
	}
	if n >= numGRPCCodes {
		return grpcUnknown
	}
	return n
}

// grpcFromHTTP is the code a gRPC client gives an answer with a non-200
// HTTP status and no grpc-status (gRPC's http-grpc-status-mapping).
func grpcFromHTTP(status int) int {
	switch status {
	case http.StatusBadRequest:
		return grpcInternal
	case http.StatusUnauthorized:
		return grpcUnauthenticated
	case http.StatusForbidden:
		return grpcPermissionDenied
	case http.StatusNotFound:
		return grpcUnimplemented
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return grpcUnavailable
	}
	return grpcUnknown
}

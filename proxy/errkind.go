package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
)

// ErrorKind classifies a failure to get a response from a backend. It is the
// kind label of canary_upstream_errors_total.
type ErrorKind uint8

// The fixed set of upstream error kinds.
const (
	// KindNone means no transport failure (a backend's 5xx is an error of
	// kind none: it is visible in canary_requests_total{code}).
	KindNone ErrorKind = iota
	// KindConnect is a failed TCP connect (refused, unreachable, dial timeout).
	KindConnect
	// KindDNS is a failed name resolution of the backend's host.
	KindDNS
	// KindTLS is a failed TLS handshake (bad certificate, protocol error).
	KindTLS
	// KindTimeout is a response that did not arrive in time
	// (ResponseHeaderTimeout or a deadline); the client gets 504.
	KindTimeout
	// KindReset is a connection closed or reset by the backend, before or
	// while the response was streamed.
	KindReset
	// KindOther is any other transport failure.
	KindOther
	// KindCanceled is a client that went away before the response headers
	// were sent. It is not a backend error and is not in the window.
	KindCanceled
	// KindClient is a request that failed by the client's fault and that
	// canaryd answered itself: a refused method, a malformed request body,
	// a body sent too slowly. It is not a backend error and is not in the
	// window.
	KindClient

	numKinds
)

// The kinds exported as canary_upstream_errors_total are the consecutive
// range firstUpstreamKind..lastUpstreamKind.
const (
	firstUpstreamKind = KindConnect
	lastUpstreamKind  = KindOther
)

// String returns the kind's label value.
func (k ErrorKind) String() string {
	switch k {
	case KindNone:
		return "none"
	case KindConnect:
		return "connect"
	case KindDNS:
		return "dns"
	case KindTLS:
		return "tls"
	case KindTimeout:
		return "timeout"
	case KindReset:
		return "reset"
	case KindCanceled:
		return "canceled"
	case KindClient:
		return "client"
	}
	return "other"
}

// beforeRequest reports whether a failure of this kind happens before any
// byte of the request reached the backend, so the request may be retried
// elsewhere.
func (k ErrorKind) beforeRequest() bool {
	return k == KindConnect || k == KindDNS || k == KindTLS
}

// classify maps a transport error to its kind. inboundGone reports whether
// the client's request context has ended.
func classify(err error, inboundGone bool) ErrorKind {
	if inboundGone && errors.Is(err, context.Canceled) {
		return KindCanceled
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return KindDNS
	}
	if isTLSError(err) {
		return KindTLS
	}
	var opErr *net.OpError
	dial := errors.As(err, &opErr) && opErr.Op == "dial"
	if dial {
		return KindConnect
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return KindTimeout
	}
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		return KindTimeout
	}
	if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return KindReset
	}
	if inboundGone {
		return KindCanceled
	}
	return KindOther
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func isTLSError(err error) bool {
	var (
		rhe  tls.RecordHeaderError
		cve  *tls.CertificateVerificationError
		alrt tls.AlertError
		ua   x509.UnknownAuthorityError
		he   x509.HostnameError
		ci   x509.CertificateInvalidError
	)
	switch {
	case errors.As(err, &rhe), errors.As(err, &cve), errors.As(err, &alrt),
		errors.As(err, &ua), errors.As(err, &he), errors.As(err, &ci):
		return true
	}
	// Handshake failures are mostly plain errors prefixed "tls: ".
	return strings.Contains(err.Error(), "tls: ")
}

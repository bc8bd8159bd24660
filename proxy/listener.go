package proxy

import (
	"context"
	"crypto/tls"
	"net"
	"time"

	"github.com/canaryd/canaryd/proxy/h1"
)

// StrictListener wraps a plain-HTTP traffic listener with the framing
// guard (see proxy/h1): a request with ambiguous framing (Content-Length
// with Transfer-Encoding, conflicting lengths, obs-fold, bare LF line ends,
// a malformed chunk size, ...) is answered 400 and its connection closed
// before net/http has read it whole, so it never reaches a backend.
// rejected, if not nil, is told each refusal's reason.
func StrictListener(ln net.Listener, rejected func(reason string)) net.Listener {
	return h1.GuardListener(ln, h1.GuardConfig{Rejected: rejected})
}

// StrictH2CListener is StrictListener for a server that also serves
// plaintext HTTP/2 with prior knowledge (http.Server.Protocols with
// UnencryptedHTTP2; CANARY_H2C): a connection that opens with the HTTP/2
// connection preface (RFC 9113 §3.4) passes through unguarded, since HTTP/2
// frames its messages unambiguously; every other connection is guarded as
// HTTP/1.1, and the preface anywhere else still answered 400.
func StrictH2CListener(ln net.Listener, rejected func(reason string)) net.Listener {
	return h1.GuardListener(ln, h1.GuardConfig{Rejected: rejected, AllowH2C: true})
}

// StrictTLSListener terminates TLS on a traffic listener itself, with
// config, so that the framing guard covers HTTP/1.1 over TLS as well;
// HTTP/2 connections (by ALPN) go to net/http unguarded, their framing
// being unambiguous. A handshake must finish within handshakeTimeout.
//
// Serve the listener with http.Server.Serve (not ServeTLS), with ConnContext
// as the server's ConnContext and a TLSConfig whose NextProtos include "h2"
// so that net/http sets up HTTP/2.
func StrictTLSListener(ln net.Listener, config *tls.Config, handshakeTimeout time.Duration, rejected func(reason string)) net.Listener {
	return h1.TLSListener(ln, config, handshakeTimeout, h1.GuardConfig{Rejected: rejected})
}

// ConnContext is http.Server.ConnContext for a server on a
// StrictTLSListener: it carries the TLS state of the HTTP/1.1 connections,
// which net/http cannot see through the guard, to ServeHTTP (Request.TLS,
// hence X-Forwarded-Proto: https).
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	return h1.ConnContext(ctx, c)
}

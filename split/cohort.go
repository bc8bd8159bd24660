package split

import (
	"fmt"
	"net/http"
	"net/netip"
	"net/textproto"
	"regexp"
	"strings"
)

// Cohorts.
//
// A cohort is a set of requests that go to the canary whatever the weight
// (but never while the canary is blocked, nor with the override "never"):
// employees, beta users, one region. It is written as a list of
// conditions (CANARY_MATCH, ParseMatch); a request matching any of them is
// in the cohort:
//
//	header:NAME=VALUE   a field line of header NAME is exactly VALUE
//	header:NAME~REGEX   a field line of header NAME matches REGEX (RE2, unanchored)
//	cookie:NAME=VALUE   cookie NAME is exactly VALUE
//	path:/PREFIX        the URL path starts with /PREFIX
//	cidr:PREFIX         the client address is in PREFIX (10.0.0.0/8, 2001:db8::/32, or one address)
//
// The client address of a cidr condition is the connection's peer; when
// the peer is one of the trusted proxies (CANARY_TRUSTED_PROXIES), it is
// the first X-Forwarded-For hop, counting from the right, that is not a
// trusted proxy (the hops a client writes itself are to the left of those
// the proxies append, so only the proxies' own entries are believed).

// ConditionKind says what a cohort condition looks at. The zero value is
// no kind (the zero Condition, which matches nothing).
type ConditionKind uint8

const (
	// HeaderEquals: a field line of a header equals a value.
	HeaderEquals ConditionKind = iota + 1
	// HeaderMatches: a field line of a header matches a regular expression.
	HeaderMatches
	// CookieEquals: a cookie equals a value.
	CookieEquals
	// PathPrefix: the URL path starts with a prefix.
	PathPrefix
	// ClientCIDR: the client address is in a prefix.
	ClientCIDR
)

// String names the kind as CANARY_MATCH writes it ("header=", "header~",
// "cookie", "path", "cidr"; "" for the zero kind).
func (k ConditionKind) String() string {
	switch k {
	case HeaderEquals:
		return "header="
	case HeaderMatches:
		return "header~"
	case CookieEquals:
		return "cookie"
	case PathPrefix:
		return "path"
	case ClientCIDR:
		return "cidr"
	}
	return ""
}

// Condition is one parsed cohort condition. Build it with ParseMatch; the
// zero value matches nothing.
type Condition struct {
	kind   ConditionKind
	name   string         // canonical header name, or cookie name
	value  string         // header or cookie value, or path prefix
	re     *regexp.Regexp // HeaderMatches; compiled once, safe for concurrent use
	prefix netip.Prefix   // ClientCIDR, masked
	text   string         // as written
}

// Kind returns what the condition looks at (0 for the zero Condition).
func (c Condition) Kind() ConditionKind { return c.kind }

// String returns the condition as it was written.
func (c Condition) String() string { return c.text }

// conditionKinds are the prefixes a condition starts with; a comma in
// CANARY_MATCH separates conditions only when one of them follows it.
var conditionKinds = [...]string{"header:", "cookie:", "path:", "cidr:"}

// ParseMatch parses a comma-separated list of cohort conditions (the
// grammar in the package doc). A comma followed by something other than a
// condition kind belongs to the condition before it, so a regular
// expression or a value may hold commas (`header:X-Tier~^(gold|a{1,3})$`).
// An empty s is no condition. Every regular expression is compiled here,
// once. Errors wrap ErrBadConfig and quote the condition.
func ParseMatch(s string) ([]Condition, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var parts []string
	for _, piece := range strings.Split(s, ",") {
		if len(parts) > 0 && !startsWithKind(strings.TrimLeft(piece, " \t")) {
			parts[len(parts)-1] += "," + piece
			continue
		}
		parts = append(parts, piece)
	}
	out := make([]Condition, 0, len(parts))
	for _, p := range parts {
		c, err := parseCondition(strings.TrimSpace(p))
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

func startsWithKind(s string) bool {
	for _, k := range conditionKinds {
		if len(s) >= len(k) && strings.EqualFold(s[:len(k)], k) {
			return true
		}
	}
	return false
}

func parseCondition(s string) (Condition, error) {
	kind, rest, ok := strings.Cut(s, ":")
	if !ok || rest == "" {
		return Condition{}, fmt.Errorf("%w: condition %q must be header:NAME=VALUE, header:NAME~REGEX, cookie:NAME=VALUE, path:/PREFIX or cidr:PREFIX", ErrBadConfig, s)
	}
	c := Condition{text: s}
	switch strings.ToLower(kind) {
	case "header":
		i := strings.IndexAny(rest, "=~")
		if i <= 0 || !validToken(rest[:i]) {
			return Condition{}, fmt.Errorf("%w: condition %q must be header:NAME=VALUE or header:NAME~REGEX with NAME a header name", ErrBadConfig, s)
		}
		c.name, c.value = textproto.CanonicalMIMEHeaderKey(rest[:i]), rest[i+1:]
		if rest[i] == '=' {
			c.kind = HeaderEquals
			if c.value == "" {
				return Condition{}, fmt.Errorf("%w: condition %q has an empty value", ErrBadConfig, s)
			}
			return c, nil
		}
		c.kind = HeaderMatches
		re, err := regexp.Compile(c.value)
		if err != nil {
			return Condition{}, fmt.Errorf("%w: condition %q: %v", ErrBadConfig, s, err)
		}
		if c.value == "" {
			return Condition{}, fmt.Errorf("%w: condition %q has an empty regular expression (it would match every request)", ErrBadConfig, s)
		}
		c.re = re
		return c, nil
	case "cookie":
		name, value, ok := strings.Cut(rest, "=")
		if !ok || !validToken(name) || value == "" {
			return Condition{}, fmt.Errorf("%w: condition %q must be cookie:NAME=VALUE with NAME a cookie name and a value", ErrBadConfig, s)
		}
		c.kind, c.name, c.value = CookieEquals, name, value
		return c, nil
	case "path":
		if rest[0] != '/' {
			return Condition{}, fmt.Errorf("%w: condition %q: the path prefix must start with /", ErrBadConfig, s)
		}
		c.kind, c.value = PathPrefix, rest
		return c, nil
	case "cidr":
		p, err := ParsePrefix(rest)
		if err != nil {
			return Condition{}, fmt.Errorf("%w: condition %q: %v", ErrBadConfig, s, err)
		}
		c.kind, c.prefix = ClientCIDR, p
		return c, nil
	}
	return Condition{}, fmt.Errorf("%w: condition %q: unknown kind %q (header, cookie, path or cidr)", ErrBadConfig, s, kind)
}

// ParsePrefix parses a network in CIDR notation (10.0.0.0/8,
// 2001:db8::/32) or a single address (10.1.2.3, ::1), returned masked. An
// IPv4-mapped IPv6 network is taken as its IPv4 one.
func ParsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q is not an address or a network such as 10.0.0.0/8", s)
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a network such as 10.0.0.0/8", s)
	}
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

// ParseTrustedProxies parses a comma-separated list of networks or
// addresses (ParsePrefix): the proxies whose X-Forwarded-For canaryd
// believes for cidr conditions and the sticky cookie's Secure attribute.
// An empty s is none.
func ParseTrustedProxies(s string) ([]netip.Prefix, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []netip.Prefix
	for _, part := range strings.Split(s, ",") {
		p, err := ParsePrefix(part)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadConfig, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// match reports whether r satisfies c; client is the request's client
// address (invalid when unknown), computed once per request by the caller.
func (c *Condition) match(r *http.Request, client netip.Addr) bool {
	switch c.kind {
	case HeaderEquals:
		for _, v := range r.Header[c.name] {
			if v == c.value {
				return true
			}
		}
	case HeaderMatches:
		for _, v := range r.Header[c.name] {
			if c.re.MatchString(v) {
				return true
			}
		}
	case CookieEquals:
		v, ok := cookieValue(r.Header["Cookie"], c.name)
		return ok && v == c.value
	case PathPrefix:
		return strings.HasPrefix(r.URL.Path, c.value)
	case ClientCIDR:
		return client.IsValid() && c.prefix.Contains(client)
	}
	return false
}

// inCohort reports whether r matches any cohort condition.
func (s *Splitter) inCohort(r *http.Request) bool {
	var client netip.Addr
	if s.needClient {
		client = s.ClientAddr(r)
	}
	for i := range s.match {
		if s.match[i].match(r, client) {
			return true
		}
	}
	return false
}

// ClientAddr returns the address of r's client as the cidr conditions see
// it: the connection's peer, or, when the peer is a trusted proxy, the
// first X-Forwarded-For hop from the right that is not one (the leftmost
// hop when all are). It is the zero Addr when the peer or a hop it must
// read is not an address. It does not allocate for IPv4 and plain IPv6.
func (s *Splitter) ClientAddr(r *http.Request) netip.Addr {
	a := parseHost(r.RemoteAddr)
	if !a.IsValid() || !s.trusted(a) {
		return a
	}
	lines := r.Header["X-Forwarded-For"]
	for i := len(lines) - 1; i >= 0; i-- {
		line := lines[i]
		for line != "" {
			hop := line
			if j := strings.LastIndexByte(line, ','); j >= 0 {
				hop, line = line[j+1:], line[:j]
			} else {
				line = ""
			}
			hop = strings.TrimSpace(hop)
			if hop == "" {
				continue
			}
			h := parseHost(hop)
			if !h.IsValid() {
				return netip.Addr{} // garbage where an address should be: no client address
			}
			a = h
			if !s.trusted(a) {
				return a
			}
		}
	}
	return a
}

// parseHost reads an address, with or without a port ("10.0.0.1",
// "10.0.0.1:80", "[::1]:80", "::1"), unmapped from IPv4-in-IPv6.
func parseHost(s string) netip.Addr {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap()
	}
	if a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")); err == nil {
		return a.Unmap()
	}
	return netip.Addr{}
}

// trusted reports whether a is one of the trusted proxies.
func (s *Splitter) trusted(a netip.Addr) bool {
	for _, p := range s.proxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// behindTLS reports whether r's client spoke TLS: to canaryd itself, or,
// through a trusted proxy, as its X-Forwarded-Proto says.
func (s *Splitter) behindTLS(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	if len(s.proxies) == 0 {
		return false
	}
	if a := parseHost(r.RemoteAddr); !a.IsValid() || !s.trusted(a) {
		return false
	}
	v := r.Header["X-Forwarded-Proto"]
	if len(v) == 0 {
		return false
	}
	last := v[len(v)-1]
	if j := strings.LastIndexByte(last, ','); j >= 0 {
		last = last[j+1:] // the nearest proxy's
	}
	return strings.EqualFold(strings.TrimSpace(last), "https")
}

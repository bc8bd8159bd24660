package split_test

import (
	"crypto/tls"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/canaryd/canaryd/split"
)

func mustMatch(t *testing.T, s string) []split.Condition {
	t.Helper()
	m, err := split.ParseMatch(s)
	if err != nil {
		t.Fatalf("ParseMatch(%q) = %v", s, err)
	}
	return m
}

func TestParseMatch(t *testing.T) {
	for _, tc := range []struct {
		in    string
		kinds []split.ConditionKind
		texts []string
	}{
		{"", nil, nil},
		{"header:X-Beta=yes", []split.ConditionKind{split.HeaderEquals}, []string{"header:X-Beta=yes"}},
		{"header:X-Tier~^(gold|a{1,3})$, cookie:beta=1", []split.ConditionKind{split.HeaderMatches, split.CookieEquals},
			[]string{"header:X-Tier~^(gold|a{1,3})$", "cookie:beta=1"}},
		{"path:/beta/,cidr:10.0.0.0/8,CIDR:2001:db8::/32,cidr:192.168.1.7", []split.ConditionKind{split.PathPrefix, split.ClientCIDR, split.ClientCIDR, split.ClientCIDR}, nil},
		{"header:X-List=a,b", []split.ConditionKind{split.HeaderEquals}, []string{"header:X-List=a,b"}},
	} {
		m := mustMatch(t, tc.in)
		if len(m) != len(tc.kinds) {
			t.Fatalf("ParseMatch(%q) = %d conditions %v; want %d", tc.in, len(m), m, len(tc.kinds))
		}
		for i, c := range m {
			if c.Kind() != tc.kinds[i] {
				t.Errorf("ParseMatch(%q)[%d].Kind() = %v; want %v", tc.in, i, c.Kind(), tc.kinds[i])
			}
			if tc.texts != nil && c.String() != tc.texts[i] {
				t.Errorf("ParseMatch(%q)[%d] = %q; want %q", tc.in, i, c.String(), tc.texts[i])
			}
		}
	}
}

func TestParseMatchErrors(t *testing.T) {
	for _, in := range []string{
		"header:X-Beta~(unclosed", "header:X-Beta~a**", "header:=yes", "header:X Beta=yes", "header:X-Beta", "header:X-Beta=",
		"header:X-Beta~", "cookie:beta", "cookie:=1", "cookie:beta=", "path:beta", "cidr:10.0.0.0/33", "cidr:10.0.0", "cidr:example.com",
		"query:x=1", "beta", ",header:X-A=1",
	} {
		if m, err := split.ParseMatch(in); err == nil || !errors.Is(err, split.ErrBadConfig) {
			t.Errorf("ParseMatch(%q) = %v, %v; want an ErrBadConfig", in, m, err)
		}
	}
}

func TestParseTrustedProxies(t *testing.T) {
	ps, err := split.ParseTrustedProxies("127.0.0.1, 10.0.0.0/8,::1,::ffff:192.168.0.0/112")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"127.0.0.1/32", "10.0.0.0/8", "::1/128", "192.168.0.0/16"}
	for i, p := range ps {
		if p.String() != want[i] {
			t.Errorf("trusted proxy %d = %v; want %v", i, p, want[i])
		}
	}
	for _, in := range []string{"10.0.0.0/99", "proxy.local", "127.0.0.1,", "fe80::1%eth0"} {
		if _, err := split.ParseTrustedProxies(in); err == nil {
			t.Errorf("ParseTrustedProxies(%q) = nil error; want one", in)
		}
	}
}

func request(path, remote string, header ...string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, path, nil)
	r.RemoteAddr = remote
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Add(header[i], header[i+1])
	}
	return r
}

// A cohort reaches the canary at weight 0, but not while it is blocked nor
// with the override "never"; everyone else follows the weight.
func TestCohort(t *testing.T) {
	s := newSplitter(t, split.Config{
		OverrideHeader: "X-Canary",
		Match:          mustMatch(t, "header:X-Beta=yes,header:User-Agent~(?i)employee,cookie:tier=beta,path:/beta/,cidr:10.0.0.0/8"),
	}, 0)
	in := []*http.Request{
		request("/", "192.0.2.1:1000", "X-Beta", "yes"),
		request("/", "192.0.2.1:1000", "X-Beta", "no", "X-Beta", "yes"),
		request("/", "192.0.2.1:1000", "User-Agent", "curl (EMPLOYEE build)"),
		request("/", "192.0.2.1:1000", "Cookie", "a=1; tier=beta"),
		request("/beta/page", "192.0.2.1:1000"),
		request("/", "10.1.2.3:1000"),
		request("/", "[::ffff:10.1.2.3]:1000"),
	}
	out := []*http.Request{
		request("/", "192.0.2.1:1000", "X-Beta", "yes please"),
		request("/", "192.0.2.1:1000", "User-Agent", "curl"),
		request("/", "192.0.2.1:1000", "Cookie", "tier=gold"),
		request("/bet", "192.0.2.1:1000"),
		request("/", "11.1.2.3:1000"),
		request("/", "192.0.2.1:1000", "X-Forwarded-For", "10.9.9.9"), // the peer counts, XFF is not trusted here
	}
	for i, r := range in {
		if got := s.Pick(r); got != split.Canary {
			t.Errorf("in-cohort request %d: Pick = %v; want canary", i, got)
		}
	}
	for i, r := range out {
		if got := s.Pick(r); got != split.Stable {
			t.Errorf("out-of-cohort request %d: Pick = %v; want stable at weight 0", i, got)
		}
	}
	never := request("/beta/", "10.1.2.3:1000", "X-Canary", "never")
	if got := s.Pick(never); got != split.Stable {
		t.Errorf("cohort with override never: Pick = %v; want stable", got)
	}
	s.SetRolledBack(true)
	for i, r := range in {
		if got := s.Pick(r); got != split.Stable {
			t.Errorf("rolled back: in-cohort request %d: Pick = %v; want stable", i, got)
		}
	}
}

func TestClientAddr(t *testing.T) {
	proxies, _ := split.ParseTrustedProxies("127.0.0.1,10.0.0.0/8")
	s := newSplitter(t, split.Config{TrustedProxies: proxies}, 0)
	for _, tc := range []struct {
		remote string
		xff    []string
		want   string
	}{
		{"192.0.2.1:5", nil, "192.0.2.1"},
		{"192.0.2.1:5", []string{"203.0.113.9"}, "192.0.2.1"}, // untrusted peer: its XFF is ignored
		{"127.0.0.1:5", nil, "127.0.0.1"},
		{"127.0.0.1:5", []string{"203.0.113.9"}, "203.0.113.9"},
		{"127.0.0.1:5", []string{"198.51.100.1, 203.0.113.9"}, "203.0.113.9"},          // the client wrote the first hop itself
		{"127.0.0.1:5", []string{"203.0.113.9, 10.0.0.7"}, "203.0.113.9"},              // a trusted hop is skipped
		{"127.0.0.1:5", []string{"203.0.113.9", "10.0.0.7 , 10.1.1.1"}, "203.0.113.9"}, // across field lines
		{"127.0.0.1:5", []string{"10.0.0.7, 10.1.1.1"}, "10.0.0.7"},                    // all trusted: the leftmost
		{"127.0.0.1:5", []string{"[2001:db8::1]:443"}, "2001:db8::1"},
		{"127.0.0.1:5", []string{"unknown, 10.0.0.7"}, "invalid IP"},
		{"[::1]:5", []string{"203.0.113.9"}, "::1"},
		{"not-an-address", nil, "invalid IP"},
	} {
		r := request("/", tc.remote)
		for _, v := range tc.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		if got := s.ClientAddr(r); got.String() != tc.want {
			t.Errorf("ClientAddr(%s, XFF %q) = %v; want %s", tc.remote, tc.xff, got, tc.want)
		}
	}
}

func TestCohortCIDRBehindTrustedProxy(t *testing.T) {
	proxies, _ := split.ParseTrustedProxies("127.0.0.1")
	s := newSplitter(t, split.Config{Match: mustMatch(t, "cidr:10.0.0.0/8"), TrustedProxies: proxies}, 0)
	if got := s.Pick(request("/", "127.0.0.1:9", "X-Forwarded-For", "10.4.4.4")); got != split.Canary {
		t.Errorf("client 10.4.4.4 behind a trusted proxy: Pick = %v; want canary", got)
	}
	if got := s.Pick(request("/", "127.0.0.1:9", "X-Forwarded-For", "10.4.4.4, 192.0.2.8")); got != split.Stable {
		t.Errorf("a forged 10.4.4.4 before the real client 192.0.2.8: Pick = %v; want stable", got)
	}
}

func cookieOf(t *testing.T, setCookie string) *http.Cookie {
	t.Helper()
	c, err := http.ParseSetCookie(setCookie)
	if err != nil {
		t.Fatalf("Set-Cookie %q: %v", setCookie, err)
	}
	return c
}

func TestStickySetCookie(t *testing.T) {
	s := newSplitter(t, split.Config{StickyKey: "cookie:cid", SetCookie: true, CookieMaxAge: 90 * time.Minute}, 1000)
	c := s.Choose(request("/", "192.0.2.1:5"))
	ck := cookieOf(t, c.SetCookie)
	if ck.Name != "cid" || len(ck.Value) != 32 || strings.Trim(ck.Value, "0123456789abcdef") != "" {
		t.Errorf("Set-Cookie %q: want cid=<32 hex digits>", c.SetCookie)
	}
	if ck.Path != "/" || ck.MaxAge != 5400 || !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.Secure {
		t.Errorf("Set-Cookie %q: want Path=/; Max-Age=5400; HttpOnly; SameSite=Lax, not Secure", c.SetCookie)
	}
	// The request was routed by its new id: the id brings it back there.
	again := request("/", "192.0.2.1:5", "Cookie", "cid="+ck.Value)
	if got := s.Choose(again); got.Backend != c.Backend || got.SetCookie != "" {
		t.Errorf("with its cookie: Choose = %+v; want %v and no Set-Cookie", got, c.Backend)
	}
	tlsReq := request("/", "192.0.2.1:5")
	tlsReq.TLS = &tls.ConnectionState{}
	if ck := cookieOf(t, s.Choose(tlsReq).SetCookie); !ck.Secure {
		t.Errorf("over TLS: the cookie is not Secure")
	}
	// Behind a trusted proxy that terminated TLS.
	proxies, _ := split.ParseTrustedProxies("127.0.0.1")
	sp := newSplitter(t, split.Config{StickyKey: "cookie:cid", SetCookie: true, TrustedProxies: proxies}, 1000)
	if ck := cookieOf(t, sp.Choose(request("/", "127.0.0.1:5", "X-Forwarded-Proto", "https")).SetCookie); !ck.Secure || ck.MaxAge != 86400 {
		t.Errorf("behind a trusted TLS proxy: Secure=%v Max-Age=%d; want Secure and the default 86400", ck.Secure, ck.MaxAge)
	}
	if ck := cookieOf(t, sp.Choose(request("/", "192.0.2.1:5", "X-Forwarded-Proto", "https")).SetCookie); ck.Secure {
		t.Errorf("an untrusted peer's X-Forwarded-Proto made the cookie Secure")
	}
	// Blocked or overridden, a new user still gets an id (for later).
	s.SetRolledBack(true)
	if c := s.Choose(request("/", "192.0.2.1:5")); c.Backend != split.Stable || c.SetCookie == "" {
		t.Errorf("rolled back: Choose = %+v; want stable with a Set-Cookie", c)
	}
}

// New ids are stratified: at any whole-percent weight the canary gets that
// share of them exactly, raising the weight moves users only from stable to
// canary, and each id keeps its backend.
func TestStickyNewUsersShareIsTheWeight(t *testing.T) {
	s := newSplitter(t, split.Config{StickyKey: "cookie:cid", SetCookie: true}, 1000)
	const users = 2000
	ids := make([]string, users)
	canary := 0
	for i := range ids {
		c := s.Choose(request("/", "192.0.2.1:5"))
		ids[i] = cookieOf(t, c.SetCookie).Value
		if c.Backend == split.Canary {
			canary++
		}
		if split.ForBucket(split.Bucket(ids[i]), 1000) != c.Backend {
			t.Fatalf("user %d was routed %v, not by its id's bucket", i, c.Backend)
		}
	}
	if canary != users/10 {
		t.Errorf("at 10%%: %d of %d new users on the canary; want exactly %d", canary, users, users/10)
	}
	for _, w := range []uint32{2500, 5000, 9900} {
		s.SetWeight(w)
		n := 0
		for _, id := range ids {
			if s.Pick(request("/", "192.0.2.1:5", "Cookie", "cid="+id)) == split.Canary {
				n++
			}
		}
		if want := users * int(w) / split.MaxWeight; n != want {
			t.Errorf("at %v%%: %d users on the canary; want %d", split.Percent(w), n, want)
		}
	}
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			t.Fatalf("id %s minted twice", id)
		}
		seen[id] = true
	}
}

func TestConfigValidateCohortsAndCookies(t *testing.T) {
	bad := []split.Config{
		{SetCookie: true},
		{SetCookie: true, StickyKey: "header:X-User"},
		{StickyKey: "cookie:cid", SetCookie: true, CookieMaxAge: 500 * time.Millisecond},
		{StickyKey: "cookie:cid", CookieMaxAge: -time.Second},
		{Match: []split.Condition{{}}},
		{TrustedProxies: []netip.Prefix{{}}},
	}
	for _, c := range bad {
		if err := c.Validate(); !errors.Is(err, split.ErrBadConfig) {
			t.Errorf("Validate(%+v) = %v; want ErrBadConfig", c, err)
		}
	}
	if err := (split.Config{StickyKey: "cookie:cid", SetCookie: true, CookieMaxAge: time.Hour}).Validate(); err != nil {
		t.Errorf("a valid cookie configuration: %v", err)
	}
}

func TestPickDoesNotAllocate(t *testing.T) {
	plain := newSplitter(t, split.Config{StickyKey: "cookie:cid", OverrideHeader: "X-Canary"}, 1000)
	cohort := newSplitter(t, split.Config{Match: mustMatch(t, "header:X-Beta=yes,header:X-Tier~^gold$,cookie:tier=beta,path:/beta/,cidr:10.0.0.0/8")}, 1000)
	r := request("/x", "192.0.2.1:5", "X-Tier", "silver", "Cookie", "cid=u-1; tier=x")
	for name, s := range map[string]*split.Splitter{"no cohort": plain, "cohort": cohort} {
		if a := testing.AllocsPerRun(1000, func() { s.Pick(r) }); a != 0 {
			t.Errorf("%s: Pick allocates %v times; want 0", name, a)
		}
	}
}

func BenchmarkPickCohort(b *testing.B) {
	m, _ := split.ParseMatch("header:X-Beta=yes,header:X-Tier~^gold$,cookie:tier=beta,path:/beta/,cidr:10.0.0.0/8")
	s, _ := split.New(split.Config{Match: m}, 1000)
	r := request("/x", "192.0.2.1:5", "X-Tier", "silver", "Cookie", "tier=x")
	b.ReportAllocs()
	for b.Loop() {
		s.Pick(r)
	}
}

func BenchmarkChooseNewUser(b *testing.B) {
	s, _ := split.New(split.Config{StickyKey: "cookie:cid", SetCookie: true}, 1000)
	r := request("/x", "192.0.2.1:5")
	b.ReportAllocs()
	for b.Loop() {
		s.Choose(r)
	}
}

// ParseMatch never panics, and a condition it accepts reads back the same
// from its String.
func FuzzParseMatch(f *testing.F) {
	for _, s := range []string{
		"header:X-Beta=yes", "header:User-Agent~(?i)staff{1,2},cookie:b=1", "path:/beta/,cidr:10.0.0.0/8",
		"cidr:::ffff:10.0.0.0/104", "header:X~(", "cookie:=", ",", "header:X-A=a,b,path:/x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := split.ParseMatch(s)
		if err != nil {
			return
		}
		for _, c := range m {
			again, err := split.ParseMatch(c.String())
			if err != nil || len(again) != 1 || again[0].Kind() != c.Kind() || again[0].String() != c.String() {
				t.Fatalf("condition %q of %q reads back as %v, %v", c.String(), s, again, err)
			}
		}
	})
}

package split_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/canaryd/canaryd/split"
)

func newSplitter(t *testing.T, cfg split.Config, w uint32) *split.Splitter {
	t.Helper()
	s, err := split.New(cfg, w)
	if err != nil {
		t.Fatalf("New(%+v) = %v", cfg, err)
	}
	return s
}

func req() *http.Request { return httptest.NewRequest("GET", "/", nil) }

// The exact sequence at 10%: picks 9, 19, 29, … (0-based) go to the canary.
func TestPickExactSequence(t *testing.T) {
	s := newSplitter(t, split.Config{}, 1000)
	var got strings.Builder
	for range 30 {
		if s.Pick(req()) == split.Canary {
			got.WriteByte('C')
		} else {
			got.WriteByte('s')
		}
	}
	want := "sssssssssCsssssssssCsssssssssC"
	if got.String() != want {
		t.Errorf("Pick sequence = %s; want %s", got.String(), want)
	}
}

func TestPickExactSequenceFraction(t *testing.T) {
	// 25.5%: 51 of every 200 picks, never two canary picks more than one apart
	// from the ideal running total.
	s := newSplitter(t, split.Config{}, 2550)
	canary := 0
	for n := 1; n <= 2000; n++ {
		if s.Pick(req()) == split.Canary {
			canary++
		}
		if want := n * 2550 / 10000; canary != want {
			t.Fatalf("after %d picks canary = %d; want %d", n, canary, want)
		}
	}
}

// Over any 10,000 consecutive picks the canary gets exactly its share.
func TestPickAnyWindowIsExact(t *testing.T) {
	for _, w := range []uint32{1, 1000, 3333, 5000, 9999} {
		t.Run(fmt.Sprint(w), func(t *testing.T) {
			s := newSplitter(t, split.Config{}, w)
			const n = 30000
			seq := make([]bool, n)
			for i := range seq {
				seq[i] = s.Pick(req()) == split.Canary
			}
			count := 0
			for i := range 10000 {
				if seq[i] {
					count++
				}
			}
			for start := 0; ; start++ {
				if d := int(count) - int(w); d < -1 || d > 1 {
					t.Fatalf("picks [%d,%d) canary = %d; want %d±1", start, start+10000, count, w)
				}
				if start+10000 >= n {
					break
				}
				if seq[start] {
					count--
				}
				if seq[start+10000] {
					count++
				}
			}
		})
	}
}

func TestPickEdges(t *testing.T) {
	for _, tc := range []struct {
		w    uint32
		want split.Backend
	}{{0, split.Stable}, {10000, split.Canary}, {20000, split.Canary}} {
		s := newSplitter(t, split.Config{}, tc.w)
		for range 100 {
			if got := s.Pick(req()); got != tc.want {
				t.Fatalf("weight %d: Pick = %v; want %v", tc.w, got, tc.want)
			}
		}
	}
}

func TestSetWeightTakesEffect(t *testing.T) {
	s := newSplitter(t, split.Config{}, 5000)
	s.SetWeight(0)
	for range 1000 {
		if s.Pick(req()) == split.Canary {
			t.Fatal("Pick = canary after SetWeight(0)")
		}
	}
	if s.Weight() != 0 {
		t.Errorf("Weight() = %d; want 0", s.Weight())
	}
}

func TestStickyCookieSameBackend(t *testing.T) {
	s := newSplitter(t, split.Config{StickyKey: "cookie:session"}, 3000)
	for i := range 500 {
		r := req()
		r.AddCookie(&http.Cookie{Name: "session", Value: fmt.Sprint("user-", i)})
		first := s.Pick(r)
		for range 5 {
			if got := s.Pick(r); got != first {
				t.Fatalf("user-%d: Pick = %v then %v", i, first, got)
			}
		}
		if want := split.ForBucket(split.Bucket(fmt.Sprint("user-", i)), 3000); first != want {
			t.Fatalf("user-%d: Pick = %v; want %v", i, first, want)
		}
	}
}

// Raising the weight only moves keys from stable to canary.
func TestStickyMonotonic(t *testing.T) {
	s := newSplitter(t, split.Config{StickyKey: "header:X-User"}, 0)
	const keys = 5000
	prev := make([]split.Backend, keys)
	for w := uint32(0); w <= 10000; w += 250 {
		s.SetWeight(w)
		canary := 0
		for k := range keys {
			r := req()
			r.Header.Set("X-User", fmt.Sprint("k", k))
			b := s.Pick(r)
			if prev[k] == split.Canary && b == split.Stable {
				t.Fatalf("weight %d: key k%d moved canary -> stable", w, k)
			}
			prev[k] = b
			if b == split.Canary {
				canary++
			}
		}
		// The hash spreads keys evenly: within 3 percentage points.
		if got, want := float64(canary)/keys, float64(w)/10000; got < want-0.03 || got > want+0.03 {
			t.Errorf("weight %d: canary share %.3f; want %.3f±0.03", w, got, want)
		}
	}
}

func TestStickyMissingKeyFallsBackToCounter(t *testing.T) {
	s := newSplitter(t, split.Config{StickyKey: "cookie:session"}, 1000)
	canary := 0
	for range 10000 {
		if s.Pick(req()) == split.Canary {
			canary++
		}
	}
	if canary != 1000 {
		t.Errorf("canary picks without key = %d; want 1000", canary)
	}
}

func TestOverrideHeader(t *testing.T) {
	s := newSplitter(t, split.Config{OverrideHeader: "x-canary"}, 0)
	for _, tc := range []struct {
		value string
		w     uint32
		want  split.Backend
	}{
		{"always", 0, split.Canary},
		{"ALWAYS", 0, split.Canary},
		{"never", 10000, split.Stable},
		{"maybe", 10000, split.Canary},
		{"", 0, split.Stable},
	} {
		s.SetWeight(tc.w)
		r := req()
		if tc.value != "" {
			r.Header.Set("X-Canary", tc.value)
		}
		if got := s.Pick(r); got != tc.want {
			t.Errorf("X-Canary: %q at weight %d: Pick = %v; want %v", tc.value, tc.w, got, tc.want)
		}
	}
}

func TestBlockWinsOverEverything(t *testing.T) {
	s := newSplitter(t, split.Config{OverrideHeader: "X-Canary", StickyKey: "header:X-User"}, 10000)
	s.SetRolledBack(true)
	r := req()
	r.Header.Set("X-Canary", "always")
	r.Header.Set("X-User", "a")
	if got := s.Pick(r); got != split.Stable {
		t.Errorf("rolled back: Pick = %v; want stable", got)
	}
	s.Block(split.BlockUnhealthy, true)
	s.SetRolledBack(false)
	if got := s.Pick(r); got != split.Stable {
		t.Errorf("unhealthy: Pick = %v; want stable", got)
	}
	s.Block(split.BlockUnhealthy, false)
	if got := s.Pick(r); got != split.Canary {
		t.Errorf("unblocked: Pick = %v; want canary", got)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg split.Config
		ok  bool
	}{
		{split.Config{}, true},
		{split.Config{StickyKey: "cookie:sid"}, true},
		{split.Config{StickyKey: "header:X-User"}, true},
		{split.Config{StickyKey: "query:x"}, false},
		{split.Config{StickyKey: "cookie:"}, false},
		{split.Config{StickyKey: "sid"}, false},
		{split.Config{StickyKey: "header:bad name"}, false},
		{split.Config{OverrideHeader: "X-Canary"}, true},
		{split.Config{OverrideHeader: "X Canary"}, false},
	} {
		if err := tc.cfg.Validate(); (err == nil) != tc.ok {
			t.Errorf("Validate(%+v) = %v; want ok=%v", tc.cfg, err, tc.ok)
		}
	}
}

func FuzzBucket(f *testing.F) {
	for _, seed := range []string{"", "user-1", "\x00", "ключ", strings.Repeat("a", 300)} {
		f.Add(seed, uint32(1000))
	}
	f.Fuzz(func(t *testing.T, key string, w uint32) {
		w %= split.MaxWeight + 1
		b := split.Bucket(key)
		if b >= split.Buckets {
			t.Fatalf("Bucket(%q) = %d; want < %d", key, b, split.Buckets)
		}
		if split.Bucket(key) != b {
			t.Fatalf("Bucket(%q) not deterministic", key)
		}
		// Monotonic: a canary key at w stays canary at any higher weight.
		if split.ForBucket(b, w) == split.Canary && split.ForBucket(b, min(w+1, split.MaxWeight)) != split.Canary {
			t.Fatalf("bucket %d: canary at %d but not at %d", b, w, w+1)
		}
		s, _ := split.New(split.Config{StickyKey: "header:X-Key"}, w)
		r := httptest.NewRequest("GET", "/", nil)
		r.Header["X-Key"] = []string{key}
		if key != "" && s.Pick(r) != split.ForBucket(b, w) {
			t.Fatalf("Pick with key %q disagrees with ForBucket", key)
		}
	})
}

func BenchmarkPick(b *testing.B) {
	s, _ := split.New(split.Config{}, 1000)
	r := req()
	b.ReportAllocs()
	for b.Loop() {
		s.Pick(r)
	}
}

func BenchmarkPickParallel(b *testing.B) {
	s, _ := split.New(split.Config{}, 1000)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		r := req()
		for pb.Next() {
			s.Pick(r)
		}
	})
}

func BenchmarkPickStickyCookie(b *testing.B) {
	s, _ := split.New(split.Config{StickyKey: "cookie:session"}, 1000)
	r := req()
	r.AddCookie(&http.Cookie{Name: "session", Value: "0123456789abcdef"})
	b.ReportAllocs()
	for b.Loop() {
		s.Pick(r)
	}
}

func BenchmarkPickStickyHeader(b *testing.B) {
	s, _ := split.New(split.Config{StickyKey: "header:X-User"}, 1000)
	r := req()
	r.Header.Set("X-User", "0123456789abcdef")
	b.ReportAllocs()
	for b.Loop() {
		s.Pick(r)
	}
}

func TestStickyCookieParsing(t *testing.T) {
	s := newSplitter(t, split.Config{StickyKey: "cookie:sid"}, 5000)
	want := split.ForBucket(split.Bucket("abc"), 5000)
	for _, line := range []string{"sid=abc", "a=1; sid=abc", "a=1;sid=abc; b=2", `sid="abc"`, "sid=; sid=abc"} {
		r := req()
		r.Header.Set("Cookie", line)
		for range 3 {
			if got := s.Pick(r); got != want {
				t.Errorf("Cookie: %s: Pick = %v; want %v", line, got, want)
			}
		}
	}
}

// BenchmarkParsePercent measures the exact decimal parser.
func BenchmarkParsePercent(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := split.ParsePercent("12.34"); err != nil {
			b.Fatal(err)
		}
	}
}

package admin_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// This file drives headless Chromium over the DevTools protocol on a pipe
// (--remote-debugging-pipe: JSON messages ended by a NUL byte on file
// descriptors 3 and 4), so the tests need neither a WebSocket library nor
// any other dependency, and can click, type, wait and take screenshots in
// one page for as long as a scenario lasts.

// chromiumPath finds a Chromium-family browser on PATH.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no chromium, chromium-browser or google-chrome on PATH; skipping the dashboard browser test")
	return ""
}

// cdpMessage is one DevTools protocol message: a command, its reply or an
// event.
type cdpMessage struct {
	ID        int64           `json:"id,omitempty"`
	Method    string          `json:"method,omitempty"`
	SessionID string          `json:"sessionId,omitempty"`
	Params    json.RawMessage `json:"params,omitempty"`
	Result    json.RawMessage `json:"result,omitempty"`
	Error     *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error,omitempty"`
}

// browser is one headless Chromium process.
type browser struct {
	t   *testing.T
	cmd *exec.Cmd
	out *os.File // commands, Chromium's fd 3

	mu       sync.Mutex // protects everything below
	nextID   int64
	waiting  map[int64]chan cdpMessage
	problems map[string][]string // per session: exceptions, console errors, CSP reports
	closed   bool
}

// startBrowser starts Chromium with a fresh profile; it is closed when the
// test ends.
func startBrowser(t *testing.T) *browser {
	t.Helper()
	path := chromiumPath(t)
	toChrome, ours, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	theirs, fromChrome, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(path,
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-extensions", "--disable-dev-shm-usage", "--mute-audio", "--hide-scrollbars",
		"--user-data-dir="+t.TempDir(), "--remote-debugging-pipe", "about:blank")
	cmd.ExtraFiles = []*os.File{toChrome, fromChrome} // fds 3 and 4
	cmd.Env = append(os.Environ(), "TZ=UTC")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", path, err)
	}
	toChrome.Close()
	fromChrome.Close()
	b := &browser{t: t, cmd: cmd, out: ours, waiting: map[int64]chan cdpMessage{}, problems: map[string][]string{}}
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		b.read(bufio.NewReaderSize(theirs, 1<<20))
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = b.call(ctx, "", "Browser.close", nil, nil)
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		ours.Close()
		theirs.Close()
		<-readDone
		if t.Failed() {
			t.Logf("chromium stderr (last 2 KB):\n%s", tail(stderr.String(), 2048))
		}
	})
	return b
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// read dispatches Chromium's messages until the pipe closes.
func (b *browser) read(r *bufio.Reader) {
	for {
		raw, err := r.ReadBytes(0)
		if err != nil {
			b.mu.Lock()
			b.closed = true
			for id, ch := range b.waiting {
				close(ch)
				delete(b.waiting, id)
			}
			b.mu.Unlock()
			return
		}
		var m cdpMessage
		if err := json.Unmarshal(raw[:len(raw)-1], &m); err != nil {
			continue
		}
		if m.ID != 0 {
			b.mu.Lock()
			ch := b.waiting[m.ID]
			delete(b.waiting, m.ID)
			b.mu.Unlock()
			if ch != nil {
				ch <- m
			}
			continue
		}
		if p := problem(m); p != "" {
			b.mu.Lock()
			b.problems[m.SessionID] = append(b.problems[m.SessionID], p)
			b.mu.Unlock()
		}
	}
}

// problem describes an event that means the page misbehaved: an uncaught
// exception, a console error, or anything the browser logs about the
// page's security (a CSP violation). Failed network requests are not
// problems: the stale-data test stops the server on purpose.
func problem(m cdpMessage) string {
	switch m.Method {
	case "Runtime.exceptionThrown":
		var p struct {
			Details struct {
				Text      string `json:"text"`
				Exception struct {
					Description string `json:"description"`
				} `json:"exception"`
			} `json:"exceptionDetails"`
		}
		_ = json.Unmarshal(m.Params, &p)
		return "exception: " + p.Details.Text + " " + p.Details.Exception.Description
	case "Runtime.consoleAPICalled":
		var p struct {
			Type string `json:"type"`
			Args []struct {
				Value any `json:"value"`
			} `json:"args"`
		}
		_ = json.Unmarshal(m.Params, &p)
		if p.Type == "error" || p.Type == "warning" || p.Type == "assert" {
			return fmt.Sprintf("console.%s: %v", p.Type, p.Args)
		}
	case "Log.entryAdded":
		var p struct {
			Entry struct {
				Source, Level, Text string
			} `json:"entry"`
		}
		_ = json.Unmarshal(m.Params, &p)
		if p.Entry.Source == "network" {
			return ""
		}
		if p.Entry.Level == "error" || p.Entry.Source == "security" || strings.Contains(p.Entry.Text, "Content Security Policy") {
			return "log (" + p.Entry.Source + "): " + p.Entry.Text
		}
	case "Inspector.targetCrashed":
		return "the page crashed"
	}
	return ""
}

// call sends one command (to session, or to the browser when "") and
// decodes its result into result (if non-nil).
func (b *browser) call(ctx context.Context, session, method string, params, result any) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return errors.New("chromium is gone")
	}
	b.nextID++
	id := b.nextID
	ch := make(chan cdpMessage, 1)
	b.waiting[id] = ch
	b.mu.Unlock()
	if params == nil {
		params = struct{}{}
	}
	msg, err := json.Marshal(struct {
		ID        int64  `json:"id"`
		Method    string `json:"method"`
		Params    any    `json:"params"`
		SessionID string `json:"sessionId,omitempty"`
	}{id, method, params, session})
	if err != nil {
		return err
	}
	if _, err := b.out.Write(append(msg, 0)); err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	select {
	case m, ok := <-ch:
		if !ok {
			return fmt.Errorf("%s: chromium closed the pipe", method)
		}
		if m.Error != nil {
			return fmt.Errorf("%s: %s (%d)", method, m.Error.Message, m.Error.Code)
		}
		if result != nil {
			return json.Unmarshal(m.Result, result)
		}
		return nil
	case <-ctx.Done():
		b.mu.Lock()
		delete(b.waiting, id)
		b.mu.Unlock()
		return fmt.Errorf("%s: %w", method, ctx.Err())
	}
}

// page is one tab.
type page struct {
	t       *testing.T
	b       *browser
	session string
	name    string // for screenshots' file names
}

// commandTimeout bounds one DevTools command; generous, for a loaded
// machine.
const commandTimeout = 30 * time.Second

// must runs one command on the page and fails the test if it fails.
func (p *page) must(method string, params, result any) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.t.Context(), commandTimeout)
	defer cancel()
	if err := p.b.call(ctx, p.session, method, params, result); err != nil {
		p.t.Fatal(err)
	}
}

// openPage opens url in a new 1280-pixel-wide tab, in UTC.
func (b *browser) openPage(t *testing.T, name, url string) *page {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), commandTimeout)
	defer cancel()
	var target struct {
		TargetID string `json:"targetId"`
	}
	if err := b.call(ctx, "", "Target.createTarget", map[string]any{"url": "about:blank"}, &target); err != nil {
		t.Fatal(err)
	}
	var attached struct {
		SessionID string `json:"sessionId"`
	}
	if err := b.call(ctx, "", "Target.attachToTarget", map[string]any{"targetId": target.TargetID, "flatten": true}, &attached); err != nil {
		t.Fatal(err)
	}
	p := &page{t: t, b: b, session: attached.SessionID, name: name}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = b.call(ctx, "", "Target.closeTarget", map[string]any{"targetId": target.TargetID}, nil)
	})
	p.must("Runtime.enable", nil, nil)
	p.must("Log.enable", nil, nil)
	p.must("Page.enable", nil, nil)
	p.must("Emulation.setTimezoneOverride", map[string]any{"timezoneId": "UTC"}, nil)
	p.must("Emulation.setDeviceMetricsOverride", map[string]any{"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": false}, nil)
	p.must("Page.navigate", map[string]any{"url": url}, nil)
	return p
}

// problems returns what went wrong in the page so far.
func (p *page) problems() []string {
	p.b.mu.Lock()
	defer p.b.mu.Unlock()
	return append([]string(nil), p.b.problems[p.session]...)
}

// noProblems fails the test if the page threw, logged an error or broke
// its Content-Security-Policy.
func (p *page) noProblems() {
	p.t.Helper()
	for _, pr := range p.problems() {
		p.t.Errorf("page %s: %s", p.name, pr)
	}
}

// eval evaluates a JavaScript expression (awaiting a promise) and decodes
// its value into out (if non-nil).
func (p *page) eval(expr string, out any) error {
	ctx, cancel := context.WithTimeout(p.t.Context(), commandTimeout)
	defer cancel()
	var r struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		Exception *struct {
			Text      string `json:"text"`
			Exception struct {
				Description string `json:"description"`
			} `json:"exception"`
		} `json:"exceptionDetails"`
	}
	err := p.b.call(ctx, p.session, "Runtime.evaluate", map[string]any{
		"expression": expr, "returnByValue": true, "awaitPromise": true,
	}, &r)
	if err != nil {
		return err
	}
	if r.Exception != nil {
		return fmt.Errorf("%s: %s %s", expr, r.Exception.Text, r.Exception.Exception.Description)
	}
	if out != nil && len(r.Result.Value) > 0 {
		return json.Unmarshal(r.Result.Value, out)
	}
	return nil
}

// value evaluates expr into a T, failing the test on error.
func value[T any](p *page, expr string) T {
	p.t.Helper()
	var v T
	if err := p.eval(expr, &v); err != nil {
		p.t.Fatal(err)
	}
	return v
}

// waitDeadline is how long a condition may take to hold: polls happen every
// 1.5 s, and the machine may be loaded.
const waitDeadline = 45 * time.Second

// waitFor waits until the JavaScript condition cond is true; on timeout it
// fails the test, showing what the page says.
func (p *page) waitFor(what, cond string) {
	p.t.Helper()
	deadline := time.Now().Add(waitDeadline)
	for {
		var ok bool
		err := p.eval("!!("+cond+")", &ok)
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			var body string
			_ = p.eval(`document.body ? document.body.innerText.slice(0, 3000) : ""`, &body)
			p.t.Fatalf("page %s: waited %v for %s (%s; last error %v); the page says:\n%s", p.name, waitDeadline, what, cond, err, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitUntil waits until the Go condition holds.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitDeadline)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", waitDeadline, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// text is the visible text of the element matching selector ("" if none).
func (p *page) text(selector string) string {
	p.t.Helper()
	return value[string](p, fmt.Sprintf(`(() => { const e = document.querySelector(%q); return e ? e.innerText.trim() : ""; })()`, selector))
}

// visible reports whether the element matching selector is rendered:
// neither absent, hidden, inside something hidden nor in a closed
// <details>.
func (p *page) visible(selector string) bool {
	p.t.Helper()
	return value[bool](p, fmt.Sprintf(`(() => { const e = document.querySelector(%q); return !!e && e.checkVisibility(); })()`, selector))
}

// click clicks the middle of the element matching selector with the
// mouse, as a person would: it must be visible and not covered.
func (p *page) click(selector string) {
	p.t.Helper()
	var r *struct{ X, Y, W, H float64 }
	if err := p.eval(fmt.Sprintf(`(() => {
		const e = document.querySelector(%q);
		if (!e || !e.checkVisibility()) return null;
		e.scrollIntoView({block: "center"});
		const r = e.getBoundingClientRect();
		return {X: r.x + r.width / 2, Y: r.y + r.height / 2, W: r.width, H: r.height};
	})()`, selector), &r); err != nil {
		p.t.Fatal(err)
	}
	if r == nil || r.W == 0 || r.H == 0 {
		p.t.Fatalf("page %s: %s is not visible; cannot click it", p.name, selector)
	}
	for _, typ := range []string{"mouseMoved", "mousePressed", "mouseReleased"} {
		p.must("Input.dispatchMouseEvent", map[string]any{"type": typ, "x": r.X, "y": r.Y, "button": "left", "clickCount": 1}, nil)
	}
}

// typeInto replaces the text of the input matching selector, typing it.
func (p *page) typeInto(selector, s string) {
	p.t.Helper()
	p.click(selector)
	if err := p.eval(fmt.Sprintf(`document.querySelector(%q).value = ""`, selector), nil); err != nil {
		p.t.Fatal(err)
	}
	p.must("Input.insertText", map[string]any{"text": s}, nil)
}

// shot is a screenshot of the whole page with the document positions of
// some elements.
type shot struct {
	img   image.Image
	file  string
	rects map[string]image.Rectangle
}

// screenshot captures the whole page (not only the window) as a PNG saved
// under CANARYD_SCREENSHOT_DIR (or the test's temporary folder) as
// NAME.png, and measures the given elements.
func (p *page) screenshot(name string, selectors ...string) shot {
	p.t.Helper()
	return p.capture(name, true, selectors)
}

// screenshotWindow captures what the window shows (a modal dialog over its
// backdrop, as a person sees it), like screenshot.
func (p *page) screenshotWindow(name string, selectors ...string) shot {
	p.t.Helper()
	return p.capture(name, false, selectors)
}

func (p *page) capture(name string, whole bool, selectors []string) shot {
	p.t.Helper()
	params := map[string]any{"format": "png"}
	if whole {
		var m struct {
			Content struct{ Width, Height float64 } `json:"cssContentSize"`
		}
		p.must("Page.getLayoutMetrics", nil, &m)
		params["captureBeyondViewport"] = true
		params["clip"] = map[string]any{"x": 0, "y": 0, "width": 1280, "height": m.Content.Height, "scale": 1}
	}
	var r struct {
		Data string `json:"data"`
	}
	p.must("Page.captureScreenshot", params, &r)
	raw, err := base64.StdEncoding.DecodeString(r.Data)
	if err != nil {
		p.t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(raw))
	if err != nil {
		p.t.Fatalf("screenshot %s is not a PNG: %v", name, err)
	}
	dir := os.Getenv("CANARYD_SCREENSHOT_DIR")
	if dir == "" {
		dir = p.t.TempDir()
	}
	file := filepath.Join(dir, name+".png")
	if err := os.WriteFile(file, raw, 0o644); err != nil {
		p.t.Fatal(err)
	}
	p.t.Logf("screenshot %s: %dx%d, %s", name, img.Bounds().Dx(), img.Bounds().Dy(), file)
	s := shot{img: img, file: file, rects: map[string]image.Rectangle{}}
	scroll := "1"
	if !whole {
		scroll = "0"
	}
	for _, sel := range selectors {
		var b *struct{ X, Y, W, H float64 }
		if err := p.eval(fmt.Sprintf(`(() => { const e = document.querySelector(%q); if (!e) return null;
			const r = e.getBoundingClientRect(); return {X: r.x + scrollX * %s, Y: r.y + scrollY * %s, W: r.width, H: r.height}; })()`, sel, scroll, scroll), &b); err != nil {
			p.t.Fatal(err)
		}
		if b != nil {
			s.rects[sel] = image.Rect(int(b.X), int(b.Y), int(b.X+b.W), int(b.Y+b.H))
		}
	}
	return s
}

// rgb is a colour of the page's palette (style.css).
type rgb struct{ r, g, b uint8 }

var (
	stableBlue   = rgb{0x2f, 0x6f, 0xde}
	canaryOrange = rgb{0xe8, 0x87, 0x1e}
	badRed       = rgb{0xc8, 0x35, 0x2d}
)

// rect is the document area of the element selector measured with the
// screenshot, or the part of it between the fractions fx0 and fx1 of its
// width.
func (s shot) rect(t *testing.T, selector string, fx0, fx1 float64) image.Rectangle {
	t.Helper()
	r, ok := s.rects[selector]
	if !ok {
		t.Fatalf("%s: %s was not measured", s.file, selector)
	}
	w := float64(r.Dx())
	return image.Rect(r.Min.X+int(fx0*w), r.Min.Y, r.Min.X+int(fx1*w), r.Max.Y).Intersect(s.img.Bounds())
}

// count counts the pixels of r close to c.
func (s shot) count(r image.Rectangle, c rgb) int {
	n := 0
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			pr, pg, pb, _ := s.img.At(x, y).RGBA()
			if near(pr>>8, c.r) && near(pg>>8, c.g) && near(pb>>8, c.b) {
				n++
			}
		}
	}
	return n
}

// colourful counts the saturated pixels of r (any colour but grey).
func (s shot) colourful(r image.Rectangle) int {
	n := 0
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			pr, pg, pb, _ := s.img.At(x, y).RGBA()
			if hi, lo := max(pr, pg, pb)>>8, min(pr, pg, pb)>>8; hi-lo > 60 {
				n++
			}
		}
	}
	return n
}

func near(v uint32, want uint8) bool {
	d := int(v) - int(want)
	return d >= -24 && d <= 24
}

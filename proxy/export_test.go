package proxy

import "time"

// Window exposes the unexported sliding window to the external tests and
// benchmarks (this file is compiled only with them).
type Window = window

// NewWindow is newWindow.
func NewWindow(d time.Duration) *Window { return newWindow(d) }

// Record is window.record.
func (w *window) Record(now int64, lat time.Duration, isErr, isSlow bool) {
	w.record(now, lat, isErr, isSlow, true)
}

// Read is window.read.
func (w *window) Read(now int64) Stats {
	var st Stats
	w.read(now, &st)
	return st
}

// Classify is classify.
func Classify(err error, inboundGone bool) ErrorKind { return classify(err, inboundGone) }

package judge

// TODO(judge owner): delete this file when the real implementations exist.

// NewWindow returns the threshold judge: the window's error rate and p95
// compared with the SLO, given at least MinRequests canary requests.
func NewWindow(slo SLO) Judge { panic("unimplemented") }

// NewSequential returns the anytime-valid judge.
func NewSequential(slo SLO) Judge { panic("unimplemented") }

package metricgate_test

import (
	"strings"
	"testing"
	"time"

	"github.com/canaryd/canaryd/guard/metricgate"
)

func TestValidateInterval(t *testing.T) {
	for _, tt := range []struct {
		d  time.Duration
		ok bool
	}{{time.Second, true}, {30 * time.Second, true}, {time.Second - 1, false}, {0, false}, {-time.Minute, false}} {
		if err := metricgate.ValidateInterval(tt.d); (err == nil) != tt.ok {
			t.Errorf("ValidateInterval(%v) = %v; want ok = %v", tt.d, err, tt.ok)
		}
	}
}

func TestValidateURL(t *testing.T) {
	for _, tt := range []struct {
		url string
		ok  bool
	}{
		{"http://prometheus:9090", true},
		{"https://host/prometheus", true},
		{"https://u:hunter2@host/prometheus", true},
		{"", false},
		{"prometheus:9090", false},
		{"ftp://prometheus:9090", false},
		{"http://prometheus:9090/?x=1", false},
		{"https://u:hunter2@host/?x=1", false},
	} {
		err := metricgate.ValidateURL(tt.url)
		if (err == nil) != tt.ok {
			t.Errorf("ValidateURL(%q) = %v; want ok = %v", tt.url, err, tt.ok)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("ValidateURL(%q) = %v; leaks the password", tt.url, err)
		}
		if _, nerr := metricgate.New(metricgate.Config{URL: tt.url, Gates: []metricgate.Gate{{Name: "g", Query: "up", Max: new(1.0)}}}); (nerr == nil) != tt.ok {
			t.Errorf("New with URL %q: %v; want ok = %v, as ValidateURL", tt.url, nerr, tt.ok)
		}
	}
}

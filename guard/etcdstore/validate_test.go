package etcdstore_test

import (
	"testing"
	"time"

	"github.com/canaryd/canaryd/guard/etcdstore"
)

// The lease TTL's rule, at its boundaries: what CANARY_ETCD_LEASE_TTL is
// checked against as well; Config.Validate applies it to a TTL that is set.
func TestValidateLeaseTTL(t *testing.T) {
	for _, tt := range []struct {
		d  time.Duration
		ok bool
	}{
		{2 * time.Second, true}, {etcdstore.DefaultLeaseTTL, true}, {time.Minute, true},
		{time.Second, false}, {2500 * time.Millisecond, false}, {0, false}, {-2 * time.Second, false},
	} {
		if err := etcdstore.ValidateLeaseTTL(tt.d); (err == nil) != tt.ok {
			t.Errorf("ValidateLeaseTTL(%v) = %v; want ok = %v", tt.d, err, tt.ok)
		}
		c := etcdstore.Config{Endpoints: []string{"127.0.0.1:2379"}, ReplicaID: "r1", LeaseTTL: tt.d}
		if err := c.Validate(); (err == nil) != (tt.ok || tt.d == 0) {
			t.Errorf("Validate with LeaseTTL %v = %v; want ok = %v (0 is the default)", tt.d, err, tt.ok || tt.d == 0)
		}
	}
}

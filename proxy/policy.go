package proxy

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"strconv"
	"strings"
)

// LoadBalancer is how an endpoint is chosen within a backend's pool.
type LoadBalancer uint8

// The load balancers.
const (
	// LeastRequest picks two endpoints at random and sends the request to
	// the one with fewer requests in flight (the power of two random
	// choices; Envoy's LEAST_REQUEST with choice_count 2). O(1), no lock.
	// It is the zero value.
	LeastRequest LoadBalancer = iota
	// RoundRobin sends each request to the next endpoint in turn, over the
	// endpoints that take traffic. O(1), no lock.
	RoundRobin
)

// String returns the balancer's name as CANARY_LB spells it.
func (lb LoadBalancer) String() string {
	if lb == RoundRobin {
		return "round_robin"
	}
	return "least_request"
}

// ParseLoadBalancer parses least_request or round_robin.
func ParseLoadBalancer(s string) (LoadBalancer, error) {
	switch s {
	case "least_request":
		return LeastRequest, nil
	case "round_robin":
		return RoundRobin, nil
	}
	return 0, fmt.Errorf("%q must be least_request or round_robin", s)
}

// Resolver resolves a backend URL's host name to its addresses;
// *net.Resolver is one.
type Resolver interface {
	LookupHost(ctx context.Context, host string) (addrs []string, err error)
}

// StatusSet is a set of HTTP status codes, 100-599: which answers count as
// errors. The zero value means 5xx (every status from 500 to 599).
type StatusSet struct {
	bits [10]uint64 // bit s for status s
}

// ErrBadStatusSet is wrapped by ParseStatusSet's errors.
var ErrBadStatusSet = errors.New("invalid status set")

// ParseStatusSet parses a comma-separated list of status classes (4xx,
// 5xx) and statuses (429), e.g. "5xx,429".
func ParseStatusSet(s string) (StatusSet, error) {
	var set StatusSet
	if strings.TrimSpace(s) == "" {
		return set, fmt.Errorf("%w: empty (e.g. 5xx or 5xx,429)", ErrBadStatusSet)
	}
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		switch {
		case len(item) == 3 && item[0] >= '1' && item[0] <= '5' && strings.EqualFold(item[1:], "xx"):
			base := int(item[0]-'0') * 100
			for c := base; c < base+100; c++ {
				set.add(c)
			}
		default:
			c, err := strconv.Atoi(item)
			if err != nil || c < 100 || c > 599 || len(item) != 3 {
				return StatusSet{}, fmt.Errorf("%w: %q is neither a status (100-599) nor a class (1xx-5xx)", ErrBadStatusSet, item)
			}
			set.add(c)
		}
	}
	return set, nil
}

func (s *StatusSet) add(c int) { s.bits[c/64] |= 1 << (c % 64) }

// IsZero reports whether s is the zero value (which means 5xx).
func (s StatusSet) IsZero() bool { return s == StatusSet{} }

// Contains reports whether status c is in the set.
func (s StatusSet) Contains(c int) bool {
	if s.IsZero() {
		return c >= 500 && c <= 599
	}
	return c >= 0 && c < 640 && s.bits[c/64]&(1<<(c%64)) != 0
}

// String lists the set as ParseStatusSet reads it, whole classes as Nxx.
func (s StatusSet) String() string {
	if s.IsZero() {
		return "5xx"
	}
	var out []string
	for class := 100; class < 600; class += 100 {
		whole := true
		for c := class; c < class+100; c++ {
			whole = whole && s.Contains(c)
		}
		if whole {
			out = append(out, strconv.Itoa(class/100)+"xx")
			continue
		}
		for c := class; c < class+100; c++ {
			if s.Contains(c) {
				out = append(out, strconv.Itoa(c))
			}
		}
	}
	return strings.Join(out, ",")
}

// GRPCCodes is a set of gRPC status codes (0-16): which grpc-status values
// count as errors. The zero value means DefaultGRPCErrorCodes.
type GRPCCodes struct {
	mask uint32 // bit c for code c; bit 31 marks a set that was given
}

// gRPC status codes (google.golang.org/grpc/codes).
const (
	grpcOK                      = 0
	grpcCanceled                = 1
	grpcUnknown                 = 2
	grpcDeadlineExceeded        = 4
	grpcPermissionDenied        = 7
	grpcUnimplemented           = 12
	grpcInternal                = 13
	grpcUnavailable             = 14
	grpcDataLoss                = 15
	grpcUnauthenticated         = 16
	numGRPCCodes                = 17
	grpcCodesGiven       uint32 = 1 << 31
)

// grpcCodeNames are the codes' names as gRPC's Go codes.Code.String spells
// them: the grpc_code label values (those of go-grpc-prometheus'
// grpc_server_handled_total).
var grpcCodeNames = [numGRPCCodes]string{
	"OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound",
	"AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition",
	"Aborted", "OutOfRange", "Unimplemented", "Internal", "Unavailable", "DataLoss",
	"Unauthenticated",
}

// DefaultGRPCErrorCodes are UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED,
// INTERNAL, UNAVAILABLE and DATA_LOSS: the codes that say the server
// failed, not the caller (NOT_FOUND or INVALID_ARGUMENT are answers).
var DefaultGRPCErrorCodes = GRPCCodes{mask: grpcCodesGiven | 1<<grpcUnknown | 1<<grpcDeadlineExceeded |
	1<<grpcUnimplemented | 1<<grpcInternal | 1<<grpcUnavailable | 1<<grpcDataLoss}

// ParseGRPCCodes parses a comma-separated list of gRPC codes, as numbers
// (14) or names (UNAVAILABLE, Unavailable), e.g. "2,4,12,13,14,15".
func ParseGRPCCodes(s string) (GRPCCodes, error) {
	set := GRPCCodes{mask: grpcCodesGiven}
	if strings.TrimSpace(s) == "" {
		return GRPCCodes{}, errors.New("empty (e.g. 2,4,12,13,14,15)")
	}
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		c, err := strconv.Atoi(item)
		if err != nil {
			c = -1
			for i, name := range grpcCodeNames {
				if strings.EqualFold(strings.ReplaceAll(item, "_", ""), name) {
					c = i
				}
			}
		}
		if c < 0 || c >= numGRPCCodes {
			return GRPCCodes{}, fmt.Errorf("%q is not a gRPC status code (0-16, or a name like UNAVAILABLE)", item)
		}
		set.mask |= 1 << c
	}
	return set, nil
}

func (g GRPCCodes) effective() uint32 {
	if g.mask == 0 {
		return DefaultGRPCErrorCodes.mask
	}
	return g.mask
}

// Contains reports whether code c is in the set.
func (g GRPCCodes) Contains(c int) bool {
	return c >= 0 && c < numGRPCCodes && g.effective()&(1<<c) != 0
}

// String lists the codes as numbers, e.g. "2,4,12,13,14,15".
func (g GRPCCodes) String() string {
	m := g.effective() &^ grpcCodesGiven
	out := make([]string, 0, bits.OnesCount32(m))
	for c := range numGRPCCodes {
		if m&(1<<c) != 0 {
			out = append(out, strconv.Itoa(c))
		}
	}
	return strings.Join(out, ",")
}

package main

// End-to-end tests of gRPC through canaryd (issue 13): real gRPC clients
// and servers (google.golang.org/grpc, a test dependency here) on both
// sides, plaintext HTTP/2 both ways (CANARY_H2C, h2c:// backends).

import (
	"context"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// testService is a gRPC TestService backend: unary calls answer with its
// name (or fail with code), the full-duplex call echoes each message, the
// streaming output call sends what it is asked for as fast as flow control
// lets it.
type testService struct {
	testpb.UnimplementedTestServiceServer
	name  string
	code  atomic.Uint32 // the unary calls' status
	calls atomic.Int64
	sent  atomic.Int64 // messages StreamingOutputCall has sent
}

func (s *testService) stamp(ctx context.Context) {
	md, _ := metadata.FromIncomingContext(ctx)
	grpc.SetHeader(ctx, metadata.Pairs("x-served-by", s.name, "x-echo", strings.Join(md.Get("x-client"), ",")))
	grpc.SetTrailer(ctx, metadata.Pairs("x-trailer", s.name+"-done"))
}

func (s *testService) UnaryCall(ctx context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	s.calls.Add(1)
	s.stamp(ctx)
	if c := codes.Code(s.code.Load()); c != codes.OK {
		return nil, status.Error(c, s.name+" says no")
	}
	return &testpb.SimpleResponse{Payload: &testpb.Payload{Body: append([]byte(s.name+":"), req.GetPayload().GetBody()...)}}, nil
}

func (s *testService) FullDuplexCall(stream grpc.BidiStreamingServer[testpb.StreamingOutputCallRequest, testpb.StreamingOutputCallResponse]) error {
	s.calls.Add(1)
	s.stamp(stream.Context())
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: req.GetPayload()}); err != nil {
			return err
		}
	}
}

func (s *testService) StreamingInputCall(stream grpc.ClientStreamingServer[testpb.StreamingInputCallRequest, testpb.StreamingInputCallResponse]) error {
	s.calls.Add(1)
	s.stamp(stream.Context())
	total := 0
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			return stream.SendAndClose(&testpb.StreamingInputCallResponse{AggregatedPayloadSize: int32(total)})
		}
		if err != nil {
			return err
		}
		total += len(req.GetPayload().GetBody())
	}
}

func (s *testService) StreamingOutputCall(req *testpb.StreamingOutputCallRequest, stream grpc.ServerStreamingServer[testpb.StreamingOutputCallResponse]) error {
	s.calls.Add(1)
	for _, p := range req.GetResponseParameters() {
		if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: &testpb.Payload{Body: make([]byte, p.GetSize())}}); err != nil {
			return err
		}
		s.sent.Add(1)
	}
	return nil
}

// grpcBackend serves a testService over plaintext HTTP/2 and returns it
// with its h2c:// URL.
func grpcBackend(t *testing.T, name string) (*testService, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	svc := &testService{name: name}
	srv := grpc.NewServer()
	testpb.RegisterTestServiceServer(srv, svc)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return svc, "h2c://" + ln.Addr().String()
}

// grpcClient dials canaryd's traffic listener in plaintext, with fixed
// 64 KiB flow-control windows (no window growth), so that flow control is
// seen end to end.
func grpcClient(t *testing.T, in *instance) testpb.TestServiceClient {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+strings.TrimPrefix(in.traffic, "http://"),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return testpb.NewTestServiceClient(cc)
}

// TestE2EGRPCPassesThrough: unary, bidirectional-, client- and
// server-streaming calls through canaryd to an h2c backend, with headers,
// trailers and flow control intact.
func TestE2EGRPCPassesThrough(t *testing.T) {
	stable, stableURL := grpcBackend(t, "stable")
	_, canaryURL := grpcBackend(t, "canary")
	in := start(t, envFor(t, stableURL, canaryURL, "CANARY_H2C=true", "CANARY_WEIGHT=0"))
	c := grpcClient(t, in)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "x-client", "e2e")

	t.Run("unary", func(t *testing.T) {
		var header, trailer metadata.MD
		resp, err := c.UnaryCall(ctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("hello")}}, grpc.Header(&header), grpc.Trailer(&trailer))
		if err != nil {
			t.Fatal(err)
		}
		if got := string(resp.GetPayload().GetBody()); got != "stable:hello" {
			t.Errorf("answer = %q; want stable:hello", got)
		}
		if header.Get("x-served-by")[0] != "stable" || header.Get("x-echo")[0] != "e2e" {
			t.Errorf("headers = %v; want x-served-by stable, x-echo e2e", header)
		}
		if got := trailer.Get("x-trailer"); len(got) != 1 || got[0] != "stable-done" {
			t.Errorf("trailers = %v; want x-trailer stable-done", trailer)
		}
	})

	t.Run("bidirectional stream", func(t *testing.T) {
		stream, err := c.FullDuplexCall(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// Each message is answered before the next is sent: a proxy that
		// waited for more of the request body would stall here.
		for i := range 20 {
			body := []byte(strings.Repeat(string(rune('a'+i)), 100))
			if err := stream.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: body}}); err != nil {
				t.Fatalf("send %d: %v", i, err)
			}
			resp, err := stream.Recv()
			if err != nil {
				t.Fatalf("receive %d: %v", i, err)
			}
			if string(resp.GetPayload().GetBody()) != string(body) {
				t.Fatalf("echo %d = %q; want %q", i, resp.GetPayload().GetBody(), body)
			}
		}
		// Then both ways at once, well past every flow-control window
		// (64 KiB here, 4 MiB in canaryd's upstream Transport): 8 MiB.
		const n, size = 128, 64 << 10
		sendErr := make(chan error, 1)
		go func() {
			for i := range n {
				body := make([]byte, size)
				body[0] = byte(i)
				if err := stream.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: body}}); err != nil {
					sendErr <- err
					return
				}
			}
			sendErr <- stream.CloseSend()
		}()
		for i := range n {
			resp, err := stream.Recv()
			if err != nil {
				t.Fatalf("receive %d of %d: %v", i, n, err)
			}
			if b := resp.GetPayload().GetBody(); len(b) != size || b[0] != byte(i) {
				t.Fatalf("message %d: %d bytes starting %d; want %d starting %d", i, len(b), b[0], size, i)
			}
		}
		if err := <-sendErr; err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); err != io.EOF {
			t.Fatalf("end of stream = %v; want io.EOF (status OK)", err)
		}
		header, _ := stream.Header()
		if got := header.Get("x-served-by"); len(got) != 1 || got[0] != "stable" {
			t.Errorf("stream headers = %v; want x-served-by stable", header)
		}
		if got := stream.Trailer().Get("x-trailer"); len(got) != 1 || got[0] != "stable-done" {
			t.Errorf("stream trailers = %v; want x-trailer stable-done", stream.Trailer())
		}
	})

	t.Run("client stream", func(t *testing.T) {
		stream, err := c.StreamingInputCall(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for range 64 {
			if err := stream.Send(&testpb.StreamingInputCallRequest{Payload: &testpb.Payload{Body: make([]byte, 32<<10)}}); err != nil {
				t.Fatal(err)
			}
		}
		resp, err := stream.CloseAndRecv()
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetAggregatedPayloadSize() != 64*32<<10 {
			t.Errorf("the backend received %d bytes; want %d", resp.GetAggregatedPayloadSize(), 64*32<<10)
		}
		if got := stream.Trailer().Get("x-trailer"); len(got) != 1 || got[0] != "stable-done" {
			t.Errorf("stream trailers = %v; want x-trailer stable-done", stream.Trailer())
		}
	})

	t.Run("flow control", func(t *testing.T) {
		// The backend streams 64 MiB to a client that reads nothing for a
		// while: flow control must hold it back (what it sent is bounded by
		// the windows and buffers on the way, not by its will), and every
		// byte must arrive once the client reads.
		const n, size = 1024, 64 << 10
		params := make([]*testpb.ResponseParameters, n)
		for i := range params {
			params[i] = &testpb.ResponseParameters{Size: size}
		}
		stable.sent.Store(0)
		stream, err := c.StreamingOutputCall(ctx, &testpb.StreamingOutputCallRequest{ResponseParameters: params})
		if err != nil {
			t.Fatal(err)
		}
		waitUntil(t, "the backend to start sending", func() bool { return stable.sent.Load() > 0 })
		time.Sleep(time.Second)
		held := stable.sent.Load()
		t.Logf("sent while the client did not read: %d messages of 64 KiB", held)
		if held > 200 {
			t.Errorf("the backend sent %d of %d messages (%d MiB) to a client that read nothing; want flow control to hold it back", held, n, held*size>>20)
		}
		for i := range n {
			resp, err := stream.Recv()
			if err != nil {
				t.Fatalf("receive %d of %d: %v", i, n, err)
			}
			if len(resp.GetPayload().GetBody()) != size {
				t.Fatalf("message %d: %d bytes; want %d", i, len(resp.GetPayload().GetBody()), size)
			}
		}
		if _, err := stream.Recv(); err != io.EOF {
			t.Fatalf("end of stream = %v; want io.EOF", err)
		}
	})

	// Every call was judged: status OK, no error.
	if v, _ := in.metricValue("canary_grpc_responses_total", "backend", "stable", "grpc_code", "OK"); v != 4 {
		t.Errorf(`canary_grpc_responses_total{stable,OK} = %v; want 4`, v)
	}
	if v, _ := in.metricValue("canary_errors_total", "backend", "stable"); v != 0 {
		t.Errorf("canary_errors_total{stable} = %v; want 0", v)
	}
}

// TestE2EGRPCStatusJudged: a canary answering UNAVAILABLE (with HTTP 200)
// is rolled back for its error rate; one answering NOT_FOUND is not.
func TestE2EGRPCStatusJudged(t *testing.T) {
	for _, tc := range []struct {
		code       codes.Code
		label      string
		rolledBack bool
	}{
		{codes.Unavailable, "Unavailable", true},
		{codes.NotFound, "NotFound", false},
	} {
		t.Run(tc.label, func(t *testing.T) {
			_, stableURL := grpcBackend(t, "stable")
			canary, canaryURL := grpcBackend(t, "canary")
			canary.code.Store(uint32(tc.code))
			in := start(t, envFor(t, stableURL, canaryURL, "CANARY_H2C=true", "CANARY_WEIGHT=50", "CANARY_SLO_MIN_REQUESTS=50"))
			c := grpcClient(t, in)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			call := func(n int) (canaryAnswers int) {
				for range n {
					_, err := c.UnaryCall(ctx, &testpb.SimpleRequest{})
					switch status.Code(err) {
					case codes.OK:
					case tc.code:
						canaryAnswers++
					default:
						t.Fatalf("call: %v; want OK from stable or %v from the canary", err, tc.code)
					}
				}
				return canaryAnswers
			}
			if tc.rolledBack {
				deadline := time.Now().Add(30 * time.Second)
				for in.check().Recommendation != "rollback_error_rate" {
					if time.Now().After(deadline) {
						t.Fatalf("no rollback; last check %+v", in.check())
					}
					call(10)
				}
				before := canary.calls.Load()
				call(50)
				if after := canary.calls.Load(); after != before {
					t.Errorf("the canary got %d calls after its rollback; want 0", after-before)
				}
			} else {
				if got := call(400); got < 100 {
					t.Fatalf("the canary answered %d of 400 calls; want about half", got)
				}
				c := in.check()
				if strings.HasPrefix(c.Recommendation, "rollback_") || c.Canary.Errors != 0 {
					t.Errorf("recommendation %q with %d canary errors; want no rollback and no errors for NOT_FOUND", c.Recommendation, c.Canary.Errors)
				}
			}
			if v, _ := in.metricValue("canary_grpc_responses_total", "backend", "canary", "grpc_code", tc.label); v < 1 {
				t.Errorf("canary_grpc_responses_total{canary,%s} = %v; want the canary's answers", tc.label, v)
			}
			if v, _ := in.metricValue("canary_requests_total", "backend", "canary", "code", "200"); v < 1 {
				t.Errorf(`canary_requests_total{canary,200} = %v; want the canary's answers (HTTP 200 all)`, v)
			}
		})
	}
}

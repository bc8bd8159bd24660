package integrity_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/canaryd/canaryd/guard/integrity"
)

// BenchmarkVerify hashes generated trees from the page cache; MB/s is the
// verifier's throughput, allocs/op shows that memory does not grow with
// file size.
func BenchmarkVerify(b *testing.B) {
	for _, tc := range []struct {
		name  string
		files int
		size  int
	}{
		{"64x256KiB", 64, 256 << 10},
		{"1000x4KiB", 1000, 4 << 10},
		{"4x8MiB", 4, 8 << 20},
	} {
		rng := rand.New(rand.NewPCG(1, 2))
		files := make(map[string][]byte, tc.files)
		for i := range tc.files {
			data := make([]byte, tc.size)
			for j := range data {
				data[j] = byte(rng.Uint32())
			}
			files[fmt.Sprintf("d%02d/f%04d", i%16, i)] = data
		}
		r := newRelease(b, files)
		for _, workers := range []int{1, 0} {
			b.Run(fmt.Sprintf("%s/workers=%d", tc.name, workers), func(b *testing.B) {
				v := integrity.Verifier{Manifest: r.manifest, Root: r.root, Workers: workers}
				b.SetBytes(int64(tc.files * tc.size))
				b.ReportAllocs()
				for b.Loop() {
					if rep := v.Verify(context.Background()); !rep.Verified {
						b.Fatalf("Verify() = %s", rep.Summary)
					}
				}
			})
		}
	}
}

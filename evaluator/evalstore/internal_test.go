package evalstore

import (
	"bytes"
	"strings"
	"testing"

	"github.com/castor-nix/castor/store/nar"
)

// TestFileNAR checks the hand-made NAR of a regular file against
// nar.Writer's, for sizes around the padding boundaries.
func TestFileNAR(t *testing.T) {
	for _, n := range []int{0, 1, 7, 8, 9, 15, 16, 100, 4097} {
		contents := strings.Repeat("x", n)
		var want bytes.Buffer
		w := nar.NewWriter(&want)
		if err := w.WriteHeader(&nar.Header{Path: "/", Type: nar.TypeRegular, Size: int64(n)}); err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(contents))
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		got := append(append(fileNARHeader(int64(n)), contents...), fileNARTrailer(int64(n))...)
		if !bytes.Equal(got, want.Bytes()) {
			t.Errorf("size %d: NAR differs from nar.Writer's", n)
		}
	}
}

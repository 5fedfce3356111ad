package pathinfotest

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"testing"

	"github.com/castor-nix/castor/store/nixpath"
	"github.com/castor-nix/castor/store/pathinfo"
)

// NixPathInfo is one entry of `nix path-info --json` (Nix 2.8).
type NixPathInfo struct {
	Path       string   `json:"path"`
	NarHash    string   `json:"narHash"`
	NarSize    uint64   `json:"narSize"`
	References []string `json:"references"`
	Deriver    string   `json:"deriver"`
	CA         string   `json:"ca"`
}

// CompareNix checks that infos holds, for every path `nix path-info --json`
// printed (nixJSON), the same NAR hash and size, references, deriver and
// content address as Nix; want is how many paths Nix must know. It returns
// the number of paths compared.
func CompareNix(t testing.TB, infos pathinfo.Getter, nixJSON string, want int) int {
	t.Helper()
	var nix []NixPathInfo
	if err := json.Unmarshal([]byte(nixJSON), &nix); err != nil {
		t.Fatal(err)
	}
	if len(nix) != want {
		t.Fatalf("Nix knows %d of the %d outputs castor built", len(nix), want)
	}
	ctx := context.Background()
	for _, n := range nix {
		sp, err := nixpath.ParseAbsolute(n.Path)
		if err != nil {
			t.Fatal(err)
		}
		info, err := infos.Get(ctx, sp.Digest)
		if err != nil {
			t.Errorf("%s: castor did not register it: %v", n.Path, err)
			continue
		}
		if h, err := nixpath.ParseHash(n.NarHash, ""); err != nil || !bytes.Equal(h.Digest(), info.NarSHA256[:]) {
			t.Errorf("%s: NAR hash castor %s, Nix %s (%v)", n.Path, nixpath.FormatSHA256(info.NarSHA256), n.NarHash, err)
		}
		if info.NarSize != n.NarSize {
			t.Errorf("%s: NAR size castor %d, Nix %d", n.Path, info.NarSize, n.NarSize)
		}
		var refs []string
		for _, r := range info.References {
			refs = append(refs, r.Absolute())
		}
		slices.Sort(n.References)
		if !slices.Equal(refs, n.References) && !(len(refs) == 0 && len(n.References) == 0) {
			t.Errorf("%s: references castor %v, Nix %v", n.Path, refs, n.References)
		}
		deriver := ""
		if info.Deriver != nil {
			deriver = info.Deriver.Absolute()
		}
		if deriver != n.Deriver {
			t.Errorf("%s: deriver castor %s, Nix %s", n.Path, deriver, n.Deriver)
		}
		ca := ""
		if info.CA != nil {
			ca = info.CA.String()
		}
		if ca != n.CA {
			t.Errorf("%s: content address castor %q, Nix %q", n.Path, ca, n.CA)
		}
	}
	return len(nix)
}

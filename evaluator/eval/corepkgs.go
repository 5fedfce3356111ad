package eval

import (
	"embed"
	"strings"
)

// corepkgs are the files Nix serves under <nix/...> (only fetchurl.nix
// is still used); they live under a path no real file has.
//
//go:embed corepkgs/*.nix
var corepkgsFS embed.FS

const corepkgsPrefix = "/__corepkgs__/"

func corepkgsFile(path string) ([]byte, bool) {
	if !strings.HasPrefix(path, corepkgsPrefix) {
		return nil, false
	}
	b, err := corepkgsFS.ReadFile("corepkgs/" + path[len(corepkgsPrefix):])
	return b, err == nil
}

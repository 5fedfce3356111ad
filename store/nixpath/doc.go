// Package nixpath is Nix's naming layer: store paths (/nix/store/<hash>-<name>),
// nixbase32, the hashes Nix prints, content addresses, and the computation
// of store paths for sources, fixed outputs, text files and derivation
// outputs, exactly as Nix 2.8 does it.
//
// nixbase32 and the hash algorithms come from github.com/nix-community/go-nix,
// which is correct for them; store-path names are validated here, since
// go-nix's storepath checks are laxer than Nix's.
package nixpath

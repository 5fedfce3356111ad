// Package binarycache reads Nix binary caches (what `nix copy --to
// file://…` writes and cache.nixos.org serves): nix-cache-info, .narinfo
// files signed with ed25519 keys, and compressed NARs.
//
// Service is a pathinfo.Getter over a cache: looking a path up fetches and
// checks its narinfo (signature by a trusted key, fields present and
// well-formed), downloads and decompresses its NAR, checks FileHash and
// FileSize, ingests the NAR into the local castore while checking NarHash
// and NarSize, and only then answers with the PathInfo. A path that fails
// any check is an error; nothing of it becomes reachable (blobs already
// written are content-addressed and unreferenced; directories are only
// committed after the NAR checked out).
//
// URLs: nix+http://HOST/PATH, nix+https://…, nix+file:///DIR, with query
// parameters trusted-public-keys=NAME:KEY[ NAME:KEY…] (space or comma
// separated, repeatable) and unsigned=accept to opt out of signature
// checks explicitly.
package binarycache

// Package nartest helps tests of NAR and file-tree code: it generates file
// trees that exercise the corners of the format (executable, empty and
// multi-chunk files, dangling and absolute symlinks, empty and deep
// directories, names with spaces, unicode and odd bytes) and runs Nix 2.8's
// own tools as the oracle (nix-store --dump/--restore, nix hash path).
package nartest

// Package castorepb holds the protobuf messages of Snix's snix.castore.v1
// (Directory, entries, and the blob and directory service messages),
// generated from the .proto files beside it. The encoding is the wire
// contract with Snix: never renumber or retype a field.
//
// Regenerate with `go generate ./store/...` (needs protoc on PATH; the Go
// plugin comes from the tool directive in go.mod).
package castorepb

//go:generate sh -c "cd ../../.. && protoc -I . --plugin=protoc-gen-go=$(go tool -n protoc-gen-go) --go_out=. --go_opt=paths=source_relative store/castore/castorepb/castore.proto store/castore/castorepb/rpc_blobstore.proto store/castore/castorepb/rpc_directory.proto"

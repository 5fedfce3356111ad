// Package storepb holds the protobuf messages of Snix's snix.store.v1
// (PathInfo, NARInfo and the path-info service messages), generated from
// the .proto files beside it. Never renumber or retype a field.
//
// Regenerate with `go generate ./store/...` (needs protoc on PATH).
package storepb

//go:generate sh -c "cd ../../.. && protoc -I . --plugin=protoc-gen-go=$(go tool -n protoc-gen-go) --go_out=. --go_opt=paths=source_relative store/pathinfo/storepb/pathinfo.proto store/pathinfo/storepb/rpc_pathinfo.proto"

package castore

import "errors"

// Sentinel errors. Backends wrap them with context (%w); callers test with
// errors.Is.
var (
	// ErrNotFound: the blob or directory is not in the store.
	ErrNotFound = errors.New("not found")
	// ErrInvalid: a value (digest, name, directory, closure) breaks the
	// data model's rules.
	ErrInvalid = errors.New("invalid")
	// ErrCorrupt: stored data does not hash to the digest it is filed
	// under. A read returns this error instead of the wrong bytes.
	ErrCorrupt = errors.New("corrupt data")
)

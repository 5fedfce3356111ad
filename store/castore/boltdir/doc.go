// Package boltdir is a castore DirectoryService in a bbolt database: each
// Directory's canonical encoding under its digest in one bucket. A closure
// is committed in one transaction, so it becomes visible all at once.
package boltdir

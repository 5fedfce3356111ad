// Package castoretest is the conformance suite for castore backends. Every
// BlobService and DirectoryService implementation, and every wrapper around
// one, runs RunBlobService / RunDirectoryService from its own tests, so the
// contracts written on the interfaces are checked the same way everywhere.
package castoretest

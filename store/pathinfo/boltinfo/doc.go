// Package boltinfo is a PathInfoService in a bbolt database: Snix's
// PathInfo protobuf under the 20-byte store path digest.
package boltinfo

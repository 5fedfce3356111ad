// Package boltdb opens the bbolt database that holds castor's metadata
// (directories and path infos) in the embedded default store. One file
// holds both, in separate buckets, because bbolt allows one writer process
// per file and the two are always used together.
package boltdb

// Package memory holds castore backends that keep everything in process
// memory (URL memory://). They are for tests and for short-lived stores;
// nothing survives the process.
package memory

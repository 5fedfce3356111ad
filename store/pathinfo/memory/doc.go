// Package memory is a PathInfoService kept in process memory (memory://).
package memory

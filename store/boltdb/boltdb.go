package boltdb

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Open opens (creating if needed) the database at path. bbolt takes an
// exclusive lock on the file, so a second castor process using the same
// store gets a clear error instead of waiting forever.
func Open(path string, readOnly bool) (*bolt.DB, error) {
	if readOnly {
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no store database at %s: the store is empty (put something in with `castor store add`)", path)
		}
	} else if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	db, err := bolt.Open(path, 0o644, &bolt.Options{
		Timeout:  2 * time.Second,
		ReadOnly: readOnly,
		// The store's metadata is written in batches; the freelist is
		// rebuilt on open rather than synced on every commit.
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("store database %s is in use by another castor process (a running `castor mount`?): stop it and retry", path)
	}
	if err != nil {
		return nil, fmt.Errorf("open store database %s: %w", path, err)
	}
	return db, nil
}

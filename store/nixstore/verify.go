package nixstore

import (
	"context"
	"fmt"

	"github.com/castor-nix/castor/store/nar"
	"github.com/castor-nix/castor/store/nixpath"
	"github.com/castor-nix/castor/store/pathinfo"
)

// Damage is one store path that failed verification.
type Damage struct {
	Path string
	Err  error
}

// VerifyReport sums up a verification.
type VerifyReport struct {
	Paths   int
	Damaged []Damage
}

// VerifyProgress is told about each path as it is checked.
type VerifyProgress func(done int, path nixpath.StorePath)

// Verify checks every recorded path: its tree must be complete, every blob
// must hash to its digest (blob readers check that as they read), and the
// NAR rendered from the tree must have the recorded size and SHA-256. It
// returns an error only when it cannot go on (the path infos cannot be
// listed); damage is in the report.
func (s *Store) Verify(ctx context.Context, progress VerifyProgress) (*VerifyReport, error) {
	rep := &VerifyReport{}
	for info, err := range s.PathInfos.List(ctx) {
		if err != nil {
			return rep, fmt.Errorf("list path infos: %w", err)
		}
		rep.Paths++
		if progress != nil {
			progress(rep.Paths, info.StorePath)
		}
		if err := s.verifyOne(ctx, info); err != nil {
			if ctx.Err() != nil {
				return rep, ctx.Err()
			}
			rep.Damaged = append(rep.Damaged, Damage{Path: info.StorePath.Absolute(), Err: err})
		}
	}
	return rep, nil
}

func (s *Store) verifyOne(ctx context.Context, info *pathinfo.PathInfo) error {
	size, sum, err := nar.CalculateNAR(ctx, info.Node, s.Blobs, s.Directories)
	if err != nil {
		return err
	}
	if size != info.NarSize || sum != info.NarSHA256 {
		return fmt.Errorf("tree's NAR is %s (%d bytes), recorded %s (%d bytes)",
			nixpath.FormatSHA256(sum), size, nixpath.FormatSHA256(info.NarSHA256), info.NarSize)
	}
	return nil
}

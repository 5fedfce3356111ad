package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/castor-nix/castor/store/compose"
	"github.com/castor-nix/castor/store/nixpath"
	"github.com/castor-nix/castor/store/nixstore"
)

func newCopyCommand(g *globals) *cobra.Command {
	var from string
	var jobs int
	cmd := &cobra.Command{
		Use:   "copy --from URL STOREPATH...",
		Short: "Fetch the closures of store paths from a binary cache into the store",
		Long: `Fetches each STOREPATH and everything it references (its closure) from the
binary cache at URL, in parallel, checking signatures and hashes, and records
them in the store. Paths already in the store are not fetched again.

URL is nix+https://HOST/PATH, nix+http://… or nix+file:///DIR, with
?trusted-public-keys=NAME:KEY (the cache's public key; repeatable) or
?unsigned=accept to skip signature checks.`,
		Example: `  castor store copy --from 'nix+https://cache.example.org?trusted-public-keys=cache.example.org-1:6NCH…=' /nix/store/…-hello-2.12`,
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if from == "" {
				return fmt.Errorf("--from is required: the binary cache to copy from")
			}
			roots := make([]nixpath.StorePath, len(args))
			for i, a := range args {
				p, err := nixpath.ParseAbsolute(a)
				if err != nil {
					return err
				}
				roots[i] = p
			}
			svc, st, err := g.openStore(false)
			if err != nil {
				return err
			}
			defer svc.Close()
			src, err := compose.OpenSubstituter(from, svc)
			if err != nil {
				return err
			}
			stats := &nixstore.CopyStats{}
			bar := newByteProgress(cmd.ErrOrStderr(), -1, "copying")
			done := make(chan struct{})
			go func() {
				t := time.NewTicker(100 * time.Millisecond)
				defer t.Stop()
				for {
					select {
					case <-done:
						return
					case <-t.C:
						bar.Describe(fmt.Sprintf("%d/%d paths", stats.Done.Load(), stats.Paths.Load()))
						bar.Set(stats.Bytes.Load())
					}
				}
			}()
			start := time.Now()
			err = st.CopyClosure(cmd.Context(), src, roots, jobs, stats)
			close(done)
			bar.Finish()
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "copied %d of %d paths (%.1f MiB transferred) in %.1fs\n",
				stats.Fetched.Load(), stats.Paths.Load(), float64(stats.Bytes.Load())/(1<<20), time.Since(start).Seconds())
			return nil
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "binary cache URL (required)")
	cmd.Flags().IntVarP(&jobs, "jobs", "j", 8, "paths fetched at once")
	return cmd
}

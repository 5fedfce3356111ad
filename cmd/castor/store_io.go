package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/castor-nix/castor/store/fsimport"
	"github.com/castor-nix/castor/store/nixpath"
)

func newDumpCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "dump STOREPATH[/SUB]",
		Short: "Write the NAR of a store path to stdout (byte-identical to nix-store --dump)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, st, err := g.openStore(true)
			if err != nil {
				return err
			}
			defer svc.Close()
			out := cmd.OutOrStdout()
			if isTerminal(out) {
				return fmt.Errorf("refusing to write a NAR to a terminal: redirect stdout to a file or pipe")
			}
			bw := bufio.NewWriterSize(out, 1<<20)
			if err := st.Dump(cmd.Context(), bw, args[0]); err != nil {
				return err
			}
			return bw.Flush()
		},
	}
}

func newImportNARCommand(g *globals) *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "import-nar --name NAME [FILE]",
		Short: "Add the tree in a NAR (from FILE or stdin) as a store path, and print it",
		Long: `Reads a NAR, checks it strictly, stores its tree and records it as the
content-addressed store path NAME gets when Nix adds the same tree
(nix-store --add-fixed --recursive sha256). Nothing is recorded unless the
whole NAR is valid.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if name == "" {
				return fmt.Errorf("--name is required: the store path's name, e.g. --name hello-2.12")
			}
			var in io.Reader = cmd.InOrStdin()
			total := int64(-1)
			if len(args) == 1 && args[0] != "-" {
				f, err := os.Open(args[0])
				if err != nil {
					return err
				}
				defer f.Close()
				if st, err := f.Stat(); err == nil {
					total = st.Size()
				}
				in = f
			}
			svc, st, err := g.openStore(false)
			if err != nil {
				return err
			}
			defer svc.Close()
			bar := newByteProgress(cmd.ErrOrStderr(), total, "importing")
			info, err := st.ImportNAR(cmd.Context(), bufio.NewReaderSize(&countingReader{r: in, p: bar}, 1<<20), name)
			bar.Finish()
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), info.StorePath.Absolute())
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "name of the store path (required)")
	return cmd
}

func newVerifyCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "verify",
		Short: "Check that every store path's tree is complete and hashes right; exit 1 on damage",
		Long: `Renders the NAR of every recorded store path from the castore and compares
its size and SHA-256 with the recorded ones. This reads every blob (each is
checked against its BLAKE3 digest) and every directory. Damaged paths are
listed with what is wrong; the exit status is 1 if there are any.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, st, err := g.openStore(true)
			if err != nil {
				return err
			}
			defer svc.Close()
			bar := newCountProgress(cmd.ErrOrStderr(), -1, "verifying")
			rep, err := st.Verify(cmd.Context(), func(done int, _ nixpath.StorePath) { bar.Set(int64(done)) })
			bar.Finish()
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			for _, d := range rep.Damaged {
				fmt.Fprintf(w, "damaged: %s: %v\n", d.Path, d.Err)
			}
			fmt.Fprintf(w, "%d paths checked, %d damaged\n", rep.Paths, len(rep.Damaged))
			if len(rep.Damaged) > 0 {
				return &exitError{code: 1, err: fmt.Errorf("%d damaged paths: re-add or re-fetch them", len(rep.Damaged))}
			}
			return nil
		},
	}
}

func newAddCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "add PATH...",
		Short: "Add files or trees to the store and print their store paths (like nix-store --add)",
		Long: `Adds each PATH (a file, directory or symlink) as the content-addressed store
path Nix gives it (nix-store --add): /nix/store/<hash>-<basename of PATH>,
where the hash covers the NAR of the tree. Files are read once; their
contents are chunked, compressed and deduplicated in the castore.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, st, err := g.openStore(false)
			if err != nil {
				return err
			}
			defer svc.Close()
			for _, path := range args {
				bar := newByteProgress(cmd.ErrOrStderr(), -1, "adding "+filepath.Base(path))
				info, err := st.AddPath(cmd.Context(), path, func(p fsimport.Progress) {
					if p.TotalBytes > 0 {
						bar.SetTotal(int64(p.TotalBytes))
					}
					bar.Set(int64(p.Bytes))
				})
				bar.Finish()
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), info.StorePath.Absolute())
			}
			return nil
		},
	}
}

package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/castor-nix/castor/builder/realisecmd"
	"github.com/castor-nix/castor/store/castore"
	"github.com/castor-nix/castor/store/nixpath"
	"github.com/castor-nix/castor/store/pathinfo"
)

func newStoreCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "store",
		Short: "Put paths into the store, get them out, inspect and verify it",
	}
	cmd.AddCommand(
		newAddCommand(g),
		newCopyCommand(g),
		newDumpCommand(g),
		newImportNARCommand(g),
		newPathInfoCommand(g),
		newLsCommand(g),
		newCatCommand(g),
		newVerifyCommand(g),
		realisecmd.NewImportExportCommand(g.builderStore),
		realisecmd.NewExportCommand(g.builderStore),
	)
	return cmd
}

func newPathInfoCommand(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "path-info [--json] STOREPATH...",
		Short: "Show the metadata of store paths (NAR hash and size, references, signatures, castore root)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, st, err := g.openStore(true)
			if err != nil {
				return err
			}
			defer svc.Close()
			var infos []*pathinfo.PathInfo
			for _, a := range args {
				info, err := st.PathInfo(cmd.Context(), a)
				if err != nil {
					return err
				}
				infos = append(infos, info)
			}
			if asJSON {
				return writePathInfoJSON(cmd.OutOrStdout(), infos)
			}
			for i, info := range infos {
				if i > 0 {
					fmt.Fprintln(cmd.OutOrStdout())
				}
				writePathInfoText(cmd.OutOrStdout(), info)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON in the shape of `nix path-info --json`, plus the castore root")
	return cmd
}

// writePathInfoText prints narinfo-style lines, so they compare directly
// with a binary cache's .narinfo.
func writePathInfoText(w io.Writer, p *pathinfo.PathInfo) {
	fmt.Fprintf(w, "StorePath: %s\n", p.StorePath.Absolute())
	fmt.Fprintf(w, "NarHash: %s\n", nixpath.FormatSHA256(p.NarSHA256))
	fmt.Fprintf(w, "NarSize: %d\n", p.NarSize)
	refs := make([]string, len(p.References))
	for i, r := range p.References {
		refs[i] = r.String()
	}
	fmt.Fprintf(w, "References: %s\n", strings.Join(refs, " "))
	if p.Deriver != nil {
		fmt.Fprintf(w, "Deriver: %s\n", p.Deriver.String())
	}
	for _, s := range p.Signatures {
		fmt.Fprintf(w, "Sig: %s\n", s)
	}
	if p.CA != nil {
		fmt.Fprintf(w, "CA: %s\n", p.CA)
	}
	fmt.Fprintf(w, "Castore: %s\n", describeNode(p.Node))
}

func describeNode(n castore.Node) string {
	switch n.Kind {
	case castore.KindDirectory:
		return fmt.Sprintf("directory %s size=%d", n.Digest, n.Size)
	case castore.KindFile:
		x := ""
		if n.Executable {
			x = " executable"
		}
		return fmt.Sprintf("file %s size=%d%s", n.Digest, n.Size, x)
	}
	return fmt.Sprintf("symlink -> %s", n.Target)
}

type pathInfoJSON struct {
	Path       string      `json:"path"`
	NarHash    string      `json:"narHash"`
	NarSize    uint64      `json:"narSize"`
	References []string    `json:"references"`
	Deriver    string      `json:"deriver,omitempty"`
	Signatures []string    `json:"signatures,omitempty"`
	CA         string      `json:"ca,omitempty"`
	Castore    castoreJSON `json:"castore"`
}

type castoreJSON struct {
	Type       string          `json:"type"`
	Digest     *castore.Digest `json:"digest,omitempty"`
	Size       *uint64         `json:"size,omitempty"`
	Executable bool            `json:"executable,omitempty"`
	Target     string          `json:"target,omitempty"`
}

func writePathInfoJSON(w io.Writer, infos []*pathinfo.PathInfo) error {
	out := make([]pathInfoJSON, 0, len(infos))
	for _, p := range infos {
		j := pathInfoJSON{
			Path:       p.StorePath.Absolute(),
			NarHash:    "sha256-" + base64.StdEncoding.EncodeToString(p.NarSHA256[:]),
			NarSize:    p.NarSize,
			References: []string{},
			Castore:    castoreJSON{Type: p.Node.Kind.String()},
		}
		for _, r := range p.References {
			j.References = append(j.References, r.Absolute())
		}
		if p.Deriver != nil {
			j.Deriver = p.Deriver.Absolute()
		}
		for _, s := range p.Signatures {
			j.Signatures = append(j.Signatures, s.String())
		}
		if p.CA != nil {
			j.CA = p.CA.String()
		}
		switch p.Node.Kind {
		case castore.KindDirectory, castore.KindFile:
			d, size := p.Node.Digest, p.Node.Size
			j.Castore.Digest, j.Castore.Size, j.Castore.Executable = &d, &size, p.Node.Executable
		case castore.KindSymlink:
			j.Castore.Target = p.Node.Target
		}
		out = append(out, j)
	}
	enc := json.NewEncoder(w)
	return enc.Encode(out)
}

func newLsCommand(g *globals) *cobra.Command {
	var long bool
	cmd := &cobra.Command{
		Use:   "ls [-l] STOREPATH[/SUB]",
		Short: "List a directory in the store (or show a file or symlink)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, st, err := g.openStore(true)
			if err != nil {
				return err
			}
			defer svc.Close()
			_, node, err := st.Resolve(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if node.Kind != castore.KindDirectory {
				fmt.Fprintln(w, lsLine(castore.NamedNode{Name: args[0], Node: node}, long))
				return nil
			}
			dir, err := st.Directories.GetDirectory(cmd.Context(), node.Digest)
			if err != nil {
				return err
			}
			for _, e := range dir.Entries() {
				fmt.Fprintln(w, lsLine(e, long))
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&long, "long", "l", false, "show type, mode and size, like ls -l")
	return cmd
}

func lsLine(e castore.NamedNode, long bool) string {
	if !long {
		return e.Name
	}
	switch e.Kind {
	case castore.KindDirectory:
		return fmt.Sprintf("dr-xr-xr-x %12d %s", 0, e.Name)
	case castore.KindFile:
		mode := "-r--r--r--"
		if e.Executable {
			mode = "-r-xr-xr-x"
		}
		return fmt.Sprintf("%s %12d %s", mode, e.Size, e.Name)
	}
	return fmt.Sprintf("lrwxrwxrwx %12d %s -> %s", len(e.Target), e.Name, e.Target)
}

func newCatCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "cat STOREPATH/FILE",
		Short: "Print a file from the store",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, st, err := g.openStore(true)
			if err != nil {
				return err
			}
			defer svc.Close()
			_, node, err := st.Resolve(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if node.Kind != castore.KindFile {
				return fmt.Errorf("%s is a %s, not a file", args[0], node.Kind)
			}
			r, err := st.Blobs.OpenBlob(cmd.Context(), node.Digest)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			defer r.Close()
			_, err = io.Copy(cmd.OutOrStdout(), r)
			return err
		},
	}
}

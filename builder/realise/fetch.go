package realise

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"

	"github.com/castor-nix/castor/builder"
)

// builtin runs a built-in builder. Only builtin:fetchurl exists here: it
// downloads "url" into the output (flat), marks it executable if
// "executable" is "1", or, with "unpack" = "1", takes the download to be
// a NAR of the output. The output's hash is then checked by Ingest like
// any fixed output.
func (r *Realiser) builtin(ctx context.Context, n *node, logw io.Writer) (*builder.Build, builder.Outputs, error) {
	drv := n.drv
	if drv.Builder != "builtin:fetchurl" {
		return nil, nil, fmt.Errorf("%w: built-in builder %q", builder.ErrUnsupported, drv.Builder)
	}
	if !drv.IsFixedOutput() {
		return nil, nil, fmt.Errorf("%w: builtin:fetchurl derivations must be fixed-output", builder.ErrInvalid)
	}
	out := n.outputs["out"]
	b := &builder.Build{
		Outputs:        []string{builder.StoreDir + "/" + out.String()},
		RefscanNeedles: []string{out.HashPart()},
	}
	rawURL, ok := drv.Env["url"]
	if !ok {
		return nil, nil, fmt.Errorf("%w: builtin:fetchurl without a url", builder.ErrInvalid)
	}
	fmt.Fprintf(logw, "downloading '%s'...\n", rawURL)
	body, err := r.open(ctx, rawURL)
	if err != nil {
		return nil, nil, err
	}
	defer body.Close()

	dir, err := os.MkdirTemp("", "castor-fetch-")
	if err != nil {
		return nil, nil, err
	}
	cleanup := func() error { return os.RemoveAll(dir) }
	root := filepath.Join(dir, "root")
	dst := filepath.Join(root, b.Outputs[0])
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		cleanup()
		return nil, nil, err
	}
	if drv.Env["unpack"] == "1" {
		// The download is the output's NAR: hand it on as it is.
		narFile := filepath.Join(dir, "download.nar")
		if err := saveTo(ctx, narFile, body, 0o644); err != nil {
			cleanup()
			return nil, nil, fmt.Errorf("downloading '%s': %w", rawURL, err)
		}
		return b, &narOutputs{path: narFile, cleanup: cleanup}, nil
	}
	mode := os.FileMode(0o644)
	if drv.Env["executable"] == "1" {
		mode = 0o755
	}
	if err := saveTo(ctx, dst, body, mode); err != nil {
		cleanup()
		return nil, nil, fmt.Errorf("downloading '%s': %w", rawURL, err)
	}
	return b, &builder.DirOutputs{Root: root, Paths: b.Outputs, Cleanup: cleanup}, nil
}

// open returns the contents of a file:// or http(s):// URL.
func (r *Realiser) open(ctx context.Context, rawURL string) (io.ReadCloser, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("%w: url %q: %v", builder.ErrInvalid, rawURL, err)
	}
	switch u.Scheme {
	case "file":
		f, err := os.Open(u.Path)
		if err != nil {
			return nil, fmt.Errorf("downloading '%s': %w", rawURL, err)
		}
		return f, nil
	case "http", "https":
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
		if err != nil {
			return nil, err
		}
		resp, err := r.opts.HTTPClient.Do(req)
		if err != nil {
			return nil, fmt.Errorf("downloading '%s': %w", rawURL, err)
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return nil, fmt.Errorf("unable to download '%s': HTTP error %d", rawURL, resp.StatusCode)
		}
		return resp.Body, nil
	}
	return nil, fmt.Errorf("%w: builtin:fetchurl cannot fetch %s URLs (%s)", builder.ErrUnsupported, u.Scheme, rawURL)
}

func saveTo(ctx context.Context, p string, r io.Reader, mode os.FileMode) error {
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, ctxReader{ctx, r}); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Chmod(p, mode)
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// narOutputs is one output already in NAR form.
type narOutputs struct {
	path    string
	cleanup func() error
}

func (o *narOutputs) WriteNAR(ctx context.Context, i int, w io.Writer) error {
	f, err := os.Open(o.path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, ctxReader{ctx, f})
	return err
}

func (o *narOutputs) Close() error { return o.cleanup() }

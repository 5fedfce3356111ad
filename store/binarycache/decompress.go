package binarycache

import (
	"bytes"
	"compress/bzip2"
	"fmt"
	"io"
	"os/exec"
	"sync"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// Decompressors, chosen by measurement (bench: go test -bench Decompress
// ./store/binarycache; figures in the package's benchmark file):
//
//   - xz: the xz binary (liblzma) when installed, about 15x faster than
//     the pure-Go github.com/ulikunitz/xz, which is the fallback;
//   - zstd: github.com/klauspost/compress/zstd;
//   - bzip2: lbzip2 or bzip2 binaries when installed (multi-threaded /
//     faster than compress/bzip2), else compress/bzip2;
//   - none.
//
// Each returns a reader of the decompressed stream; Close releases it and
// reports a decompressor's failure if the stream was not read to the end.
func decompress(method string, r io.Reader) (io.ReadCloser, error) {
	switch method {
	case "none", "":
		return io.NopCloser(r), nil
	case "zstd":
		// The frame checksum (xxhash, 6% of a copy's CPU time) is not
		// checked: NarHash, checked on the decompressed bytes, is the
		// check that counts, and damage fails it too.
		d, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(0), zstd.WithDecoderLowmem(false), zstd.IgnoreChecksum(true))
		if err != nil {
			return nil, err
		}
		return &funcCloser{Reader: d, close: func() error { d.Close(); return nil }}, nil
	case "xz":
		if p, err := exec.LookPath("xz"); err == nil {
			// -T0: xz (5.4 on) decodes the blocks of a multi-block stream
			// (caches written with parallel-compression=true) on every
			// core: a 150 MB stream took 1.24 s instead of 2.18 s on 2
			// cores. A one-block stream, Nix's default, decodes as before.
			return pipeThrough(p, []string{"-d", "-c", "-q", "-T0"}, r)
		}
		d, err := xz.NewReader(r)
		if err != nil {
			return nil, err
		}
		return io.NopCloser(d), nil
	case "bzip2":
		for _, name := range []string{"lbzip2", "bzip2"} {
			if p, err := exec.LookPath(name); err == nil {
				return pipeThrough(p, []string{"-d", "-c"}, r)
			}
		}
		return io.NopCloser(bzip2.NewReader(r)), nil
	}
	return nil, fmt.Errorf("compression %q is not supported (want none, xz, zstd or bzip2)", method)
}

type funcCloser struct {
	io.Reader
	close func() error
}

func (f *funcCloser) Close() error { return f.close() }

// pipeThrough runs a decompressor process fed from r. Its exit status is
// checked at EOF, so a corrupt stream is an error, not a short read.
func pipeThrough(path string, args []string, r io.Reader) (io.ReadCloser, error) {
	cmd := exec.Command(path, args...)
	cmd.Stdin = r
	cmd.WaitDelay = decompressorWaitDelay
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return &procReader{cmd: cmd, out: out, stderr: &stderr}, nil
}

type procReader struct {
	cmd    *exec.Cmd
	out    io.ReadCloser
	stderr *bytes.Buffer
	once   sync.Once
	err    error
	eof    bool
}

func (p *procReader) Read(b []byte) (int, error) {
	if p.eof {
		// Wait closed the pipe; keep answering what the end was.
		if p.err != nil {
			return 0, p.err
		}
		return 0, io.EOF
	}
	n, err := p.out.Read(b)
	if err == io.EOF {
		p.eof = true
		if werr := p.wait(); werr != nil {
			return n, werr
		}
	}
	return n, err
}

func (p *procReader) wait() error {
	p.once.Do(func() {
		if err := p.cmd.Wait(); err != nil {
			p.err = fmt.Errorf("%s: %v: %s", p.cmd.Path, err, bytes.TrimSpace(p.stderr.Bytes()))
		}
	})
	return p.err
}

func (p *procReader) Close() error {
	p.out.Close()
	if p.cmd.ProcessState == nil {
		p.cmd.Process.Kill()
	}
	p.wait()
	return nil
}

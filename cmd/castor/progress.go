package main

import (
	"io"
	"time"

	"github.com/schollz/progressbar/v3"
)

// progress draws a progress bar on a terminal and nothing elsewhere, so
// piped output and logs stay clean.
type progress struct {
	bar *progressbar.ProgressBar
}

// newByteProgress shows bytes done of total (-1: unknown) with a rate.
func newByteProgress(w io.Writer, total int64, what string) *progress {
	if !isTerminal(w) {
		return &progress{}
	}
	return &progress{bar: progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(what),
		progressbar.OptionShowBytes(true),
		progressbar.OptionShowCount(),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionSetWidth(30),
	)}
}

// newCountProgress shows items done of total (-1: unknown).
func newCountProgress(w io.Writer, total int64, what string) *progress {
	if !isTerminal(w) {
		return &progress{}
	}
	return &progress{bar: progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(what),
		progressbar.OptionShowCount(),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionSetWidth(30),
	)}
}

func (p *progress) Set(n int64) {
	if p.bar != nil {
		_ = p.bar.Set64(n)
	}
}

func (p *progress) Add(n int64) {
	if p.bar != nil {
		_ = p.bar.Add64(n)
	}
}

func (p *progress) Describe(s string) {
	if p.bar != nil {
		p.bar.Describe(s)
	}
}

func (p *progress) Finish() {
	if p.bar != nil {
		_ = p.bar.Finish()
	}
}

// countingReader counts bytes into a progress bar.
type countingReader struct {
	r io.Reader
	p *progress
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.p.Add(int64(n))
	return n, err
}

// SetTotal changes the total once it is known.
func (p *progress) SetTotal(n int64) {
	if p.bar != nil && p.bar.GetMax64() != n {
		p.bar.ChangeMax64(n)
	}
}

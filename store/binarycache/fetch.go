package binarycache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// errNotFound is a file absent from the cache (404, ENOENT).
var errNotFound = errors.New("not in the cache")

// transientError is a failure worth retrying (5xx, 429, network errors).
type transientError struct{ err error }

func (e *transientError) Error() string { return e.err.Error() }
func (e *transientError) Unwrap() error { return e.err }

func isTransient(err error) bool {
	var t *transientError
	return errors.As(err, &t)
}

// fetcher gets files of a cache by path relative to its root.
type fetcher interface {
	// fetch opens rel for reading. Absent files wrap errNotFound;
	// failures worth retrying are *transientError. The caller closes.
	fetch(ctx context.Context, rel string) (io.ReadCloser, error)
	String() string
}

// fileFetcher reads a cache directory on the local filesystem.
type fileFetcher struct{ dir string }

func (f *fileFetcher) String() string { return "file://" + f.dir }

func (f *fileFetcher) fetch(ctx context.Context, rel string) (io.ReadCloser, error) {
	if !filepath.IsLocal(rel) {
		return nil, fmt.Errorf("cache file %q escapes the cache directory", rel)
	}
	file, err := os.Open(filepath.Join(f.dir, rel))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s/%s: %w", f, rel, errNotFound)
	}
	return file, err
}

// httpFetcher reads a cache over HTTP(S), retrying transient failures
// with exponential backoff before the body starts.
type httpFetcher struct {
	base    *url.URL
	client  *http.Client
	retries int
	backoff time.Duration
	// idle bounds the wait for the next bytes of a body: a stalled
	// server is an error (worth a retry), not a hang.
	idle time.Duration
}

func (f *httpFetcher) String() string { return f.base.String() }

func newHTTPFetcher(base *url.URL) *httpFetcher {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 32
	tr.ResponseHeaderTimeout = 30 * time.Second
	// NARs are already compressed: don't let Go ask for gzip on top.
	tr.DisableCompression = true
	return &httpFetcher{
		base:    base,
		client:  &http.Client{Transport: tr},
		retries: 4,
		backoff: 200 * time.Millisecond,
		idle:    60 * time.Second,
	}
}

func (f *httpFetcher) fetch(ctx context.Context, rel string) (io.ReadCloser, error) {
	u := f.base.JoinPath(rel)
	if strings.Contains(rel, "://") {
		abs, err := url.Parse(rel)
		if err != nil {
			return nil, err
		}
		u = abs
	}
	var lastErr error
	for attempt := 0; attempt <= f.retries; attempt++ {
		if attempt > 0 {
			d := f.backoff << (attempt - 1)
			d += time.Duration(rand.Int64N(int64(d)/2 + 1))
			slog.Debug("retrying cache request", "url", u.String(), "attempt", attempt, "after", d, "error", lastErr)
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(d):
			}
		}
		body, err := f.once(ctx, u)
		if err == nil || !isTransient(err) {
			return body, err
		}
		lastErr = err
	}
	return nil, fmt.Errorf("%s: giving up after %d attempts: %w", u, f.retries+1, lastErr)
}

func (f *httpFetcher) once(ctx context.Context, u *url.URL) (io.ReadCloser, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		cancel(nil)
		return nil, err
	}
	resp, err := f.client.Do(req)
	if err == nil && resp.StatusCode == http.StatusOK {
		return newIdleBody(resp.Body, f.idle, cancel), nil
	}
	defer cancel(nil)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var ne net.Error
		if errors.As(err, &ne) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return nil, &transientError{err}
		}
		return nil, &transientError{err}
	}
	switch {
	case resp.StatusCode == http.StatusOK:
		return resp.Body, nil
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone:
		resp.Body.Close()
		return nil, fmt.Errorf("%s: %w", u, errNotFound)
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusRequestTimeout:
		resp.Body.Close()
		return nil, &transientError{fmt.Errorf("%s: HTTP %s", u, resp.Status)}
	default:
		resp.Body.Close()
		return nil, fmt.Errorf("%s: HTTP %s", u, resp.Status)
	}
}

// readSmall reads a whole small file from the cache.
func readSmall(ctx context.Context, f fetcher, rel string, limit int64) ([]byte, error) {
	for attempt := 0; ; attempt++ {
		body, err := f.fetch(ctx, rel)
		if err != nil {
			return nil, err
		}
		data, err := io.ReadAll(io.LimitReader(body, limit+1))
		body.Close()
		if err != nil {
			// A body cut short is worth another try, once.
			if attempt == 0 && ctx.Err() == nil {
				continue
			}
			return nil, fmt.Errorf("%s/%s: %w", f, rel, err)
		}
		if int64(len(data)) > limit {
			return nil, fmt.Errorf("%s/%s: larger than %d bytes", f, rel, limit)
		}
		return data, nil
	}
}

// errStalled ends a body whose server sent nothing for too long.
var errStalled = errors.New("the server stopped sending")

// idleBody cancels its request when no bytes arrive for idle, so a
// stalled download fails (transiently) instead of hanging.
type idleBody struct {
	body   io.ReadCloser
	timer  *time.Timer
	idle   time.Duration
	cancel context.CancelCauseFunc
}

func newIdleBody(body io.ReadCloser, idle time.Duration, cancel context.CancelCauseFunc) *idleBody {
	b := &idleBody{body: body, idle: idle, cancel: cancel}
	b.timer = time.AfterFunc(idle, func() { cancel(errStalled) })
	return b
}

func (b *idleBody) Read(p []byte) (int, error) {
	n, err := b.body.Read(p)
	b.timer.Reset(b.idle)
	if err != nil && err != io.EOF {
		err = &transientError{err}
	}
	return n, err
}

func (b *idleBody) Close() error {
	b.timer.Stop()
	err := b.body.Close()
	b.cancel(nil)
	return err
}

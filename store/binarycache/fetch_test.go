package binarycache

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"
)

// TestStalledBodyFails: a server that stops sending mid-body makes the read
// fail with a transient error instead of hanging.
func TestStalledBodyFails(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		w.Write(make([]byte, 100))
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	f := newHTTPFetcher(u)
	f.idle = 100 * time.Millisecond
	body, err := f.fetch(context.Background(), "nar/x.nar")
	if err != nil {
		t.Fatal(err)
	}
	defer body.Close()
	n, err := io.Copy(io.Discard, body)
	if err == nil || !isTransient(err) {
		t.Fatalf("read %d bytes of a stalled body, err %v; want a transient error", n, err)
	}
}

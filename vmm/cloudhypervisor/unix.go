package cloudhypervisor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
)

// Server is the base URL of the API; the host is ignored on a unix socket.
const Server = "http://localhost/api/v1"

// ErrStatus is wrapped by Expect's errors.
var ErrStatus = errors.New("cloud-hypervisor API: unexpected status")

// NewUnixClient returns a client of the API served on the unix socket at
// path. Each request dials the socket afresh (Cloud Hypervisor's API
// server handles one request per connection).
func NewUnixClient(path string) (*ClientWithResponses, error) {
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		DisableKeepAlives: true,
	}}
	return NewClientWithResponses(Server, WithHTTPClient(hc))
}

// Response is what every generated response type has.
type Response interface {
	StatusCode() int
	Status() string
	GetBody() []byte
}

// Expect returns nil if resp has one of the wanted status codes, and
// otherwise an error naming op with the status and the body Cloud
// Hypervisor sent (its error message). A transport error err is returned
// wrapped as is.
func Expect(op string, resp Response, err error, want ...int) error {
	if err != nil {
		return fmt.Errorf("cloud-hypervisor API %s: %w", op, err)
	}
	for _, w := range want {
		if resp.StatusCode() == w {
			return nil
		}
	}
	body := strings.TrimSpace(string(resp.GetBody()))
	if len(body) > 2000 {
		body = body[:2000] + "…"
	}
	if body == "" {
		return fmt.Errorf("%w: %s: %s", ErrStatus, op, resp.Status())
	}
	return fmt.Errorf("%w: %s: %s: %s", ErrStatus, op, resp.Status(), body)
}

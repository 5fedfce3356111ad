package agentvm_test

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/castor-nix/castor/e2e/testenv"
	"github.com/castor-nix/castor/images"
	"github.com/castor-nix/castor/images/agent"
	"github.com/castor-nix/castor/images/imagestest"
	"github.com/castor-nix/castor/vmm/agentvm"
)

// BenchmarkBootRunShutdown boots an agent VM, runs /bin/true in it and
// powers it off, once per iteration, reporting the mean time to the
// agent's hello and the guest's own uptime at that point.
func BenchmarkBootRunShutdown(b *testing.B) {
	testenv.RequireBinary(b, "qemu-system-x86_64")
	img, err := images.AgentImage(context.Background(), imagestest.CacheDir(), "")
	if err != nil {
		b.Skip(err)
	}
	ctx := context.Background()
	var ready, uptime time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		vm, err := agentvm.Boot(ctx, agentvm.Options{Image: img, Logger: quiet})
		if err != nil {
			b.Fatal(err)
		}
		ready += vm.Timings.AgentReady
		uptime += vm.Timings.GuestUptime
		if _, err := vm.Run(ctx, &agent.Run{Command: []string{"/bin/true"}}, io.Discard, io.Discard); err != nil {
			b.Fatal(err)
		}
		if err := vm.Shutdown(ctx); err != nil {
			b.Fatal(err)
		}
		vm.Close()
	}
	b.ReportMetric(float64(ready.Milliseconds())/float64(b.N), "ms-to-agent")
	b.ReportMetric(float64(uptime.Milliseconds())/float64(b.N), "guest-ms-at-hello")
}

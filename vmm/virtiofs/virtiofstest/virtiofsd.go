package virtiofstest

import (
	"fmt"
	"os"
	"os/exec"
	"time"
)

// VirtiofsdPath is QEMU's own virtio-fs daemon, the yardstick castor's
// backend is measured against.
const VirtiofsdPath = "/usr/lib/qemu/virtiofsd"

// StartVirtiofsd starts QEMU's virtiofsd (needs root) serving dir on sock,
// with cache=always (long timeouts, as castor's store uses), and waits
// until the socket exists. stop kills it and removes the socket.
func StartVirtiofsd(dir, sock string) (cmd *exec.Cmd, stop func(), err error) {
	cmd = exec.Command(VirtiofsdPath, "--socket-path="+sock, "-o", "source="+dir, "-o", "cache=always", "-o", "log_level=err")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	stop = func() { cmd.Process.Kill(); cmd.Wait(); os.Remove(sock) }
	for i := 0; ; i++ {
		if _, err := os.Stat(sock); err == nil {
			return cmd, stop, nil
		}
		if i == 500 {
			stop()
			return nil, nil, fmt.Errorf("virtiofsd made no socket %s in 5 s", sock)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

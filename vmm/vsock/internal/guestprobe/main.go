// Command guestprobe runs inside a test VM to exercise vsock in both
// directions through castor's vhost-user-vsock backend: it listens on a
// guest port and echoes what the host sends there, and it connects to the
// host, sends a deterministic byte pattern and prints the hash of the
// answer. Tests build it statically and put it into the initramfs.
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// Pattern is the bytes the probe sends: byte i is i*31+7.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*31 + 7)
	}
	return b
}

type vconn int

func (c vconn) Read(p []byte) (int, error) {
	n, err := unix.Read(int(c), p)
	if n == 0 && err == nil {
		return 0, io.EOF
	}
	if n < 0 {
		n = 0
	}
	return n, err
}

func (c vconn) Write(p []byte) (int, error) {
	w := 0
	for w < len(p) {
		n, err := unix.Write(int(c), p[w:])
		if err != nil {
			return w, err
		}
		w += n
	}
	return w, nil
}

func main() {
	listen := flag.Uint("listen", 1234, "guest port to echo on")
	connect := flag.Uint("connect", 5000, "host port to send to")
	size := flag.Int("size", 1<<20, "bytes to send to the host")
	flag.Parse()

	lfd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM, 0)
	check("socket", err)
	check("bind", unix.Bind(lfd, &unix.SockaddrVM{CID: unix.VMADDR_CID_ANY, Port: uint32(*listen)}))
	check("listen", unix.Listen(lfd, 1))
	fmt.Println("LISTENING")

	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		nfd, _, err := unix.Accept(lfd)
		check("accept", err)
		c := vconn(nfd)
		data, err := io.ReadAll(c)
		check("read from host", err)
		_, err = c.Write(data)
		check("echo", err)
		unix.Close(nfd)
		fmt.Printf("ECHOED %d\n", len(data))
	}()
	go func() {
		defer wg.Done()
		fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM, 0)
		check("socket", err)
		check("connect", unix.Connect(fd, &unix.SockaddrVM{CID: unix.VMADDR_CID_HOST, Port: uint32(*connect)}))
		c := vconn(fd)
		_, err = c.Write(pattern(*size))
		check("write to host", err)
		check("shutdown", unix.Shutdown(fd, unix.SHUT_WR))
		reply, err := io.ReadAll(c)
		check("read reply", err)
		sum := sha256.Sum256(reply)
		unix.Close(fd)
		fmt.Printf("GUEST-GOT %d %s\n", len(reply), hex.EncodeToString(sum[:]))
	}()
	wg.Wait()
	fmt.Println("PROBE-DONE")
}

func check(what string, err error) {
	if err != nil {
		fmt.Printf("PROBE-ERROR %s: %v\n", what, err)
		os.Exit(1)
	}
}

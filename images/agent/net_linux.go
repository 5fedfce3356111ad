package agent

import (
	"fmt"
	"net"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ifUp brings the named interface up.
func ifUp(name string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("%s up: %w", name, err)
	}
	return nil
}

// User-mode network addresses (QEMU's slirp defaults).
var (
	guestAddr = net.IPv4(10, 0, 2, 15).To4()
	netmask   = net.IPv4(255, 255, 255, 0).To4()
	gateway   = net.IPv4(10, 0, 2, 2).To4()
)

// DNS is the resolver of the user-mode network.
const DNS = "10.0.2.3"

// configureNet gives eth0 its address, brings it up, adds the default
// route and writes /etc/resolv.conf.
func configureNet() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	for _, s := range []struct {
		req uint
		ip  net.IP
	}{{unix.SIOCSIFADDR, guestAddr}, {unix.SIOCSIFNETMASK, netmask}} {
		ifr, err := unix.NewIfreq("eth0")
		if err != nil {
			return err
		}
		if err := ifr.SetInet4Addr(s.ip); err != nil {
			return err
		}
		if err := unix.IoctlIfreq(fd, s.req, ifr); err != nil {
			return fmt.Errorf("eth0 address: %w", err)
		}
	}
	if err := ifUp("eth0"); err != nil {
		return err
	}
	var rt rtentry
	rt.gateway = sockaddrIn(gateway)
	rt.dst = sockaddrIn(net.IPv4zero.To4())
	rt.genmask = sockaddrIn(net.IPv4zero.To4())
	rt.flags = unix.RTF_UP | unix.RTF_GATEWAY
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCADDRT, uintptr(unsafe.Pointer(&rt))); e != 0 {
		return fmt.Errorf("default route: %w", e)
	}
	os.MkdirAll("/etc", 0o755)
	return os.WriteFile("/etc/resolv.conf", []byte("nameserver "+DNS+"\n"), 0o644)
}

// rtentry is struct rtentry of <linux/route.h> on 64-bit Linux (120 bytes).
type rtentry struct {
	pad1    uint64
	dst     [16]byte
	gateway [16]byte
	genmask [16]byte
	flags   uint16
	pad2    int16
	_       [4]byte
	pad3    uint64
	pad4    uintptr
	metric  int16
	_       [6]byte
	dev     uintptr
	mtu     uint64
	window  uint64
	irtt    uint16
	_       [6]byte
}

func sockaddrIn(ip net.IP) [16]byte {
	var sa [16]byte
	*(*uint16)(unsafe.Pointer(&sa[0])) = unix.AF_INET
	copy(sa[4:8], ip)
	return sa
}

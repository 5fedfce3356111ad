// Command virtiofsbench measures, inside a QEMU (TCG) guest, a sequential
// read of a large file and `ls -l` of a directory of many files over
// virtiofs, served by
//
//   - castor: castor's vhost-user backend (vmm/virtiofs) with castor's
//     filesystem (fs) over an in-memory castore filled by fsimport,
//   - castor-loopback: the same backend with go-fuse's loopback filesystem
//     over the directory (the transport alone),
//   - virtiofsd: QEMU's own /usr/lib/qemu/virtiofsd over the directory
//     (cache=always, the long-timeout mode comparable to castor's).
//
// Each run boots a fresh VM (cold guest page cache); the guest times its
// own work from /proc/uptime and prints it on the serial console. The
// server's CPU time (user+system) and minor page faults during the boot
// come from /proc/PID/stat (for castor, this process's; for virtiofsd,
// with its sandboxed child).
//
// Reading the numbers: the guest mounts the share with castor's
// read-ahead (2 MiB; FUSE INIT cannot raise it past 128 KiB, sysfs can),
// so a sequential read goes out as 1 MiB READs. Under TCG the guest's own
// work (allocating page-cache pages, copying them to dd, taking the
// interrupts) costs several milliseconds per MiB, the server about one:
// mostly the host's first touch of guest pages the guest never wrote
// (castor's guests boot with init_on_alloc=0), which both servers pay as
// page faults. The read measures the guest more than the server, and runs
// swing by 10-30% with the load on the host.
// Hence the paired column: rounds are interleaved, and each round's read
// time of virtiofsd divided by the server's is a ratio above 1 where the
// server was faster; the median of those ratios and the rounds won are
// shown. BenchmarkServers in vmm/virtiofs measures the servers without a
// guest.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	castorfs "github.com/castor-nix/castor/fs"
	"github.com/castor-nix/castor/images"
	"github.com/castor-nix/castor/images/agent"
	"github.com/castor-nix/castor/store/castore/memory"
	"github.com/castor-nix/castor/store/fsimport"
	"github.com/castor-nix/castor/vmm"
	"github.com/castor-nix/castor/vmm/vhostuser"
	"github.com/castor-nix/castor/vmm/virtiofs"
	"github.com/castor-nix/castor/vmm/virtiofs/virtiofstest"
)

// The guest is castor's own TCG machine: its kernel command line and CPU
// model (see vmm.TCGCPU), the same for every server.
const kernelArgs = vmm.DefaultKernelArgs + " " + vmm.TCGKernelArgs

// initScript mounts the share as castor's agent mounts the store,
// read-ahead included (agent.VirtiofsReadAheadKB), then times its reads.
var initScript = `#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
for m in $(cat /etc/castor/modules); do insmod $m; done
mount -t virtiofs bench /mnt || echo MOUNT-FAILED
d=$(stat -c %d /mnt); echo ` + strconv.Itoa(agent.VirtiofsReadAheadKB) + ` > /sys/class/bdi/$((d>>8)):$((d&255))/read_ahead_kb || echo READAHEAD-FAILED
cs() { read up rest < /proc/uptime; echo ${up%.*}${up#*.}; }
t0=$(cs)
dd if=/mnt/data/big.bin of=/dev/null bs=1M 2>/dev/null
t1=$(cs)
ls -l /mnt/data/many > /dev/null
t2=$(cs)
ls -l /mnt/data/many > /dev/null
t3=$(cs)
echo RESULT read_cs=$((t1-t0)) ls_cs=$((t2-t1)) ls_warm_cs=$((t3-t2)) files=$(ls /mnt/data/many | wc -l) size=$(stat -c %s /mnt/data/big.bin)
poweroff -f
`

func main() {
	sizeMiB := flag.Int("size", 256, "MiB in the big file")
	nfiles := flag.Int("files", 2000, "files in the directory listed")
	runs := flag.Int("runs", 8, "boots per configuration, interleaved (medians and paired ratios are shown)")
	only := flag.String("only", "", "run only this configuration")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of this program (castor's servers run in it) during the boots to this file")
	flag.Parse()
	if err := run(*sizeMiB, *nfiles, *runs, *only, *cpuProfile); err != nil {
		fmt.Fprintln(os.Stderr, "virtiofsbench:", err)
		os.Exit(1)
	}
}

// startProfile starts a CPU profile into path ("" for none) and returns
// what stops it.
func startProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

type result struct {
	read, ls, lsWarm time.Duration
	cpu              time.Duration // the server's, during the boot
	faults           int64         // the server's minor page faults
}

// server is a running virtio-fs server: the process serving (this one for
// castor's) and how to stop it.
type server struct {
	pid      int
	children bool // count the process's children (virtiofsd's sandbox)
	stop     func()
}

func run(sizeMiB, nfiles, runs int, only, cpuProfile string) error {
	ctx := context.Background()
	work, err := os.MkdirTemp("", "virtiofsbench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	share := filepath.Join(work, "share")
	data := filepath.Join(share, "data")
	if err := makeData(data, sizeMiB, nfiles); err != nil {
		return err
	}
	spec, err := images.DefaultSpec([]byte(initScript))
	if err != nil {
		return err
	}
	cache, _ := os.UserCacheDir()
	img, err := images.Build(ctx, filepath.Join(cache, "castor-bench-images"), spec)
	if err != nil {
		return err
	}

	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	blobs, dirs := memory.NewBlobService(), memory.NewDirectoryService()
	t0 := time.Now()
	root, _, _, err := fsimport.Import(ctx, data, blobs, dirs, nil)
	if err != nil {
		return err
	}
	fmt.Printf("imported %d MiB + %d files into the castore in %v\n", sizeMiB, nfiles, time.Since(t0).Round(time.Millisecond))

	sec := 365 * 24 * time.Hour
	configs := []struct {
		name  string
		serve func(sock string) (*server, error)
	}{
		{"castor", func(sock string) (*server, error) {
			return serveCastor(sock, quiet, func(context.Context) (fuse.RawFileSystem, error) {
				return castorfs.New(castorfs.Roots{"data": root}, dirs, blobs, castorfs.Options{Logger: quiet})
			})
		}},
		{"castor-loopback", func(sock string) (*server, error) {
			return serveCastor(sock, quiet, func(context.Context) (fuse.RawFileSystem, error) {
				r, err := gofs.NewLoopbackRoot(share)
				if err != nil {
					return nil, err
				}
				return gofs.NewNodeFS(r, &gofs.Options{EntryTimeout: &sec, AttrTimeout: &sec}), nil
			})
		}},
		{"virtiofsd", func(sock string) (*server, error) {
			cmd, stop, err := virtiofstest.StartVirtiofsd(share, sock)
			if err != nil {
				return nil, err
			}
			return &server{pid: cmd.Process.Pid, children: true, stop: stop}, nil
		}},
	}
	// The import's garbage is collected now, not during the boots.
	runtime.GC()
	stopProfile, err := startProfile(cpuProfile)
	if err != nil {
		return err
	}
	defer stopProfile()
	// Runs are interleaved (castor, loopback, virtiofsd, castor, …) so
	// that load from elsewhere on the machine affects all alike.
	results := map[string][]result{}
	for i := 0; i < runs; i++ {
		for _, c := range configs {
			if only != "" && c.name != only {
				continue
			}
			sock := filepath.Join(work, c.name+".sock")
			srv, err := c.serve(sock)
			if err != nil {
				return fmt.Errorf("%s: %w", c.name, err)
			}
			cpu0, faults0, err0 := procUsage(srv)
			r, err := boot(img, sock, sizeMiB, nfiles)
			cpu1, faults1, err1 := procUsage(srv)
			srv.stop()
			if err != nil {
				return fmt.Errorf("%s: %w", c.name, err)
			}
			if err := errors.Join(err0, err1); err != nil {
				return fmt.Errorf("%s: %w", c.name, err)
			}
			r.cpu, r.faults = cpu1-cpu0, faults1-faults0
			results[c.name] = append(results[c.name], r)
		}
	}
	fmt.Printf("median of %d boots each, %d MiB file, %d files:\n", runs, sizeMiB, nfiles)
	fmt.Printf("%-16s %12s %8s %10s %12s %12s %10s   %s\n", "server", "read", "MB/s", "ls -l", "ls -l warm", "server CPU", "faults", "read vs virtiofsd, paired")
	for _, c := range configs {
		rs := results[c.name]
		if len(rs) == 0 {
			continue
		}
		med := func(f func(result) time.Duration) time.Duration {
			v := make([]time.Duration, len(rs))
			for i, r := range rs {
				v[i] = f(r)
			}
			sort.Slice(v, func(i, j int) bool { return v[i] < v[j] })
			return v[len(v)/2]
		}
		read := med(func(r result) time.Duration { return r.read })
		mbps := float64(sizeMiB) * 1.048576 / read.Seconds()
		fmt.Printf("%-16s %12v %8.0f %10v %12v %12v %10d   %s\n", c.name, read, mbps,
			med(func(r result) time.Duration { return r.ls }), med(func(r result) time.Duration { return r.lsWarm }),
			med(func(r result) time.Duration { return r.cpu }), int64(med(func(r result) time.Duration { return time.Duration(r.faults) })),
			paired(rs, results["virtiofsd"]))
	}
	return nil
}

// paired compares rs with base round by round: the median of base's read
// time over rs's (above 1: rs was faster) and in how many rounds rs was
// faster.
func paired(rs, base []result) string {
	n := min(len(rs), len(base))
	if n == 0 {
		return "-"
	}
	ratios := make([]float64, n)
	won := 0
	for i := range n {
		ratios[i] = base[i].read.Seconds() / rs[i].read.Seconds()
		if rs[i].read < base[i].read {
			won++
		}
	}
	sort.Float64s(ratios)
	return fmt.Sprintf("%.3fx, faster in %d of %d", ratios[n/2], won, n)
}

func serveCastor(sock string, log *slog.Logger, newFS virtiofs.NewFS) (*server, error) {
	l, err := vhostuser.Listen(sock)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		virtiofs.Serve(ctx, l, newFS, &virtiofs.Options{Logger: log}, false)
	}()
	return &server{pid: os.Getpid(), stop: func() { cancel(); <-done }}, nil
}

// procUsage returns the CPU time (user+system) and minor page faults so
// far of srv's process, all threads, from /proc/PID/stat. virtiofsd serves
// each connection from a child in its sandbox, which exits when the VM
// goes: for it, procUsage waits for the child to be reaped and counts it.
func procUsage(srv *server) (time.Duration, int64, error) {
	if srv.children {
		for i := 0; i < 300 && len(children(srv.pid)) > 0; i++ {
			time.Sleep(10 * time.Millisecond)
		}
	}
	st, err := procStat(srv.pid)
	if err != nil {
		return 0, 0, err
	}
	ticks, faults := st.utime+st.stime, st.minflt
	if srv.children {
		ticks, faults = ticks+st.cutime+st.cstime, faults+st.cminflt
	}
	// Times are in clock ticks (USER_HZ, 100 on Linux).
	return time.Duration(ticks) * 10 * time.Millisecond, faults, nil
}

// children lists the processes whose parent is pid.
func children(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := procStat(p); err == nil && st.ppid == int64(pid) {
			out = append(out, p)
		}
	}
	return out
}

type stat struct{ ppid, minflt, cminflt, utime, stime, cutime, cstime int64 }

// procStat reads /proc/PID/stat.
func procStat(pid int) (stat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return stat{}, err
	}
	// The fields after the command (which may hold spaces) start at
	// field 3: state ppid pgrp session tty_nr tpgid flags minflt cminflt
	// majflt cmajflt utime stime cutime cstime ...
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return stat{}, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 15 {
		return stat{}, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	n := func(k int) int64 { v, _ := strconv.ParseInt(f[k-3], 10, 64); return v }
	return stat{ppid: n(4), minflt: n(10), cminflt: n(11), utime: n(14), stime: n(15), cutime: n(16), cstime: n(17)}, nil
}

var resultRE = regexp.MustCompile(`RESULT read_cs=(\d+) ls_cs=(\d+) ls_warm_cs=(\d+) files=(\d+) size=(\d+)`)

func boot(img *images.Image, sock string, sizeMiB, nfiles int) (result, error) {
	var out bytes.Buffer
	cmd := exec.Command("qemu-system-x86_64",
		"-machine", "microvm,memory-backend=mem,rtc=on", "-accel", "tcg", "-cpu", vmm.TCGCPU,
		"-m", "1024M", "-object", "memory-backend-memfd,id=mem,size=1024M,share=on",
		"-global", "virtio-mmio.force-legacy=false",
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot", "-serial", "stdio",
		"-kernel", img.Kernel, "-initrd", img.Initramfs, "-append", kernelArgs,
		"-chardev", "socket,id=vfs,path="+sock,
		"-device", "vhost-user-fs-device,chardev=vfs,tag=bench,queue-size=1024",
	)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return result{}, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return result{}, fmt.Errorf("qemu: %v\n%s", err, out.String())
		}
	case <-time.After(10 * time.Minute):
		cmd.Process.Kill()
		<-done
		return result{}, fmt.Errorf("guest hung:\n%s", out.String())
	}
	if strings.Contains(out.String(), "-FAILED") {
		return result{}, fmt.Errorf("guest setup failed:\n%s", out.String())
	}
	m := resultRE.FindStringSubmatch(out.String())
	if m == nil {
		return result{}, fmt.Errorf("no result on the console:\n%s", out.String())
	}
	n := func(i int) int { v, _ := strconv.Atoi(m[i]); return v }
	if n(4) != nfiles || n(5) != sizeMiB<<20 {
		return result{}, fmt.Errorf("guest saw %d files and %d bytes:\n%s", n(4), n(5), out.String())
	}
	cs := func(i int) time.Duration { return time.Duration(n(i)) * 10 * time.Millisecond }
	return result{read: cs(1), ls: cs(2), lsWarm: cs(3)}, nil
}

func makeData(dir string, sizeMiB, nfiles int) error {
	if err := os.MkdirAll(filepath.Join(dir, "many"), 0o755); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, "big.bin"))
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	x := uint64(88172645463325252)
	for i := 0; i < sizeMiB; i++ {
		for j := 0; j < len(buf); j += 8 {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
			for k := 0; k < 8; k++ {
				buf[j+k] = byte(x >> (8 * k))
			}
		}
		if _, err := f.Write(buf); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	for i := 0; i < nfiles; i++ {
		p := filepath.Join(dir, "many", fmt.Sprintf("file-%05d", i))
		if err := os.WriteFile(p, []byte(strings.Repeat("x", i%200)), 0o644); err != nil {
			return err
		}
	}
	return nil
}

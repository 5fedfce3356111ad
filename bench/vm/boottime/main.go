// Command boottime measures what castor adds to a micro-VM's boot under
// QEMU: `castor vm run -- true` from start to the agent being ready and
// to exit, beside the same kernel booting a bare busybox init that
// powers off at once (through the same vmm code: microvm, QMP, -S/cont),
// runs interleaved so that load from elsewhere affects both alike.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/castor-nix/castor/images"
	"github.com/castor-nix/castor/vmm"
)

func main() {
	runs := flag.Int("runs", 10, "boots per configuration (median and min shown)")
	castor := flag.String("castor", "", "castor binary (default: built from this tree)")
	flag.Parse()
	if err := run(*runs, *castor); err != nil {
		fmt.Fprintln(os.Stderr, "boottime:", err)
		os.Exit(1)
	}
}

func run(runs int, castor string) error {
	ctx := context.Background()
	work, err := os.MkdirTemp("", "boottime")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	if castor == "" {
		castor = filepath.Join(work, "castor")
		b := exec.Command("go", "build", "-o", castor, "./cmd/castor")
		b.Stderr = os.Stderr
		if err := b.Run(); err != nil {
			return fmt.Errorf("building castor: %w", err)
		}
	}
	spec, err := images.DefaultSpec([]byte("#!/bin/sh\npoweroff -f\n"))
	if err != nil {
		return err
	}
	spec.Modules = nil
	bare, err := images.Build(ctx, images.DefaultCacheDir(), spec)
	if err != nil {
		return err
	}
	// Warm-up: the agent and its image get built and cached.
	if _, _, err := castorRun(castor); err != nil {
		return err
	}
	var bareT, readyT, exitT []time.Duration
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	for i := 0; i < runs; i++ {
		t0 := time.Now()
		m, err := vmm.New(vmm.Config{Hypervisor: vmm.QEMU, Kernel: bare.Kernel, Initramfs: bare.Initramfs, Logger: quiet})
		if err != nil {
			return err
		}
		if err := m.Create(ctx); err != nil {
			return err
		}
		if err := m.Start(ctx); err != nil {
			return err
		}
		if err := m.Wait(ctx); err != nil {
			return fmt.Errorf("bare boot: %w\n%s", err, m.Console())
		}
		bareT = append(bareT, time.Since(t0))
		m.Close()

		ready, exit, err := castorRun(castor)
		if err != nil {
			return err
		}
		readyT = append(readyT, ready)
		exitT = append(exitT, exit)
	}
	fmt.Printf("QEMU %s, TCG, 1 vCPU, 512 MiB; %d runs each, interleaved\n", qemuVersion(), runs)
	fmt.Printf("%-44s %10s %10s\n", "", "median", "min")
	row := func(name string, d []time.Duration) {
		fmt.Printf("%-44s %10v %10v\n", name, median(d).Round(time.Millisecond), minimum(d).Round(time.Millisecond))
	}
	row("bare busybox init: start -> QEMU exit", bareT)
	row("castor vm run -- true: start -> agent ready", readyT)
	row("castor vm run -- true: start -> exit", exitT)
	fmt.Printf("castor adds (medians, exit vs bare): %v\n", (median(exitT) - median(bareT)).Round(time.Millisecond))
	return nil
}

// castorRun runs `castor vm run -- true` and returns when its agent was
// ready (the debug line reaching stderr) and when it exited, from start.
func castorRun(castor string) (ready, exit time.Duration, err error) {
	cmd := exec.Command(castor, "--log-level", "debug", "--store", "memory://", "vm", "run", "--", "true")
	cmd.Env = append(os.Environ(), "CASTOR_AGENT=")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return 0, 0, err
	}
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, 0, err
	}
	var log strings.Builder
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		if ready == 0 && strings.Contains(sc.Text(), "agentvm: agent ready") {
			ready = time.Since(t0)
		}
		log.WriteString(sc.Text() + "\n")
	}
	if err := cmd.Wait(); err != nil {
		return 0, 0, fmt.Errorf("castor vm run: %v\n%s", err, log.String())
	}
	exit = time.Since(t0)
	if ready == 0 {
		return 0, 0, fmt.Errorf("castor vm run: no agent-ready line\n%s", log.String())
	}
	return ready, exit, nil
}

func qemuVersion() string {
	out, err := exec.Command("qemu-system-x86_64", "--version").Output()
	if err != nil {
		return "?"
	}
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimPrefix(line, "QEMU emulator version ")
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func minimum(d []time.Duration) time.Duration {
	m := d[0]
	for _, x := range d {
		m = min(m, x)
	}
	return m
}

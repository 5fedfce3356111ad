package vmm

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
)

// ErrNoKVM is wrapped by KVMUsable's answer when hardware virtualisation
// cannot be used.
var ErrNoKVM = errors.New("KVM not usable")

var kvmOnce struct {
	sync.Once
	err error
}

// KVMUsable reports (nil) whether KVM can run guests here: /dev/kvm opens
// read-write and the CPU advertises hardware virtualisation (vmx or svm
// in /proc/cpuinfo). The second check matters inside VMs whose host
// exposes /dev/kvm without nested virtualisation: there QEMU's KVM guests
// hang or abort, so castor uses TCG. The answer is computed once.
func KVMUsable() error {
	kvmOnce.Do(func() { kvmOnce.err = probeKVM("/dev/kvm", "/proc/cpuinfo") })
	return kvmOnce.err
}

func probeKVM(dev, cpuinfo string) error {
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNoKVM, err)
	}
	f.Close()
	info, err := os.ReadFile(cpuinfo)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNoKVM, err)
	}
	for _, line := range strings.Split(string(info), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || strings.TrimSpace(k) != "flags" {
			continue
		}
		for _, f := range strings.Fields(v) {
			if f == "vmx" || f == "svm" {
				return nil
			}
		}
		break
	}
	return fmt.Errorf("%w: %s opens but the CPU advertises no vmx/svm (nested virtualisation is off)", ErrNoKVM, dev)
}

package virtiofstest

import (
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/castor-nix/castor/vmm/vhostuser/vhostusertest"
)

const guard = 20 * time.Second

// Opcodes as on /dev/fuse (include/uapi/linux/fuse.h).
const (
	OpLookup = 1
	OpForget = 2
	OpOpen   = 14
	OpRead   = 15
	OpInit   = 26
)

// Init sends FUSE_INIT and checks the answer; Lookup looks a name up in
// the root and returns node id, attributes and status (0 or -errno);
// ReadAll opens a node and reads size bytes.
// StructBytes is the memory of v, for FUSE structs.
func StructBytes[T any](v *T) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(v)), unsafe.Sizeof(*v))
}

// Client speaks FUSE to a virtio-fs device through a FakeVM's request
// queue, as the guest kernel would.
type Client struct {
	T      testing.TB
	VM     *vhostusertest.FakeVM
	Req    *vhostusertest.Ring
	unique uint64
}

// Call sends one FUSE request and returns the reply header and body.
func (c *Client) Call(opcode uint32, nodeID uint64, in []byte, outLen int) (fuse.OutHeader, []byte) {
	c.T.Helper()
	c.unique++
	h := fuse.InHeader{Length: uint32(unsafe.Sizeof(fuse.InHeader{})) + uint32(len(in)), Opcode: opcode, Unique: c.unique, NodeId: nodeID}
	head, err := c.Req.Submit([]vhostusertest.Buf{
		{Data: append(append([]byte(nil), StructBytes(&h)...), in...)},
		{Len: int(unsafe.Sizeof(fuse.OutHeader{})), Writable: true},
		{Len: outLen, Writable: true},
	}, false)
	if err != nil {
		c.T.Fatal(err)
	}
	used, err := c.Req.WaitUsed(1, guard)
	if err != nil {
		c.T.Fatal(err)
	}
	if used[0].Head != head {
		c.T.Fatalf("completion for %d, want %d", used[0].Head, head)
	}
	ha, _ := c.Req.DescAddr(head, 1)
	var oh fuse.OutHeader
	copy(StructBytes(&oh), c.VM.Read(ha, int(unsafe.Sizeof(oh))))
	if oh.Unique != c.unique || int(oh.Length) != int(used[0].Len) {
		c.T.Fatalf("reply header %+v, used len %d", oh, used[0].Len)
	}
	ba, _ := c.Req.DescAddr(head, 2)
	return oh, c.VM.Read(ba, int(oh.Length)-int(unsafe.Sizeof(oh)))
}

func (c *Client) Init() {
	in := fuse.InitIn{Major: 7, Minor: 31, MaxReadAhead: 1 << 20}
	oh, body := c.Call(OpInit, 0, StructBytes(&in)[unsafe.Sizeof(fuse.InHeader{}):], int(unsafe.Sizeof(fuse.InitOut{})))
	if oh.Status != 0 {
		c.T.Fatalf("INIT status %d", oh.Status)
	}
	var out fuse.InitOut
	copy(StructBytes(&out), body)
	if out.Major != 7 {
		c.T.Fatalf("INIT major %d", out.Major)
	}
}

func (c *Client) Lookup(name string) (uint64, fuse.Attr, int32) {
	return c.LookupIn(1, name)
}

// LookupIn looks name up in the directory parent.
func (c *Client) LookupIn(parent uint64, name string) (uint64, fuse.Attr, int32) {
	oh, body := c.Call(OpLookup, parent, append([]byte(name), 0), int(unsafe.Sizeof(fuse.EntryOut{})))
	var e fuse.EntryOut
	copy(StructBytes(&e), body)
	return e.NodeId, e.Attr, oh.Status
}

func (c *Client) ReadAll(node uint64, size int) []byte {
	oin := fuse.OpenIn{Flags: syscall.O_RDONLY}
	oh, body := c.Call(OpOpen, node, StructBytes(&oin)[unsafe.Sizeof(fuse.InHeader{}):], int(unsafe.Sizeof(fuse.OpenOut{})))
	if oh.Status != 0 {
		c.T.Fatalf("OPEN status %d", oh.Status)
	}
	var oo fuse.OpenOut
	copy(StructBytes(&oo), body)
	var got []byte
	for len(got) < size {
		rin := fuse.ReadIn{Fh: oo.Fh, Offset: uint64(len(got)), Size: 128 << 10}
		oh, data := c.Call(OpRead, node, StructBytes(&rin)[unsafe.Sizeof(fuse.InHeader{}):], 128<<10)
		if oh.Status != 0 {
			c.T.Fatalf("READ status %d", oh.Status)
		}
		if len(data) == 0 {
			break
		}
		got = append(got, data...)
	}
	return got
}

// Start maps the VM's memory, sets up request queue index q and sends
// FUSE_INIT: the usual start of a session with one request queue.
func Start(t testing.TB, vm *vhostusertest.FakeVM, q int) *Client {
	t.Helper()
	if err := vm.MapMemory(); err != nil {
		t.Fatal(err)
	}
	rq, err := vm.SetupQueue(q)
	if err != nil {
		t.Fatal(err)
	}
	c := &Client{T: t, VM: vm, Req: rq}
	c.Init()
	return c
}

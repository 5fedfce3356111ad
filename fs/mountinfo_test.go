package fs

import (
	"fmt"
	"strings"
	"testing"
)

func escapeMountinfo(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case ' ', '\t', '\n', '\\':
			fmt.Fprintf(&b, "\\%03o", c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func TestTopMount(t *testing.T) {
	info := `22 1 0:21 / /proc rw,nosuid - proc proc rw
30 22 0:30 / /nix/store rw - ext4 /dev/vda rw
31 30 0:31 / /nix/store ro,nosuid,nodev - fuse.castor castor ro,user_id=0
40 1 0:40 / /with\040space rw shared:5 - tmpfs tmpfs rw
`
	for _, c := range []struct {
		mp, typ string
		found   bool
	}{
		{"/nix/store", "fuse.castor", true},
		{"/with space", "tmpfs", true},
		{"/proc", "proc", true},
		{"/nowhere", "", false},
	} {
		typ, found := topMount(strings.NewReader(info), c.mp)
		if typ != c.typ || found != c.found {
			t.Errorf("%s: %q %v, want %q %v", c.mp, typ, found, c.typ, c.found)
		}
	}
}

// The mountinfo parser never panics, and finds any mountpoint it is given
// escaped as the kernel escapes it.
func FuzzTopMount(f *testing.F) {
	f.Add("/nix/store", "fuse.castor", "22 1 0:21 / /proc rw - proc proc rw\n")
	f.Add("/a b\\c", "tmpfs", "x\n\n- - -\n")
	f.Add("/", "ext4", "1 2 3 4")
	f.Fuzz(func(t *testing.T, mp, typ, noise string) {
		topMount(strings.NewReader(noise), mp)
		unescapeMountinfo(noise)
		if mp == "" || typ == "" || strings.ContainsAny(typ, " \t\n\\") {
			return
		}
		line := fmt.Sprintf("31 30 0:31 / %s ro,nosuid - %s castor ro\n", escapeMountinfo(mp), typ)
		// Noise lines first: the last matching line wins.
		clean := strings.ReplaceAll(noise, escapeMountinfo(mp), "")
		got, found := topMount(strings.NewReader(clean+"\n"+line), mp)
		if !found || got != typ {
			t.Errorf("mountpoint %q type %q after noise %q: %q %v", mp, typ, clean, got, found)
		}
	})
}

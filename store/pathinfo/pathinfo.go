package pathinfo

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/nix-community/go-nix/pkg/nixhash"
	"google.golang.org/protobuf/proto"

	"github.com/castor-nix/castor/store/castore"
	"github.com/castor-nix/castor/store/nixpath"
	"github.com/castor-nix/castor/store/pathinfo/storepb"
)

// Sentinel errors; backends wrap them.
var (
	// ErrNotFound: no PathInfo for that store path.
	ErrNotFound = errors.New("path info not found")
	// ErrInvalid: a PathInfo (or its encoding) breaks the rules.
	ErrInvalid = errors.New("invalid path info")
)

// Signature is a narinfo signature: the key's name and 64 bytes of ed25519.
type Signature struct {
	Name string
	Data []byte
}

// String renders the signature as narinfo files do: name:base64.
func (s Signature) String() string {
	return s.Name + ":" + b64(s.Data)
}

// PathInfo describes one store path.
type PathInfo struct {
	StorePath nixpath.StorePath
	// Node is the root of the path's tree in the castore.
	Node castore.Node
	// References are the store paths this one refers to, sorted.
	References []nixpath.StorePath
	NarSize    uint64
	NarSHA256  [sha256.Size]byte
	Signatures []Signature
	// Deriver is the .drv that built the path, if known.
	Deriver *nixpath.StorePath
	// CA is the content address, for content-addressed paths.
	CA *nixpath.ContentAddress
}

// Validate checks what a PathInfo must satisfy: a valid root node, a NAR
// size (every NAR has at least its header), signatures of 64 bytes with a
// key name, a deriver that names a .drv, and references sorted without
// duplicates.
func (p *PathInfo) Validate() error {
	if err := nixpath.ValidateName(p.StorePath.Name); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if err := p.Node.Validate(); err != nil {
		return fmt.Errorf("%w: %s: root: %v", ErrInvalid, p.StorePath, err)
	}
	if p.NarSize == 0 {
		return fmt.Errorf("%w: %s: NAR size is 0", ErrInvalid, p.StorePath)
	}
	for i, r := range p.References {
		if i > 0 && p.References[i-1].Compare(r) >= 0 {
			return fmt.Errorf("%w: %s: references not sorted and unique at %s", ErrInvalid, p.StorePath, r)
		}
	}
	for _, s := range p.Signatures {
		if s.Name == "" || strings.ContainsAny(s.Name, ":\n") || len(s.Data) != 64 {
			return fmt.Errorf("%w: %s: malformed signature %q (%d bytes)", ErrInvalid, p.StorePath, s.Name, len(s.Data))
		}
	}
	if p.Deriver != nil && !p.Deriver.IsDerivation() {
		return fmt.Errorf("%w: %s: deriver %s is not a .drv", ErrInvalid, p.StorePath, p.Deriver)
	}
	return nil
}

// SortReferences sorts and de-duplicates References.
func (p *PathInfo) SortReferences() {
	slices.SortFunc(p.References, nixpath.StorePath.Compare)
	p.References = slices.CompactFunc(p.References, func(a, b nixpath.StorePath) bool { return a == b })
}

// caTypes maps (method, algo) to the proto enum and back.
var caTypes = []struct {
	method nixpath.Method
	algo   nixhash.Algorithm
	pb     storepb.NARInfo_CA_Hash
}{
	{nixpath.Recursive, nixhash.SHA256, storepb.NARInfo_CA_NAR_SHA256},
	{nixpath.Recursive, nixhash.SHA1, storepb.NARInfo_CA_NAR_SHA1},
	{nixpath.Recursive, nixhash.SHA512, storepb.NARInfo_CA_NAR_SHA512},
	{nixpath.Recursive, nixhash.MD5, storepb.NARInfo_CA_NAR_MD5},
	{nixpath.Text, nixhash.SHA256, storepb.NARInfo_CA_TEXT_SHA256},
	{nixpath.Flat, nixhash.SHA1, storepb.NARInfo_CA_FLAT_SHA1},
	{nixpath.Flat, nixhash.MD5, storepb.NARInfo_CA_FLAT_MD5},
	{nixpath.Flat, nixhash.SHA256, storepb.NARInfo_CA_FLAT_SHA256},
	{nixpath.Flat, nixhash.SHA512, storepb.NARInfo_CA_FLAT_SHA512},
}

// ToProto converts to Snix's wire message.
func (p *PathInfo) ToProto() *storepb.PathInfo {
	pb := &storepb.PathInfo{
		Entry: p.Node.ToProto(p.StorePath.String()),
		Narinfo: &storepb.NARInfo{
			NarSize:   p.NarSize,
			NarSha256: bytes.Clone(p.NarSHA256[:]),
		},
	}
	for _, r := range p.References {
		pb.References = append(pb.References, bytes.Clone(r.Digest[:]))
		pb.Narinfo.ReferenceNames = append(pb.Narinfo.ReferenceNames, r.String())
	}
	for _, s := range p.Signatures {
		pb.Narinfo.Signatures = append(pb.Narinfo.Signatures, &storepb.NARInfo_Signature{Name: s.Name, Data: bytes.Clone(s.Data)})
	}
	if p.Deriver != nil {
		pb.Narinfo.Deriver = &storepb.StorePath{
			Name:   strings.TrimSuffix(p.Deriver.Name, ".drv"),
			Digest: bytes.Clone(p.Deriver.Digest[:]),
		}
	}
	if p.CA != nil {
		for _, c := range caTypes {
			if c.method == p.CA.Method && c.algo == p.CA.Hash.Algo() {
				pb.Narinfo.Ca = &storepb.NARInfo_CA{Type: c.pb, Digest: bytes.Clone(p.CA.Hash.Digest())}
			}
		}
	}
	return pb
}

// FromProto converts and validates Snix's wire message.
func FromProto(pb *storepb.PathInfo) (*PathInfo, error) {
	name, node, err := castore.NodeFromProto(pb.GetEntry())
	if err != nil {
		return nil, fmt.Errorf("%w: root entry: %v", ErrInvalid, err)
	}
	sp, err := nixpath.Parse(name)
	if err != nil {
		return nil, fmt.Errorf("%w: root entry name: %v", ErrInvalid, err)
	}
	ni := pb.GetNarinfo()
	if ni == nil {
		return nil, fmt.Errorf("%w: %s: no narinfo", ErrInvalid, sp)
	}
	p := &PathInfo{StorePath: sp, Node: node, NarSize: ni.GetNarSize()}
	if len(ni.GetNarSha256()) != sha256.Size {
		return nil, fmt.Errorf("%w: %s: NAR SHA-256 has %d bytes", ErrInvalid, sp, len(ni.GetNarSha256()))
	}
	copy(p.NarSHA256[:], ni.GetNarSha256())
	if len(pb.GetReferences()) != len(ni.GetReferenceNames()) {
		return nil, fmt.Errorf("%w: %s: %d references but %d reference names", ErrInvalid, sp, len(pb.GetReferences()), len(ni.GetReferenceNames()))
	}
	for i, rn := range ni.GetReferenceNames() {
		r, err := nixpath.Parse(rn)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: reference: %v", ErrInvalid, sp, err)
		}
		if !bytes.Equal(r.Digest[:], pb.GetReferences()[i]) {
			return nil, fmt.Errorf("%w: %s: reference %d digest does not match its name %s", ErrInvalid, sp, i, rn)
		}
		p.References = append(p.References, r)
	}
	for _, s := range ni.GetSignatures() {
		p.Signatures = append(p.Signatures, Signature{Name: s.GetName(), Data: bytes.Clone(s.GetData())})
	}
	if d := ni.GetDeriver(); d != nil {
		if len(d.GetDigest()) != nixpath.DigestSize {
			return nil, fmt.Errorf("%w: %s: deriver digest has %d bytes", ErrInvalid, sp, len(d.GetDigest()))
		}
		dp := nixpath.StorePath{Digest: [nixpath.DigestSize]byte(d.GetDigest()), Name: d.GetName() + ".drv"}
		if err := nixpath.ValidateName(dp.Name); err != nil {
			return nil, fmt.Errorf("%w: %s: deriver: %v", ErrInvalid, sp, err)
		}
		p.Deriver = &dp
	}
	if ca := ni.GetCa(); ca != nil {
		found := false
		for _, c := range caTypes {
			if c.pb == ca.GetType() {
				h, err := nixhash.NewHash(c.algo, bytes.Clone(ca.GetDigest()))
				if err != nil {
					return nil, fmt.Errorf("%w: %s: content address: %v", ErrInvalid, sp, err)
				}
				p.CA = &nixpath.ContentAddress{Method: c.method, Hash: h}
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("%w: %s: unknown content address type %d", ErrInvalid, sp, ca.GetType())
		}
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return p, nil
}

// Marshal encodes the PathInfo as Snix's protobuf (deterministically).
func (p *PathInfo) Marshal() []byte {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(p.ToProto())
	if err != nil {
		panic(fmt.Sprintf("pathinfo: marshal: %v", err))
	}
	return b
}

// Unmarshal decodes and validates a PathInfo encoded by Marshal.
func Unmarshal(b []byte) (*PathInfo, error) {
	var pb storepb.PathInfo
	if err := proto.Unmarshal(b, &pb); err != nil {
		return nil, fmt.Errorf("%w: decode: %v", ErrInvalid, err)
	}
	return FromProto(&pb)
}

package memory

import (
	"testing"

	"github.com/castor-nix/castor/store/pathinfo"
	"github.com/castor-nix/castor/store/pathinfo/pathinfotest"
)

func TestConformance(t *testing.T) {
	pathinfotest.Run(t, func(t *testing.T) pathinfo.Service { return New() })
}

package realise_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/castor-nix/castor/builder"
	"github.com/castor-nix/castor/builder/realise"
	"github.com/castor-nix/castor/e2e/testenv"
	"github.com/castor-nix/castor/store/derivation"
	"github.com/castor-nix/castor/store/nixpath"
)

// TestFailures checks what a failed build reports and that nothing of it
// is registered, that what depends on it is not built, and (KeepGoing)
// that what does not is.
func TestFailures(t *testing.T) {
	testenv.RequireFUSE(t)
	c := newCorpus(t, "failures.nix")
	cs := c.importInto(t)
	ctx := context.Background()
	logs := &realise.MemoryLogs{}
	r := realise.New(cs.st, realise.Options{Executor: cs.exec, Jobs: 2, KeepGoing: true, Logs: logs, Output: &lockedWriter{t: t}})
	results, err := r.Realise(ctx, c.drvs())
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	t.Log(msg)

	// The failing builder: exit status and the last 10 lines of its log.
	for _, want := range []string{
		"builder for '" + c.attrs["fails"] + "' failed with exit code 3;",
		"last 10 log lines:",
		"> log line 12\n", "> log line 20\n", "> to stderr\n",
		"cannot build '" + c.attrs["dependsOnFail"] + "'",
		"cannot build '" + c.attrs["dependsTransitively"] + "'",
		"builder for '" + c.attrs["partial"] + "' failed with exit code 1",
		"output dev: output not produced",
		"hash mismatch in fixed-output derivation '" + c.attrs["fixedMismatch"] + "':\n  specified: sha256-LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=\n     got:    sha256-",
		"executing '/nonexistent/builder': no such file or directory",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q", want)
		}
	}
	if strings.Contains(msg, "> log line 10\n") {
		t.Error("error shows more than the last 10 lines")
	}
	var be *realise.BuildError
	var exit *builder.ExitError
	if !errors.As(err, &be) || !errors.As(err, &exit) || !errors.Is(err, realise.ErrDependencyFailed) || !errors.Is(err, builder.ErrHashMismatch) || !errors.Is(err, builder.ErrNoOutput) {
		t.Errorf("error does not unwrap as expected: %v", err)
	}

	built := map[string]bool{}
	for _, res := range results {
		built[res.DrvPath] = true
	}
	for attr, ok := range map[string]bool{"fine": true, "independent": true, "fails": false, "dependsOnFail": false,
		"dependsTransitively": false, "partial": false, "missingOutput": false, "fixedMismatch": false, "noBuilder": false} {
		if built[c.attrs[attr]] != ok {
			t.Errorf("%s: realised %v, want %v", attr, built[c.attrs[attr]], ok)
		}
		drv, err := derivation.Dir(c.nix.Root).Derivation(ctx, c.attrs[attr])
		if err != nil {
			t.Fatal(err)
		}
		for name, o := range drv.Outputs {
			sp, _ := nixpath.ParseAbsolute(o.Path)
			_, gerr := cs.infos.Get(ctx, sp.Digest)
			if (gerr == nil) != ok {
				t.Errorf("%s: output %s registered: %v, want %v", attr, name, gerr == nil, ok)
			}
		}
	}
	// The failed build's whole log is kept.
	rc, err := logs.Open(c.attrs["fails"])
	if err != nil {
		t.Fatal(err)
	}
	all, _ := io.ReadAll(rc)
	rc.Close()
	if !strings.Contains(string(all), "log line 1\n") || !strings.Contains(string(all), "log line 20\n") {
		t.Errorf("kept log %q", all)
	}

	// Without KeepGoing nothing starts after the first failure.
	cs2 := c.importInto(t)
	r2 := realise.New(cs2.st, realise.Options{Executor: cs2.exec, Jobs: 1})
	_, err = r2.Realise(ctx, []string{c.attrs["fails"], c.attrs["dependsOnFail"]})
	if !errors.As(err, &exit) || exit.Code != 3 {
		t.Errorf("error %v", err)
	}
}

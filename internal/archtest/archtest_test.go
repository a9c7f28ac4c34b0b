package archtest

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"

	"github.com/cloudbox/cloudbox/internal/testenv"
)

const module = "github.com/cloudbox/cloudbox"

type pkg struct {
	ImportPath string
	Name       string
	Doc        string
	Imports    []string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", "./...")
	cmd.Dir = testenv.ModuleRoot(t)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 10 {
		t.Fatalf("go list found only %d packages", len(pkgs))
	}
	return pkgs
}

// area is the top-level folder of a package path inside the module.
func area(path string) string {
	rest := strings.TrimPrefix(strings.TrimPrefix(path, module), "/")
	first, _, _ := strings.Cut(rest, "/")
	return first
}

func TestPackagesAreDocumented(t *testing.T) {
	for _, p := range listPackages(t) {
		if strings.TrimSpace(p.Doc) == "" {
			t.Errorf("package %s has no package comment", p.ImportPath)
		}
	}
}

func TestDependenciesPointOneWay(t *testing.T) {
	// forbidden[a] lists the areas that packages in area a must not import.
	forbidden := map[string][]string{
		"internal":  {"appliance", "services", "stream", "dnsproxy", "overlay", "image", "boards", "cmd"},
		"overlay":   {"appliance", "services", "stream", "dnsproxy", "image", "cmd"},
		"services":  {"appliance", "image", "cmd"},
		"dnsproxy":  {"appliance", "image", "cmd"},
		"stream":    {"appliance", "image", "cmd"},
		"appliance": {"image", "cmd"},
		"boards":    {"appliance", "services", "stream", "dnsproxy", "overlay", "image", "cmd"},
		"image":     {"appliance", "cmd"},
	}
	for _, p := range listPackages(t) {
		from := area(p.ImportPath)
		for _, imp := range p.Imports {
			if strings.HasPrefix(imp, "github.com/gokrazy/gokrazy") && from != "appliance" && from != "image" {
				t.Errorf("%s imports %s: only appliance and image may know about gokrazy", p.ImportPath, imp)
			}
			if !strings.HasPrefix(imp, module+"/") {
				continue
			}
			to := area(imp)
			for _, f := range forbidden[from] {
				if to == f {
					t.Errorf("%s imports %s: %s must not depend on %s", p.ImportPath, imp, from, to)
				}
			}
		}
	}
}

package layering

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/mcrelay/mcr"

// imports returns the non-test imports of every package of the module
// that are packages of the module too, by path relative to the module.
func imports(t *testing.T) map[string][]string {
	t.Helper()
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, module+"/...").Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("go list: %v\n%s", err, ee.Stderr)
		}
		t.Skipf("skipping: cannot run go list: %v", err)
	}
	deps := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		pkg := rel(fields[0])
		deps[pkg] = nil
		for _, imp := range fields[1:] {
			if imp == module || strings.HasPrefix(imp, module+"/") {
				deps[pkg] = append(deps[pkg], rel(imp))
			}
		}
	}
	return deps
}

func rel(path string) string {
	if path == module {
		return "."
	}
	return strings.TrimPrefix(path, module+"/")
}

// supervisorPart returns the part of the supervisor pkg belongs to
// ("supervisor/pool" for supervisor/pool/pooltest), "" when it is none.
func supervisorPart(pkg string) string {
	rest, ok := strings.CutPrefix(pkg, "supervisor/")
	if !ok {
		return ""
	}
	part, _, _ := strings.Cut(rest, "/")
	return "supervisor/" + part
}

// under reports whether pkg is root or one of its subpackages.
func under(pkg, root string) bool { return pkg == root || strings.HasPrefix(pkg, root+"/") }

// TestImportRules checks the layering docs/architecture.md describes
// (Packages).
func TestImportRules(t *testing.T) {
	deps := imports(t)
	if len(deps) < 10 {
		t.Fatalf("go list found %d packages: not the module", len(deps))
	}
	for _, want := range []string{"supervisor", "worker", "controlproto", "internal/relaysock", "internal/prefilter", "supervisor/links", "supervisor/membership"} {
		if _, ok := deps[want]; !ok {
			t.Fatalf("package %s not listed: the rules below would check nothing about it", want)
		}
	}
	// Programs: only cmd/ wires them together.
	programs := []string{"supervisor", "worker", "mcrctl", "mcrgen"}
	for pkg, imps := range deps {
		for _, imp := range imps {
			switch {
			case under(imp, "cmd"):
				t.Errorf("%s imports %s: nothing imports a main", pkg, imp)
			case under(pkg, "supervisor") && under(imp, "worker"), under(pkg, "worker") && under(imp, "supervisor"):
				t.Errorf("%s imports %s: the supervisor and the worker meet only in controlproto and internal/relaysock", pkg, imp)
			case pkg != "supervisor" && under(pkg, "supervisor") && imp == "supervisor",
				pkg != "worker" && under(pkg, "worker") && imp == "worker":
				t.Errorf("%s imports %s: a part never imports what wires it", pkg, imp)
			case supervisorPart(pkg) != "" && supervisorPart(imp) != "" && supervisorPart(pkg) != supervisorPart(imp):
				t.Errorf("%s imports %s: the supervisor's parts are leaves it wires, they never import each other", pkg, imp)
			}
			if under(pkg, "cmd") || under(pkg, "topology") || under(pkg, "scripts") {
				continue
			}
			for _, p := range programs {
				if under(imp, p) && !under(pkg, p) {
					t.Errorf("%s imports %s: only cmd/ uses the programs' packages", pkg, imp)
				}
			}
		}
	}
}

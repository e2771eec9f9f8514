package docs

import (
	"bufio"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// outsideRefRE matches a citation a reader of this repository cannot
// follow: a section of a specification the tree does not contain, or an
// issue of a tracker it does not link. Code and docs say the reason in
// place or link a document of the repository instead.
var outsideRefRE = regexp.MustCompile(`\bSPEC(\.md| ?§)|\b[Ii]ssue #?[0-9]+\b`)

// TestNoOutsideReferences keeps the tree self-contained: no source, script
// or document cites SPEC sections or issue numbers.
func TestNoOutsideReferences(t *testing.T) {
	root := ".."
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", "bin", "dist", "node_modules":
				return filepath.SkipDir
			}
			return nil
		}
		switch filepath.Ext(path) {
		case ".go", ".md", ".sh", ".yml", ".yaml", ".json", ".service", ".conf":
		default:
			if d.Name() != "Makefile" && d.Name() != "run" {
				return nil
			}
		}
		if strings.HasSuffix(path, "selfcontained_test.go") {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for n := 1; sc.Scan(); n++ {
			if m := outsideRefRE.FindString(sc.Text()); m != "" {
				t.Errorf("%s:%d cites %q, which this repository does not contain: say the reason in place or link a doc in the tree", path, n, m)
			}
		}
		return sc.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
}

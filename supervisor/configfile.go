package supervisor

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/mcrelay/mcr/ruleset"
)

// readConfigFile reads and validates the config file at path
// (ruleset.DecodeConfig: strict decoding, every rule valid, ids and inputs
// unique). The rules come back normalised, in file order. An invalid file's
// error names the file, the rule (by index, and by id when the file gives
// one) and the field:
//
//	config /etc/mcr.json: rules[1] (id "market-b"): outputs[0].port: must be 1..65535
func readConfigFile(path string) (ruleset.Config, error) {
	data, err := readConfigData(path)
	if err != nil {
		return ruleset.Config{}, fmt.Errorf("read config: %w", err)
	}
	c, err := ruleset.DecodeConfig(data)
	if err != nil {
		return ruleset.Config{}, fmt.Errorf("config %s: %s", path, nameRule(err, data))
	}
	return c, nil
}

// nameRule returns the text of a config validation error with the id of the
// rule it concerns after the rule's index, when the file gives that rule an
// id, so the operator finds it by the name they know.
func nameRule(err error, data []byte) string {
	var verr *ruleset.ValidationError
	if !errors.As(err, &verr) || !strings.HasPrefix(verr.Field, "rules[") {
		return err.Error()
	}
	end := strings.IndexByte(verr.Field, ']')
	i, convErr := strconv.Atoi(verr.Field[len("rules["):end])
	var ids struct {
		Rules []struct {
			ID string `json:"id"`
		} `json:"rules"`
	}
	// Lenient on purpose: the file is known to be wrong somewhere else.
	if convErr != nil || json.Unmarshal(data, &ids) != nil || i >= len(ids.Rules) || ids.Rules[i].ID == "" {
		return err.Error()
	}
	rule := verr.Field[:end+1]
	rest := strings.TrimPrefix(err.Error(), rule) // ".outputs[0].port: msg" or ": msg"
	if strings.HasPrefix(rest, ".") {
		rest = rest[1:]
	} else {
		rest = strings.TrimPrefix(rest, ": ")
	}
	return fmt.Sprintf("%s (id %q): %s", rule, ids.Rules[i].ID, rest)
}

// configWrites serialises this process's config writes: a write removes
// the temporary files of its pattern that it finds, which must never be
// another write's in flight; and each write takes its snapshot of the
// ruleset under it, so writes to one file land in the order of their
// snapshots and the file never goes back to an older ruleset.
var configWrites sync.Mutex

// writeConfigFile writes the config file encode returns (called under
// configWrites) to path atomically, in the format readConfigFile
// reads (ruleset.EncodeConfig): a temporary file in the same directory is
// written, flushed to disk (fsync) and renamed over path, and the directory
// is flushed so the rename itself survives a crash (rename(2) is atomic;
// without the fsyncs a crash could leave an empty file). Readers see the old
// file or the new one, never a part. The file is mode 0644.
//
// path must be a regular file, a symbolic link to one (the file it points
// to is replaced, the link stays) or not exist yet; anything else is
// refused before a temporary file is made. Temporary files are named
// ".NAME.tmp-PID-RANDOM" after the file and the writing process; those a
// killed write left behind are removed first (staleConfigTemps).
func writeConfigFile(path string, encode func() ([]byte, error)) error {
	configWrites.Lock()
	defer configWrites.Unlock()
	target, err := saveTarget(path)
	if err != nil {
		return err
	}
	data, err := encode()
	if err != nil {
		return err
	}
	removeStaleConfigTemps(target)
	dir := filepath.Dir(target)
	tmp, err := os.CreateTemp(dir, tempPrefix(target)+strconv.Itoa(os.Getpid())+"-*")
	if err != nil {
		var perr *fs.PathError
		if errors.As(err, &perr) { // its path is the random name, not news to anyone
			err = perr.Err
		}
		return fmt.Errorf("save config: create a temporary file in %s: %w", dir, err)
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("save config: %w", err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("save config: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("save config: sync %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save config: %w", err)
	}
	if err := os.Rename(tmp.Name(), target); err != nil {
		return fmt.Errorf("save config: %w", err)
	}
	ok = true
	return syncDir(dir)
}

// The config file as ruleset.EncodeConfig writes it is configHead, the
// rules each as configEntry returns it separated by configSep, and
// configTail; without rules it is configEmpty.
const (
	configHead  = "{\n  \"rules\": [\n"
	configSep   = ",\n"
	configTail  = "\n  ]\n}\n"
	configEmpty = "{\n  \"rules\": []\n}\n"
)

// configEntry returns rule r as ruleset.EncodeConfig writes it into a
// config file (indented, without the separator).
func configEntry(r ruleset.Rule) ([]byte, error) {
	b, err := ruleset.EncodeConfig(ruleset.Config{Rules: []ruleset.Rule{r}})
	if err != nil {
		return nil, err
	}
	entry, ok := bytes.CutPrefix(b, []byte(configHead))
	if entry, ok2 := bytes.CutSuffix(entry, []byte(configTail)); ok && ok2 {
		return entry, nil
	}
	// Unreachable while EncodeConfig indents by two spaces; TestConfigEntries keeps them in step.
	return nil, fmt.Errorf("encode config: rule %q encodes as %q, not inside %q and %q", r.ID, b, configHead, configTail)
}

// joinConfig returns the config file of the rules whose configEntry
// encodings are parts, in order.
func joinConfig(parts [][]byte) []byte {
	if len(parts) == 0 {
		return []byte(configEmpty)
	}
	n := len(configHead) + len(configTail) + len(configSep)*(len(parts)-1)
	for _, p := range parts {
		n += len(p)
	}
	out := make([]byte, 0, n)
	out = append(out, configHead...)
	for i, p := range parts {
		if i > 0 {
			out = append(out, configSep...)
		}
		out = append(out, p...)
	}
	return append(out, configTail...)
}

// saveTarget returns the file a save to path replaces: path itself, or
// the regular file a symbolic link at path points to. Directories, FIFOs,
// devices, sockets and symbolic links to nothing are refused: renaming
// over them would fail after the work, or replace what is not a config.
func saveTarget(path string) (string, error) {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return path, nil
	case err != nil:
		return "", fmt.Errorf("save config: %w", err)
	case fi.Mode()&fs.ModeSymlink != 0:
		target, err := filepath.EvalSymlinks(path)
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("save config: %s is a symbolic link to nothing", path)
		}
		if err != nil {
			return "", fmt.Errorf("save config: %w", err)
		}
		if fi, err = os.Stat(target); err != nil {
			return "", fmt.Errorf("save config: %w", err)
		}
		if !fi.Mode().IsRegular() {
			return "", fmt.Errorf("save config: %s links to %s, %s, not a regular file", path, target, describeMode(fi.Mode()))
		}
		return target, nil
	case !fi.Mode().IsRegular():
		return "", fmt.Errorf("save config: %s is %s, not a regular file", path, describeMode(fi.Mode()))
	}
	return path, nil
}

// describeMode names a file type for an error: "a directory".
func describeMode(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m&fs.ModeSocket != 0:
		return "a socket"
	}
	return "a file of type " + m.Type().String()
}

// tempPrefix is the start of the names of target's temporary files.
func tempPrefix(target string) string {
	return "." + filepath.Base(target) + ".tmp-"
}

// removeStaleConfigTemps removes the temporary files of target's pattern
// that no write in flight owns, and returns their paths. A file is in
// flight only while the process named in it writes: this process holds
// configWrites, so its own are stale, and so are those of a process that
// is gone (a daemon killed during a save). A file of another live process
// (two daemons on one config) is left alone. Errors are ignored: a file
// that stays is cleaned up next time.
func removeStaleConfigTemps(target string) []string {
	dir, prefix := filepath.Dir(target), tempPrefix(target)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var removed []string
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), prefix)
		if !ok || !e.Type().IsRegular() {
			continue
		}
		pidText, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if err == nil && pid > 0 && pid != os.Getpid() && processAlive(pid) {
			continue
		}
		name := filepath.Join(dir, e.Name())
		if os.Remove(name) == nil {
			removed = append(removed, name)
		}
	}
	return removed
}

// processAlive reports whether a process with pid exists (kill(2) with
// signal 0; EPERM: it exists, but is not ours to signal).
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// syncDir flushes a directory's entries to disk.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("save config: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("save config: sync directory %s: %w", dir, err)
	}
	return nil
}

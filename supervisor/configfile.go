package supervisor

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

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

// writeConfigFile writes c to path atomically, in the format readConfigFile
// reads (ruleset.EncodeConfig): a temporary file in the same directory is
// written, flushed to disk (fsync) and renamed over path, and the directory
// is flushed so the rename itself survives a crash (rename(2) is atomic;
// without the fsyncs a crash could leave an empty file). Readers see the old
// file or the new one, never a part. The file is mode 0644.
func writeConfigFile(path string, c ruleset.Config) error {
	data, err := ruleset.EncodeConfig(c)
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
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
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("save config: %w", err)
	}
	ok = true
	return syncDir(dir)
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

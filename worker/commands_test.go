package worker

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mcrelay/mcr/controlproto"
)

func frame(t *testing.T, v any) []byte {
	t.Helper()
	b, err := controlproto.AppendFrame(nil, v)
	mustNoErr(t, err)
	return b
}

func ids(db *ruleDB) []string {
	var out []string
	for id := range db.byID {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

func TestCommandsApply(t *testing.T) {
	var logs bytes.Buffer
	c := newCommands(testLogger(&logs))
	db := newRuleDB(newFakeSockets(), testLogger(nil))
	a := wrule("a", 2, "239.1.1.1:5001", "239.2.2.2:6000@3")
	b := wrule("b", 2, "239.1.1.2:5001", "239.2.2.2:6000@3")

	var stream []byte
	stream = append(stream, frame(t, controlproto.WorkerCommand{Type: controlproto.WAddRule, Rule: &a})...)
	stream = append(stream, frame(t, controlproto.WorkerCommand{Type: controlproto.WAddRule, Rule: &b})...)
	stream = append(stream, frame(t, controlproto.WorkerCommand{Type: controlproto.WRemoveRule, ID: "a"})...)
	stream = append(stream, frame(t, controlproto.WorkerCommand{Type: controlproto.WRemoveRule, ID: "nope"})...)
	stream = append(stream, frame(t, controlproto.WorkerCommand{Type: "Bogus"})...)
	stream = binary.BigEndian.AppendUint32(stream, 5)
	stream = append(stream, "{nope"...)
	stream = binary.BigEndian.AppendUint32(stream, controlproto.MaxFrameSize+1)

	// Byte by byte: frames split anywhere must still decode.
	for i := range stream {
		c.feed(stream[i : i+1])
		if c.apply(db) {
			t.Fatal("apply reported Shutdown")
		}
	}
	if diff := cmp.Diff([]string{"b"}, ids(db)); diff != "" {
		t.Errorf("rules (-want +got):\n%s", diff)
	}
	if db.table.Len() != 1 {
		t.Errorf("table has %d keys, want 1: apply must commit", db.table.Len())
	}
	for _, want := range []string{
		`"msg":"RemoveRule of an unknown rule","rule":"nope"`,
		`unknown command \"Bogus\"`,
		`decode command: invalid character 'n'`,
		`read frame: length 16777217, limit 16777216: frame too large`,
	} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("logs lack %s:\n%s", want, logs.String())
		}
	}
}

func TestCommandsSyncRulesInParts(t *testing.T) {
	c := newCommands(testLogger(nil))
	db := newRuleDB(newFakeSockets(), testLogger(nil))
	db.add(wrule("old", 2, "239.1.1.1:5001", "239.2.2.2:6000@3"))
	var rules []controlproto.WorkerRule
	for i := range 50 {
		rules = append(rules, wrule(fmt.Sprintf("r%02d", i), 2, fmt.Sprintf("239.1.2.%d:5001", i), "239.2.2.2:6000@3"))
	}
	cmds, err := controlproto.SyncCommands(rules, 2000)
	mustNoErr(t, err)
	if len(cmds) < 3 {
		t.Fatalf("%d parts; the test wants the ruleset split", len(cmds))
	}
	for i, cmd := range cmds {
		c.feed(frame(t, cmd))
		c.apply(db)
		if i < len(cmds)-1 && len(db.byID) != 1 {
			t.Fatalf("after part %d of %d the ruleset changed; it must change when the last part arrives", i, len(cmds))
		}
	}
	if got, want := db.Hash(), cmds[0].Hash; got != want {
		t.Errorf("hash %s after SyncRules, want the supervisor's %s", got, want)
	}
	if len(db.byID) != 50 || db.table.Len() != 50 {
		t.Errorf("%d rules, %d table keys; want 50", len(db.byID), db.table.Len())
	}
}

func TestCommandsShutdownStops(t *testing.T) {
	c := newCommands(testLogger(nil))
	db := newRuleDB(newFakeSockets(), testLogger(nil))
	a := wrule("a", 2, "239.1.1.1:5001", "239.2.2.2:6000@3")
	c.feed(frame(t, controlproto.WorkerCommand{Type: controlproto.WShutdown}))
	c.feed(frame(t, controlproto.WorkerCommand{Type: controlproto.WAddRule, Rule: &a}))
	if !c.apply(db) {
		t.Fatal("apply did not report Shutdown")
	}
	if len(db.byID) != 0 {
		t.Error("a command after Shutdown was applied")
	}
}

package links

import (
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// viewEvent is one scripted change of a View.
type viewEvent struct {
	del  bool
	list []Link // a re-list, when not nil
	l    Link
}

func set(name string, index int, up bool) viewEvent { return viewEvent{l: Link{name, index, up}} }
func del(name string, index int) viewEvent {
	return viewEvent{del: true, l: Link{Name: name, Index: index}}
}
func relist(all ...Link) viewEvent { return viewEvent{list: append([]Link{}, all...)} }

func (e viewEvent) apply(v *View) []string {
	switch {
	case e.list != nil:
		return v.Replace(e.list)
	case e.del:
		return v.Remove(e.l)
	}
	return v.Set(e.l)
}

func TestLinkView(t *testing.T) {
	tests := []struct {
		name   string
		events []viewEvent
		// wantTouched is what the last event returns, sorted.
		wantTouched []string
		want        map[string]Link // name → link after all events
	}{
		{
			name:        "appears",
			events:      []viewEvent{set("eth0", 2, true)},
			wantTouched: []string{"eth0"},
			want:        map[string]Link{"eth0": {"eth0", 2, true}},
		},
		{
			name:        "duplicate event changes nothing",
			events:      []viewEvent{set("eth0", 2, true), set("eth0", 2, true)},
			wantTouched: nil,
			want:        map[string]Link{"eth0": {"eth0", 2, true}},
		},
		{
			name:        "goes down",
			events:      []viewEvent{set("eth0", 2, true), set("eth0", 2, false)},
			wantTouched: []string{"eth0"},
			want:        map[string]Link{"eth0": {"eth0", 2, false}},
		},
		{
			name:        "deleted",
			events:      []viewEvent{set("eth0", 2, true), del("eth0", 2)},
			wantTouched: []string{"eth0"},
			want:        map[string]Link{},
		},
		{
			name:        "duplicate deletion changes nothing",
			events:      []viewEvent{set("eth0", 2, true), del("eth0", 2), del("eth0", 2)},
			wantTouched: nil,
			want:        map[string]Link{},
		},
		{
			name:        "recreated with a new ifindex",
			events:      []viewEvent{set("eth0", 2, true), del("eth0", 2), set("eth0", 7, true)},
			wantTouched: []string{"eth0"},
			want:        map[string]Link{"eth0": {"eth0", 7, true}},
		},
		{
			name:        "recreated link reported before the old one's deletion",
			events:      []viewEvent{set("eth0", 2, true), set("eth0", 7, true), del("eth0", 2)},
			wantTouched: nil,
			want:        map[string]Link{"eth0": {"eth0", 7, true}},
		},
		{
			name:        "renamed",
			events:      []viewEvent{set("eth0", 2, true), set("wan", 2, true)},
			wantTouched: []string{"eth0", "wan"},
			want:        map[string]Link{"wan": {"wan", 2, true}},
		},
		{
			name:        "renamed, then another link takes the old name",
			events:      []viewEvent{set("eth0", 2, true), set("wan", 2, true), set("eth0", 3, false)},
			wantTouched: []string{"eth0"},
			want:        map[string]Link{"wan": {"wan", 2, true}, "eth0": {"eth0", 3, false}},
		},
		{
			name:        "deleting a renamed link frees its new name only",
			events:      []viewEvent{set("eth0", 2, true), set("wan", 2, true), set("eth0", 3, true), del("wan", 2)},
			wantTouched: []string{"wan"},
			want:        map[string]Link{"eth0": {"eth0", 3, true}},
		},
		{
			name: "re-list finds a missed deletion, a missed link and a missed state change",
			events: []viewEvent{
				set("eth0", 2, true), set("eth1", 3, true), set("eth2", 4, true),
				relist(Link{"eth1", 3, true}, Link{"eth2", 4, false}, Link{"eth3", 5, true}),
			},
			wantTouched: []string{"eth0", "eth2", "eth3"},
			want:        map[string]Link{"eth1": {"eth1", 3, true}, "eth2": {"eth2", 4, false}, "eth3": {"eth3", 5, true}},
		},
		{
			name:        "re-list finds a recreated link",
			events:      []viewEvent{set("eth0", 2, true), relist(Link{"eth0", 9, true})},
			wantTouched: []string{"eth0"},
			want:        map[string]Link{"eth0": {"eth0", 9, true}},
		},
		{
			name:        "identical re-list touches nothing",
			events:      []viewEvent{set("eth0", 2, true), relist(Link{"eth0", 2, true})},
			wantTouched: nil,
			want:        map[string]Link{"eth0": {"eth0", 2, true}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := NewView()
			var touched []string
			for _, e := range tt.events {
				touched = e.apply(&v)
			}
			slices.Sort(touched)
			if diff := cmp.Diff(tt.wantTouched, touched); diff != "" {
				t.Errorf("names touched by the last event (-want +got):\n%s", diff)
			}
			got := map[string]Link{}
			for name := range v.byName {
				got[name], _ = v.Lookup(name)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("view (-want +got):\n%s", diff)
			}
			if len(v.byIndex) != len(v.byName) {
				t.Errorf("view holds %d links but %d names: %v", len(v.byIndex), len(v.byName), v.byIndex)
			}
		})
	}
}

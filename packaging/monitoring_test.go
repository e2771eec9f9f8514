package packaging

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// namedExpr is a PromQL expression and where it is, for messages.
type namedExpr struct {
	where, expr string
}

// dashboard is the part of Grafana's dashboard JSON model the tests read.
type dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int                      `json:"id"`
	Type       string                   `json:"type"`
	Title      string                   `json:"title"`
	Datasource datasource               `json:"datasource"`
	GridPos    struct{ X, Y, W, H int } `json:"gridPos"`
	Targets    []struct {
		RefID      string     `json:"refId"`
		Expr       string     `json:"expr"`
		Datasource datasource `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // of a collapsed row
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

func readDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile("grafana/mcr.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("grafana/mcr.json: %v", err)
	}
	return d
}

// allPanels flattens rows.
func (d dashboard) allPanels() []panel {
	var out []panel
	for _, p := range d.Panels {
		out = append(out, p)
		out = append(out, p.Panels...)
	}
	return out
}

// dashboardExprs returns every PromQL expression of the dashboard: each
// panel's queries and each query variable's.
func dashboardExprs(t *testing.T) []namedExpr {
	t.Helper()
	d := readDashboard(t)
	var out []namedExpr
	for _, p := range d.allPanels() {
		for _, tg := range p.Targets {
			out = append(out, namedExpr{fmt.Sprintf("panel %q query %s", p.Title, tg.RefID), tg.Expr})
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct{ Query string }
		if err := json.Unmarshal(v.Query, &q); err != nil { // {"query": "..."} or "..."
			if err := json.Unmarshal(v.Query, &q.Query); err != nil {
				t.Fatalf("variable %s: query %s: %v", v.Name, v.Query, err)
			}
		}
		if e := grafanaQueryExpr(q.Query); e != "" {
			out = append(out, namedExpr{"variable " + v.Name, e})
		}
	}
	return out
}

// alertRules is the part of a Prometheus rule file the tests read.
type alertRules struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert string `yaml:"alert"`
			Expr  string `yaml:"expr"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func alertExprs(t *testing.T) []namedExpr {
	t.Helper()
	b, err := os.ReadFile("prometheus/mcr-alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var rules alertRules
	if err := yaml.Unmarshal(b, &rules); err != nil {
		t.Fatalf("prometheus/mcr-alerts.yml: %v", err)
	}
	var out []namedExpr
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			out = append(out, namedExpr{"alert " + r.Alert, r.Expr})
		}
	}
	return out
}

// TestDashboardModel checks that grafana/mcr.json imports as a dashboard
// should: every panel reads the ${datasource} variable (so the dashboard
// works imported or provisioned, with any Prometheus), has queries, sits in
// the 24-column grid without overlapping another, every variable a query
// uses exists, and every query is PromQL that Prometheus parses (promtool,
// with Grafana's variables filled in). Which metrics the queries name is
// checked against a running mcrd by TestNamespaceRelays.
func TestDashboardModel(t *testing.T) {
	d := readDashboard(t)
	if d.UID != "mcr-relay" || d.Title == "" {
		t.Errorf("uid %q, title %q; want uid mcr-relay and a title", d.UID, d.Title)
	}
	vars := map[string]bool{"__rate_interval": true, "__interval": true, "__range": true}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
	}
	if !vars["datasource"] {
		t.Errorf("no datasource variable")
	}
	ids := map[int]string{}
	var cells []panel
	for _, p := range d.allPanels() {
		if prev, ok := ids[p.ID]; ok {
			t.Errorf("panels %q and %q share id %d", prev, p.Title, p.ID)
		}
		ids[p.ID] = p.Title
		if g := p.GridPos; g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
			t.Errorf("panel %q: gridPos %+v outside the 24-column grid", p.Title, g)
		}
		for _, c := range cells {
			if overlap(c, p) {
				t.Errorf("panels %q and %q overlap", c.Title, p.Title)
			}
		}
		cells = append(cells, p)
		if p.Type == "row" {
			continue
		}
		if p.Datasource.UID != "${datasource}" || len(p.Targets) == 0 {
			t.Errorf("panel %q: datasource %+v, %d queries; want ${datasource} and queries", p.Title, p.Datasource, len(p.Targets))
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if refs[tg.RefID] || tg.RefID == "" || tg.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q: query %q: refId missing or repeated, or datasource %+v", p.Title, tg.RefID, tg.Datasource)
			}
			refs[tg.RefID] = true
		}
	}
	exprs := dashboardExprs(t)
	for _, e := range exprs {
		for _, m := range grafanaVar.FindAllStringSubmatch(e.expr, -1) {
			if name := m[1] + m[2]; !vars[name] {
				t.Errorf("%s uses $%s, which the dashboard does not define", e.where, name)
			}
		}
	}
	checkPromtoolParses(t, exprs)
}

// grafanaVar matches $name and ${name}.
var grafanaVar = regexp.MustCompile(`\$(?:\{(\w+)\}|(\w+))`)

func overlap(a, b panel) bool {
	ga, gb := a.GridPos, b.GridPos
	return ga.X < gb.X+gb.W && gb.X < ga.X+ga.W && ga.Y < gb.Y+gb.H && gb.Y < ga.Y+ga.H
}

// checkPromtoolParses has promtool parse each expression, as the rule of a
// throwaway rule file. Grafana's range variables become 5m and the others,
// which the dashboard uses only in regular expression matchers, ".*".
func checkPromtoolParses(t *testing.T, exprs []namedExpr) {
	t.Helper()
	promtool := requirePromtool(t)
	var rules strings.Builder
	rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	for i, e := range exprs {
		expr := grafanaIntervals.ReplaceAllString(e.expr, "5m")
		expr = grafanaVar.ReplaceAllString(expr, ".*")
		q, err := json.Marshal(expr) // a JSON string is a YAML string
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&rules, "      - record: dashboard:query:%d\n        expr: %s\n", i, q)
	}
	path := filepath.Join(t.TempDir(), "dashboard.yml")
	if err := os.WriteFile(path, []byte(rules.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", path).CombinedOutput(); err != nil {
		t.Errorf("promtool check rules on the dashboard's queries: %v\n%s\n%s", err, out, rules.String())
	}
}

// TestAlertRules runs `promtool check rules` on the alert rules and
// `promtool test rules` on their unit tests, mcr-alerts_test.yml: each
// alert fires on the failure it is for, with the labels and text an
// operator gets, and not on what only looks like it. Which metrics they
// name is checked against a running mcrd by TestNamespaceRelays.
func TestAlertRules(t *testing.T) {
	if got := len(alertExprs(t)); got == 0 {
		t.Fatal("no alert rules")
	}
	promtool := requirePromtool(t)
	for _, args := range [][]string{{"check", "rules", "mcr-alerts.yml"}, {"test", "rules", "mcr-alerts_test.yml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = "prometheus"
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

func requirePromtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("skipping: promtool not installed (.ci/run installs it from Debian's prometheus package)")
	}
	return p
}

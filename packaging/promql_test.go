package packaging

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// promqlWords are the identifiers of PromQL that are not metric names where
// they stand on their own: binary operators, modifiers and number literals.
// Functions and aggregations are told apart by what follows them (a
// parenthesis, or by/without), label names by where they stand.
var promqlWords = map[string]bool{
	"and": true, "or": true, "unless": true, "atan2": true, "bool": true, "offset": true,
	"on": true, "ignoring": true, "group_left": true, "group_right": true, "by": true, "without": true,
	"inf": true, "nan": true,
}

// labelListWords are followed by a parenthesised list of label names.
var labelListWords = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
}

// grafanaIntervals are Grafana's built-in range variables; in a PromQL
// expression they stand for a duration.
var grafanaIntervals = regexp.MustCompile(`\$(__rate_interval|__interval|__range)\b|\$\{(__rate_interval|__interval|__range)\}`)

// metricNames returns the metric names an expression selects, in order of
// appearance. It tokenizes rather than parses: it skips string literals,
// label matchers ({...}), ranges and subqueries ([...]), comments, numbers
// and durations, and the label lists of by, without, on, ignoring and
// group_left/right; an identifier left is a function or aggregation when a
// parenthesis or by/without follows it, a keyword if PromQL has it, and a
// metric name otherwise. Grafana's interval variables stand for durations;
// any other variable outside a string is an error, since what it expands to
// cannot be checked.
func metricNames(expr string) ([]string, error) {
	s := grafanaIntervals.ReplaceAllString(expr, "5m")
	var names []string
	var prev string // the last identifier, to see label lists coming
	depth := 0      // of parentheses
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '#':
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == '"' || c == '\'' || c == '`':
			end, err := skipString(s, i)
			if err != nil {
				return nil, err
			}
			i = end
		case c == '{' || c == '[':
			end, err := skipGroup(s, i)
			if err != nil {
				return nil, err
			}
			i = end
		case c == '(' && labelListWords[prev]:
			end, err := skipGroup(s, i)
			if err != nil {
				return nil, err
			}
			i, prev = end, ""
		case c == '$':
			return nil, fmt.Errorf("%q: variable at offset %d: only $__rate_interval, $__interval and $__range can be checked", expr, i)
		case c >= '0' && c <= '9' || c == '.' && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9':
			// A number (1, 0.5, 1e3, 0x1f) or a duration (5m, 1h30m).
			for i < len(s) && (isIdent(s[i]) || s[i] == '.' ||
				(s[i] == '+' || s[i] == '-') && (s[i-1] == 'e' || s[i-1] == 'E')) {
				i++
			}
			prev = ""
		case isIdentStart(c):
			start := i
			for i < len(s) && isIdent(s[i]) {
				i++
			}
			word := s[start:i]
			next := nextNonSpace(s, i)
			lower := strings.ToLower(word)
			switch {
			case promqlWords[lower]:
			case next == '(':
				// a function or an aggregation
			case strings.HasPrefix(s[skipSpace(s, i):], "by") || strings.HasPrefix(s[skipSpace(s, i):], "without"):
				// an aggregation with its grouping first: sum by (x) (...)
				if !isAggregation(lower) {
					names = append(names, word)
				}
			default:
				names = append(names, word)
			}
			prev = lower
		default:
			// operators and punctuation: + - * / % ^ == != < > , ( ) @ :
			i++
			switch c {
			case '(':
				depth++
			case ')':
				if depth--; depth < 0 {
					return nil, fmt.Errorf("%q: ) at offset %d closes nothing", expr, i-1)
				}
			}
			if c != '(' {
				prev = ""
			}
		}
	}
	if depth != 0 {
		return nil, fmt.Errorf("%q: %d parentheses not closed", expr, depth)
	}
	return names, nil
}

var aggregations = []string{"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
	"bottomk", "topk", "quantile", "limitk", "limit_ratio"}

func isAggregation(word string) bool { return slices.Contains(aggregations, word) }

func isIdentStart(c byte) bool {
	return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func isIdent(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' }

func skipSpace(s string, i int) int {
	for i < len(s) && strings.IndexByte(" \t\r\n", s[i]) >= 0 {
		i++
	}
	return i
}

func nextNonSpace(s string, i int) byte {
	if i = skipSpace(s, i); i < len(s) {
		return s[i]
	}
	return 0
}

// skipString returns the offset after the string literal at s[i].
func skipString(s string, i int) (int, error) {
	q := s[i]
	for j := i + 1; j < len(s); j++ {
		switch {
		case s[j] == '\\' && q != '`':
			j++
		case s[j] == q:
			return j + 1, nil
		}
	}
	return 0, fmt.Errorf("%q: string at offset %d does not end", s, i)
}

// skipGroup returns the offset after the bracketed group at s[i], with the
// strings and groups nested in it.
func skipGroup(s string, i int) (int, error) {
	closing := map[byte]byte{'{': '}', '[': ']', '(': ')'}
	var stack []byte
	for j := i; j < len(s); j++ {
		switch c := s[j]; {
		case c == '"' || c == '\'' || c == '`':
			end, err := skipString(s, j)
			if err != nil {
				return 0, err
			}
			j = end - 1
		case closing[c] != 0:
			stack = append(stack, closing[c])
		case len(stack) > 0 && c == stack[len(stack)-1]:
			stack = stack[:len(stack)-1]
			if len(stack) == 0 {
				return j + 1, nil
			}
		}
	}
	return 0, fmt.Errorf("%q: %c at offset %d is not closed", s, s[i], i)
}

// grafanaQueryExpr returns the PromQL of a Grafana Prometheus variable
// query: label_values(EXPR, label) and query_result(EXPR) hold an
// expression, label_values(label) none.
func grafanaQueryExpr(q string) string {
	q = strings.TrimSpace(q)
	for _, fn := range []string{"label_values(", "query_result("} {
		if !strings.HasPrefix(q, fn) || !strings.HasSuffix(q, ")") {
			continue
		}
		inner := q[len(fn) : len(q)-1]
		if fn == "query_result(" {
			return inner
		}
		if k := strings.LastIndexByte(inner, ','); k >= 0 {
			return inner[:k]
		}
		return "" // label_values(label): no metric
	}
	return q
}

func TestMetricNames(t *testing.T) {
	tests := []struct {
		expr string
		want []string
	}{
		{`up`, []string{"up"}},
		{`up{job="mcr"} == 0`, []string{"up"}},
		{`rate(mcr_rule_packets_in_total{rule=~"a|b"}[5m])`, []string{"mcr_rule_packets_in_total"}},
		{`8 * sum by (instance, rule) (rate(mcr_rule_bytes_in_total{instance=~"$instance"}[$__rate_interval]))`,
			[]string{"mcr_rule_bytes_in_total"}},
		{`sum without (worker) (rate(a_total[1m])) / sum(rate(b_total[1m])) by (job)`, []string{"a_total", "b_total"}},
		{`x > 0 and on (job, instance, rule) y == 0`, []string{"x", "y"}},
		{`a * on (i) group_left (version) b offset 5m`, []string{"a", "b"}},
		{`count by (instance) (m == 0) or sum by (instance) (m * 0)`, []string{"m", "m"}},
		{`max_over_time(rate(c_total[5m])[1h:1m]) > 1e3 unless d`, []string{"c_total", "d"}},
		{`histogram_quantile(0.99, sum by (le) (rate(h_bucket[5m])))`, []string{"h_bucket"}},
		{`label_replace(v, "dst", "$1", "src", "(.*)")`, []string{"v"}},
		{`{__name__="hidden"}`, nil},
		{"# comment naming not_a_metric\nreal_metric", []string{"real_metric"}},
		{`sum(rate(x[5m])) by (rule) > bool Inf`, []string{"x"}},
		{`absent(mcr:recorded:rate5m)`, []string{"mcr:recorded:rate5m"}},
	}
	for _, tt := range tests {
		got, err := metricNames(tt.expr)
		if err != nil {
			t.Errorf("metricNames(%q): %v", tt.expr, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("metricNames(%q) (-want +got):\n%s", tt.expr, diff)
		}
	}
	for _, bad := range []string{`rate(x{job="mcr}[5m])`, `rate(x[5m]`, `x{job="$job"} * $scale`} {
		if got, err := metricNames(bad); err == nil {
			t.Errorf("metricNames(%q) = %q, want an error", bad, got)
		}
	}
	for q, want := range map[string]string{
		`label_values(mcr_build_info{job=~"$job"}, instance)`: `mcr_build_info{job=~"$job"}`,
		`label_values(job)`:                  "",
		`query_result(topk(3, rate(x[5m])))`: `topk(3, rate(x[5m]))`,
		`sum(mcr_rules) by (state)`:          `sum(mcr_rules) by (state)`,
	} {
		if got := grafanaQueryExpr(q); got != want {
			t.Errorf("grafanaQueryExpr(%q) = %q, want %q", q, got, want)
		}
	}
}

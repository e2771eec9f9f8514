package stats

import (
	"reflect"
	"testing"
)

// TestWorkerCountersEveryField guards add and below against a field added
// to WorkerCounters but forgotten there: it would read 0 in every report.
func TestWorkerCountersEveryField(t *testing.T) {
	var a, b WorkerCounters
	va, vb := reflect.ValueOf(&a).Elem(), reflect.ValueOf(&b).Elem()
	for i := range va.NumField() {
		va.Field(i).SetUint(uint64(10 + i))
		vb.Field(i).SetUint(uint64(100 * (i + 1)))
	}
	sum := a
	sum.add(b)
	vs := reflect.ValueOf(sum)
	for i := range vs.NumField() {
		name := vs.Type().Field(i).Name
		if got, want := vs.Field(i).Uint(), va.Field(i).Uint()+vb.Field(i).Uint(); got != want {
			t.Errorf("add: %s = %d, want %d", name, got, want)
		}
		lower := sum
		reflect.ValueOf(&lower).Elem().Field(i).SetUint(0)
		if !lower.below(sum) {
			t.Errorf("below ignores %s", name)
		}
	}
}

package ruleset_test

import (
	"fmt"

	"github.com/mcrelay/mcr/ruleset"
)

func ExampleRule_Validate() {
	r := ruleset.Rule{
		Input: ruleset.Input{Interface: "eth0", Group: "FF3E::1", Port: 5000},
		Outputs: []ruleset.Output{
			{Interface: "eth1", Group: "239.2.2.2", Port: 6000},
			{Interface: "eth1", Group: "10.1.0.50", Port: 0},
		},
	}
	r.Normalize()
	fmt.Println(r.Input.Group, r.ID)
	fmt.Println(r.Validate())
	// Output:
	// ff3e::1 8f3a7b18f7e61a23
	// outputs[1].port: must be 1..65535
}

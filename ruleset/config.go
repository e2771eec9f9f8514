package ruleset

// Config is the ruleset as stored in a config file (`--config`) and carried
// by LoadConfig/GetConfig: `{"rules":[…]}`. Files are decoded strictly: an
// unknown field is an error that names it.
type Config struct {
	Rules []Rule `json:"rules"`
}

package supervisor

import "github.com/mcrelay/mcr/internal/relaysock"

// probeFanoutID is the fanoutProbe of the real daemon.
func probeFanoutID(id int) (bool, error) { return relaysock.FanoutIDFree(id) }

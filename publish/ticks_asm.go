//go:build amd64 || arm64

package publish

import "runtime"

// ticks reads the CPU's counter: the time stamp counter on amd64, the generic timer's
// virtual count on arm64. Implemented in ticks_GOARCH.s.
func ticks() int64

// tickSource is the name Linux gives the clock source that reads the same counter.
var tickSource = map[string]string{"amd64": "tsc", "arm64": "arch_sys_counter"}[runtime.GOARCH]

//go:build !amd64 || race

package publish

import "sync/atomic"

// storeRelease32 stores v at p with (at least) release ordering. On arm64
// atomic.StoreUint32 is a store-release (STLR).
func storeRelease32(p *uint32, v uint32) { atomic.StoreUint32(p, v) }

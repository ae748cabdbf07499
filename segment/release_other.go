//go:build !amd64

package segment

import "sync/atomic"

// storeRelease stores v at p with (at least) release ordering: every store before it is
// visible to a reader that loads v with acquire ordering. On arm64 atomic.StoreUint64 is
// a store-release (STLR).
func storeRelease(p *uint64, v uint64) { atomic.StoreUint64(p, v) }

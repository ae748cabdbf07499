//go:build !race

package publish

// storeRelease32 stores v at p with release ordering: on amd64 a plain MOV, since the
// processor keeps stores in program order, and a call to assembly is a barrier to the
// compiler; atomic.StoreUint32 is an XCHG, which waits for every earlier store to reach
// the cache. Implemented in lock_amd64.s. (Under the race detector, lock_other.go's
// atomic store, which the detector sees.)
//
//go:noescape
func storeRelease32(p *uint32, v uint32)

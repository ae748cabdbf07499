package segment

// storeRelease stores v at p with release ordering: every store before it is visible
// to a reader that loads v with acquire ordering (atomic.LoadUint64). atomic.StoreUint64
// is sequentially consistent, which on amd64 is an XCHG that waits for every earlier
// store to reach the cache; a record's commit word needs only release ordering, which
// costs amd64 nothing. Implemented in release_amd64.s.
//
//go:noescape
func storeRelease(p *uint64, v uint64)

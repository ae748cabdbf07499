// Package recordio reads and writes the byte streams that records travel in between
// filering and other programs.
//
// On the way in (what `filering produce` reads on standard input): lines, one record per
// line, and frames, a 4-byte little-endian length and then that many bytes of payload.
// On the way out (what `filering cat`, `watch` and `take` print): lines, the payload and
// a newline; JSON Lines, {"seq":N,"time":"...","data":"..."}; and raw, the same frames
// that produce reads.
//
// These formats are part of filering's contract: the Python package (python/) prints
// them byte for byte, and the conformance corpus (testdata/conformance, built by
// internal/corpus from an independent implementation of the same rules) holds every
// reader to them. A change here is a change of that contract.
//
// Nothing in this package is safe for concurrent use; each Writer and FrameReader
// belongs to one goroutine.
package recordio

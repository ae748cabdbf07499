package segment

// clmulConsts are the constants of clmulShort, laid out as it reads them (offsets in
// bytes): fold[m] at 16m for m = 1 to 6, the constants that fold a 128-bit block across
// 128m bits (x^(128m+32) and x^(128m-32) modulo the bit-reflected polynomial, shifted
// left by one); then k3k4 (112), k5 (128), poly (144: the polynomial and Barrett's mu),
// mask (160).
type clmulConsts struct {
	fold [7][2]uint64
	k3k4 [2]uint64
	k5   [2]uint64
	poly [2]uint64
	mask [2]uint64
}

var clmulK = clmulConsts{
	fold: [7][2]uint64{
		{0, 0},
		{0x1751997d0, 0x0ccaa009e},
		{0x0f1da05aa, 0x15a546366},
		{0x03db1ecdc, 0x174359406},
		{0x154442bd4, 0x1c6e41596},
		{0x1c7569e54, 0x0ae0b5394},
		{0x0df068dc2, 0x18cb44e58},
	},
	k3k4: [2]uint64{0x1751997d0, 0x0ccaa009e},
	k5:   [2]uint64{0x163cd6124, 0},
	poly: [2]uint64{0x1db710641, 0x1f7011641},
	mask: [2]uint64{0x00000000ffffffff, 0x00000000ffffffff},
}

// clmulShort folds n 16-byte blocks at p (1 <= n <= 7) into the raw CRC state raw.
// Implemented in crc_amd64.s.
//
//go:noescape
func clmulShort(raw uint32, p *byte, n int, k *clmulConsts) uint32

// cpuidECX1 returns ECX of CPUID leaf 1, the processor's feature bits. Implemented in
// crc_amd64.s: one instruction, where golang.org/x/sys/cpu asks for every leaf at every
// start, and CPUID traps to the hypervisor on a virtual machine.
func cpuidECX1() uint32

// hasCLMUL: CPUID.1:ECX bit 1 is PCLMULQDQ. SSE2 is in every amd64 processor.
var hasCLMUL = cpuidECX1()&(1<<1) != 0

// shortCRC returns the CRC of p, started from crc, and true; or false when the processor
// cannot or the length of p is not a multiple of 16 from 16 to 16*shortBlocks.
func shortCRC(crc uint32, p []byte) (uint32, bool) {
	n := len(p) / 16
	if !hasCLMUL || n < 1 || n > shortBlocks || len(p)%16 != 0 {
		return 0, false
	}
	return ^clmulShort(^crc, &p[0], n, &clmulK), true
}

// hasShortCRC says whether shortCRC folds short inputs here (for its test).
var hasShortCRC = hasCLMUL

#include "textflag.h"

// func clmulShort(raw uint32, p *byte, n int, k *clmulConsts) uint32
//
// Folds n 16-byte blocks at p (1 <= n <= 7) into the raw (bit-inverted) CRC-32 state
// raw and returns the raw state after them. Block i is multiplied by x to the power of
// its distance from the last block (k.fold[n-1-i]: the low half by one constant, the
// high half by the other), all blocks at once rather than one after another; the sum is
// then reduced from 128 bits to 64 and, by Barrett reduction, to 32 (k.k3k4, k.k5,
// k.poly). SSE2 and PCLMULQDQ only.
TEXT ·clmulShort(SB), NOSPLIT, $0-36
	MOVL raw+0(FP), X6
	MOVQ p+8(FP), SI
	MOVQ n+16(FP), CX
	MOVQ k+24(FP), DI

	// The first block carries the state.
	MOVOU (SI), X0
	PXOR  X6, X0
	PXOR  X7, X7 // the sum

fold:
	DECQ CX // CX: how many blocks follow this one
	JZ   last
	MOVQ CX, AX
	SHLQ $4, AX
	MOVOU (DI)(AX*1), X2 // fold[CX]: low constant, high constant
	MOVO  X0, X1
	PCLMULQDQ $0x00, X2, X0
	PCLMULQDQ $0x11, X2, X1
	PXOR  X1, X0
	PXOR  X0, X7
	ADDQ  $16, SI
	MOVOU (SI), X0
	JMP   fold

last:
	PXOR X0, X7

	// 128 bits to 64: x1 = x1>>64 ^ lo(x1)*k4
	MOVOU 112(DI), X2 // k3k4
	MOVO  X7, X1
	PCLMULQDQ $0x10, X2, X1
	PSRLDQ $8, X7
	PXOR  X1, X7

	// 64 to 32 and Barrett reduction.
	MOVOU 160(DI), X5 // mask: dwords 0 and 2
	MOVO  X7, X1
	PSRLDQ $4, X1
	PAND  X5, X7
	MOVOU 128(DI), X2 // k5, 0
	PCLMULQDQ $0x00, X2, X7
	PXOR  X1, X7
	MOVOU 144(DI), X3 // poly: P', mu
	MOVO  X7, X1
	PAND  X5, X1
	PCLMULQDQ $0x10, X3, X1
	PAND  X5, X1
	PCLMULQDQ $0x00, X3, X1
	PXOR  X1, X7
	PSRLDQ $4, X7
	MOVL  X7, AX
	MOVL  AX, ret+32(FP)
	RET

// func cpuidECX1() uint32
TEXT ·cpuidECX1(SB), NOSPLIT, $0-4
	MOVL $1, AX
	XORL CX, CX
	CPUID
	MOVL CX, ret+0(FP)
	RET

#include "textflag.h"

// func storeRelease(p *uint64, v uint64)
//
// A release store on amd64 is a plain MOV: the processor keeps stores in program order
// (TSO), and a call to an assembly function is a barrier to the compiler.
TEXT ·storeRelease(SB), NOSPLIT, $0-16
	MOVQ p+0(FP), AX
	MOVQ v+8(FP), BX
	MOVQ BX, (AX)
	RET

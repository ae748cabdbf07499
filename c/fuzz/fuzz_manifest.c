/*
 * libFuzzer target: the strict manifest parser. Whatever the input, the parser must not
 * read outside it, crash or leak; a manifest it accepts must encode to one it accepts
 * again, with the same content.
 *
 *     clang -g -O1 -fsanitize=fuzzer,address,undefined -o fuzz_manifest fuzz_manifest.c
 */
#include "../filering.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct manifest m, m2;
	char why[256], *enc;
	size_t n, i;

	memset(&m, 0, sizeof m);
	memset(&m2, 0, sizeof m2);
	if (manifest_parse(data, size, &m, why, sizeof why) == 0) {
		if (m.version != 1 || !valid_segment_size(m.segment_size) || m.n > m.segments_max)
			abort();
		enc = (char *)malloc(manifest_bound(m.n));
		n = manifest_encode(&m, enc);
		if (n > manifest_bound(m.n) || manifest_parse((unsigned char *)enc, n, &m2, why, sizeof why) != 0)
			abort();
		if (m2.n != m.n || m2.generation != m.generation || m2.segment_size != m.segment_size ||
		    m2.segments_max != m.segments_max)
			abort();
		for (i = 0; i < m.n; i++)
			if (memcmp(&m.e[i], &m2.e[i], sizeof m.e[i]) != 0)
				abort();
		free(enc);
	} else if (!why[0]) {
		abort(); /* every refusal says why */
	}
	manifest_free(&m);
	manifest_free(&m2);
	return 0;
}

/*
 * filering.h: the filering ring format (docs/FORMAT.md, version 1) in C.
 *
 * One producer appends records to fixed-size segment files in a ring directory on tmpfs;
 * any number of readers read them, without locks, as snapshots or as followers that wait
 * for new records. This library is both sides, in one C99 translation unit (filering.c)
 * that needs nothing but the C library and Linux system calls (Linux 3.15 or later:
 * renameat2, OFD locks, fallocate). Build it with `make -C c` (libfilering.a and
 * libfilering.so), or drop filering.c and filering.h into your own build.
 *
 * ERRORS. Every function that can fail returns 0 (or, for readers, a positive event
 * code) on success and a negative code on failure: either a negated errno value (-ENOSPC,
 * -EINVAL, ...) or one of the FILERING_E* codes below, all of which lie below -4096 so
 * that they never collide with an errno. filering_strerror() names any of them.
 *
 * THREADS. The library has no global mutable state apart from the CRC tables, which are
 * built once, race-free, on first use. A filering_writer or a filering_reader may be used
 * by one thread at a time: calls on the same object must be serialized by the caller (a
 * mutex around them is enough), calls on different objects may run concurrently.
 * filering_strerror(), filering_kind(), filering_is_damage(), filering_format*(),
 * filering_utf8_valid(), filering_crc32() and filering_producer_pid() are thread-safe.
 * The library starts no thread, installs no signal handler and never blocks on a reader.
 *
 * FILES AND SIGNALS. Every descriptor the library opens is close-on-exec. The writer's
 * lock is an open file description lock: a child made by fork() shares it until both
 * close it (exec closes it). A reader maps segment files read-only after checking their
 * size; as for any mapped file, if a process that may write the ring (the producer's
 * user; never a filering producer, which never shrinks a segment) truncates a segment
 * under a reader's mapping, the reader's process receives SIGBUS. Everything else read
 * from disk is checked before use: a damaged or hostile ring makes a reader report
 * errors, never crash, and costs it no more memory than the records it delivers.
 */
#ifndef FILERING_H
#define FILERING_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h> /* struct iovec */

#ifdef __cplusplus
extern "C" {
#endif

/* The on-disk format version this library reads and writes. */
#define FILERING_FORMAT_VERSION 1

/* Limits of the format (docs/FORMAT.md). */
#define FILERING_MIN_SEGMENT_SIZE 4096u
#define FILERING_MAX_SEGMENT_SIZE 1073741824u
#define FILERING_MIN_SEGMENTS 2u
#define FILERING_MAX_SEGMENTS 8192u         /* what a producer may write */
#define FILERING_MAX_SEGMENTS_LISTED 65536u /* what a reader accepts */
#define FILERING_MAX_MANIFEST_SIZE 1048576u
#define FILERING_SEGMENT_HEADER_SIZE 64u
#define FILERING_RECORD_HEADER_SIZE 24u

/* Defaults of a new ring, as in the Go producer. */
#define FILERING_DEFAULT_SEGMENT_SIZE 2097152u
#define FILERING_DEFAULT_SEGMENTS 8u
#define FILERING_DEFAULT_DIR_MODE 0750u
#define FILERING_DEFAULT_FILE_MODE 0640u

/* Error codes (negative). */
enum {
	/* The producer side. */
	FILERING_ELOCKED = -10001,    /* another producer holds the ring (see holder_pid) */
	FILERING_EUNSAFE = -10002,    /* the directory or a file in it is owned by another
	                                 user, or writable by group or others */
	FILERING_ETOOLARGE = -10003,  /* a record larger than a segment can hold */
	FILERING_EMISMATCH = -10004,  /* the ring exists with another segment size */
	FILERING_ECLOSED = -10005,    /* the writer was closed (or a fatal error closed it) */
	FILERING_EEXHAUSTED = -10006, /* segment or sequence numbers are exhausted */
	FILERING_EORPHANED = -10007,  /* the directory holds segment files but no manifest */
	FILERING_EID = -10008,        /* the ring's identity file (id) is malformed */

	/* The ring as a whole: a read fails. */
	FILERING_ENORING = -10010,   /* no manifest: no ring (yet) */
	FILERING_EMANIFEST = -10011, /* the manifest is invalid, of another version, not a
	                                regular file or unreadable */

	/* Damage to one segment (docs/FORMAT.md, "Damage: what a reader delivers"). A reader
	 * that returns one of these goes on with the next segment at its next call; see
	 * filering_is_damage(). */
	FILERING_ENOTREG = -10020,     /* a listed segment is not a regular file */
	FILERING_EUNREADABLE = -10021, /* a listed segment cannot be opened, read or mapped */
	FILERING_ESIZE = -10022,       /* its size is not the ring's segment size */
	FILERING_EHEADER = -10023,     /* its header fails a check or disagrees */
	FILERING_ESEALED = -10024,     /* its sealed word is wrong */
	FILERING_ECOMMITTED = -10025,  /* its committed word is out of range */
	FILERING_ERECSIZE = -10026,    /* a record's size word is impossible */
	FILERING_ECHECKSUM = -10027,   /* a record's CRC does not match */
	FILERING_ESEQUENCE = -10028,   /* a record's sequence number is not the next one */
	FILERING_EMISSING = -10029,    /* a committed record is missing (zero commit word) */
	FILERING_ELASTSEQ = -10030     /* the records disagree with the manifest's last_seq */
};

/* filering_strerror returns a static description of code (any negative code; 0 is
 * "success"). Never NULL. Thread-safe. */
const char *filering_strerror(int code);

/* filering_kind returns the conformance corpus's name of the error kind of code
 * (testdata/conformance/README.md, "Kinds": "no-ring", "manifest", "not-regular", "size",
 * "header", "sealed-word", "committed-word", "record-size", "checksum", "sequence",
 * "missing", "last-seq"), "unreadable" for FILERING_EUNREADABLE, or NULL for codes that
 * are not about data read from a ring. A reader also has filering_reader_error_kind(),
 * which tells a manifest that is not a regular file ("not-regular") from an invalid one. */
const char *filering_kind(int code);

/* filering_is_damage reports whether code is segment-level or record-level damage: the
 * read goes on with the next segment. */
int filering_is_damage(int code);

/* ======================================================================================
 * Writing a ring
 * ==================================================================================== */

typedef struct filering_writer filering_writer;

/* Options of filering_writer_open. Zero means the default, as in the Go Options:
 *   segment_size   size of every segment of a new ring: a multiple of 4096 from 4 KiB to
 *                  1 GiB (default 2 MiB). For an existing ring, 0 or the ring's size.
 *   segments       how many segments the ring retains, the hot one included, 2 to 8192.
 *                  0: an existing ring keeps its own, a new ring gets 8. A lower number
 *                  than the ring's drops its oldest segments at open, and says so.
 *   seal_after_ns  when > 0, the hot segment is sealed once it is this old and holds a
 *                  record, so that takers get data at low rates (checked at appends and
 *                  at filering_writer_poll).
 *   dir_mode       permissions of a ring directory the writer creates, and of each missing
 *                  directory above it, which it creates too (default 0750),
 *   file_mode      and of every file it creates (default 0640); set exactly, not
 *                  filtered through the umask. Neither may let group or others write.
 *   gid            when > 0, the group given to the directories and files it creates;
 *                  -1 or 0: unchanged. */
typedef struct filering_options {
	uint64_t segment_size;
	uint32_t segments;
	int64_t seal_after_ns;
	uint32_t dir_mode, file_mode;
	int64_t gid;
} filering_options;

/* A log callback receives notices a user may want to see, one line without a newline:
 * recovery after a crash ("DIR/NAME: recovered N records after an unclean stop; next
 * sequence S"), segments dropped for room on a full file system ("DIR: file system full:
 * dropped segment NAME, records A to B (N lost)") or to lower the retention, failures
 * that lose nothing. msg is valid only during the call. The callback must not call the
 * writer that logs. */
typedef void (*filering_log_fn)(void *arg, const char *msg);

/* filering_writer_open opens the ring in dir for appending, creating the directory and
 * the ring when absent, recovering it when its last producer died (docs/FORMAT.md,
 * "Writing a ring"). opt may be NULL for the defaults. On success *out is the writer.
 *
 * Errors: FILERING_ELOCKED when another producer runs (filering_writer_open_ex gives its
 * pid), FILERING_EUNSAFE, FILERING_EMISMATCH, FILERING_EORPHANED, FILERING_EID,
 * FILERING_EMANIFEST (a producer never writes over a manifest it cannot read),
 * FILERING_EHEADER or FILERING_ESIZE (the hot segment a dead producer left has a bad
 * header or is short), FILERING_EEXHAUSTED, -EINVAL for options out of range, -ELOOP
 * when dir is a symbolic link, -ENOTDIR, -ENOSPC, other -errno. Where there is more to
 * say (which file is unsafe, why the manifest is refused), the log callback of
 * filering_writer_open_ex says it before the call returns.
 *
 * The writer reuses the files of segments it removes for new segments (docs/FORMAT.md,
 * "Reusing a segment file"): it keeps up to 2 such files under temporary names, and
 * holds the descriptors and mappings of up to 16 sealed segments (1 GiB at most; 64 MiB
 * on 32-bit systems) until retention removes them. A file is reused only under a write
 * lease, which Linux grants only when no other process has it open or mapped; while the
 * writer holds one (a few system calls of a roll), a process that opens the file makes
 * the kernel send SIGURG to the writer's process (ignored by default). Where leases are
 * unavailable there is no reuse. FILERING_NO_REUSE=1 in the environment (read once per
 * process) turns reuse off: a new file for every segment. */
int filering_writer_open(const char *dir, const filering_options *opt, filering_writer **out);

/* filering_writer_open_ex is filering_writer_open with a log callback (NULL: notices are
 * dropped) and, when holder_pid is not NULL, the pid of the running producer stored there
 * on FILERING_ELOCKED (0 if its lock file holds no readable pid). */
int filering_writer_open_ex(const char *dir, const filering_options *opt, filering_log_fn log,
                            void *log_arg, long *holder_pid, filering_writer **out);

/* filering_append appends one record of len bytes (len may be 0; data may be NULL then)
 * and stores its sequence number in *seq_out when seq_out is not NULL. The record is
 * visible to readers when it returns. data is copied.
 *
 * The common path (the record fits in the hot segment) allocates nothing, makes no system
 * call (the clock is read through the vDSO) and never waits for a reader: it writes the
 * record through the segment's mapping and publishes it with one atomic release store.
 * Wake-up writes (one 8-byte pwrite, see "Wake-ups" below) are made at most every 0.1 to
 * 1 ms during a burst; a record after a pause of 100 us or more makes one at once.
 * Rolling to a new segment (every segment_size bytes) costs a few system calls: a lease,
 * a header and renames when a removed segment's file is reused, a new file allocated
 * otherwise.
 *
 * Errors: FILERING_ETOOLARGE (len > filering_writer_max_payload(w); nothing changes),
 * -ENOSPC when the file system has no room for a new segment even after dropping every
 * sealed one (nothing changes; the writer stays usable and the next append tries again),
 * FILERING_EEXHAUSTED, FILERING_ECLOSED, other -errno from creating a segment or writing
 * the manifest (the record was not appended; the writer stays usable). */
int filering_append(filering_writer *w, const void *data, size_t len, uint64_t *seq_out);

/* filering_append_batch appends the n records recs[0..n-1] in order, all with the same
 * time, and stores the first one's sequence number in *first_seq_out (may be NULL). It
 * costs less per record than filering_append: one clock read and at most one wake-up
 * write for the batch. When a record is too large nothing is appended
 * (FILERING_ETOOLARGE). On another error (-ENOSPC) the records before the failing one
 * were appended: filering_writer_next_seq(w) - *first_seq_out says how many. */
int filering_append_batch(filering_writer *w, const struct iovec *recs, size_t n,
                          uint64_t *first_seq_out);

/* Wake-ups. Records are written through a shared mapping, which inotify does not see, so
 * the writer announces them with a wake-up write (docs/FORMAT.md, "Wake-ups"). It has no
 * background thread: appends make the wake-up writes when they are due (at once after a
 * pause of 100 us or more; during a burst, at intervals growing from 0.1 ms to 1 ms),
 * and the write for the last records of a burst is made by the next of:
 *
 *   filering_writer_flush(w)  makes the pending wake-up write now, if records are waiting
 *                             for one. Cheap when none is (no system call).
 *   filering_writer_poll(w, &timeout_ms)  does everything that is due: the pending
 *                             wake-up write, sealing a segment older than seal_after,
 *                             writing a manifest a full file system refused earlier,
 *                             and preparing the next segment ahead of need (so that the
 *                             next roll costs no allocation). It stores in *timeout_ms
 *                             (may be NULL) how long the caller may wait before calling
 *                             it again: -1 for "not before the next append".
 *
 * CONTRACT: a program that appends and then waits (for input, a timer...) calls
 * filering_writer_poll (or at least filering_writer_flush) before it blocks, and again
 * within the timeout it returns; otherwise followers see its last records only at their
 * next rescan, up to a second later, and seal_after is applied only at appends.
 * filering_writer_close seals and announces everything. Both return 0 or a negative code
 * (a failed wake-up write is not an error: it is only a hint). */
int filering_writer_flush(filering_writer *w);
int filering_writer_poll(filering_writer *w, int *timeout_ms);

/* filering_writer_close seals the hot segment (a hot segment holding no record stays
 * listed, empty and unsealed, so that its number is never used again), replaces the
 * manifest, unlinks the files it kept for reuse and releases the ring and the writer,
 * whatever it returns. w must not be used
 * afterwards. Returns 0 or the error of the last manifest write (-ENOSPC). NULL is a
 * no-op. */
int filering_writer_close(filering_writer *w);

/* Accessors; w must be open. The string of filering_writer_id is valid until close. */
uint64_t filering_writer_next_seq(const filering_writer *w); /* the next record's number */
uint64_t filering_writer_lost(const filering_writer *w);     /* records dropped for room */
size_t filering_writer_max_payload(const filering_writer *w);
uint64_t filering_writer_segment_size(const filering_writer *w);
const char *filering_writer_id(const filering_writer *w); /* 32 lowercase hex digits */

/* filering_producer_pid asks whether a producer holds the ring in dir (its OFD lock):
 * returns 1 and stores its pid in *pid (0 if the lock file holds none), 0 when none
 * runs, or a negative code (-ENOENT: no lock file, no producer ever ran). */
int filering_producer_pid(const char *dir, long *pid);

/* ======================================================================================
 * Reading a ring
 * ==================================================================================== */

typedef struct filering_reader filering_reader;

/* What a reader starts with. Zero selects every retained record. from and since filter;
 * last then keeps the last `last` records of what passes, counting records delivered
 * (sequence numbers may jump; records of missing or damaged segments do not count), not
 * sequence numbers. since applies when has_since is not 0: records whose time (ns since
 * the epoch) is at or after since_ns. A follower applies the filters to the records the
 * ring holds when it starts and delivers every record appended after them. */
typedef struct filering_selection {
	uint64_t last;
	uint64_t from;
	int64_t since_ns;
	int has_since;
} filering_selection;

/* A record delivered by a reader. data points into the reader's buffer: valid until the
 * next call to filering_reader_next or filering_reader_close. The bytes are the ones
 * whose CRC the reader checked (it copies a record out of the mapping before the check). */
typedef struct filering_record {
	uint64_t seq;
	int64_t time_ns;
	const unsigned char *data;
	size_t len;
} filering_record;

/* Flags of filering_reader_open. */
#define FILERING_FOLLOW 1 /* follow: wait for new records after the selected ones */

/* Positive results of filering_reader_next. */
#define FILERING_RECORD 1  /* *rec holds the next record */
#define FILERING_LOSS 2    /* records were lost (overwritten, taken, dropped or damaged)
                              before the follower reached them: filering_reader_loss() */
#define FILERING_RESTART 3 /* the ring was created anew; the follower starts again from
                              its first record */

/* filering_reader_open opens the ring in dir for reading, as a snapshot of the records
 * sel selects (sel may be NULL), or with FILERING_FOLLOW as a follower. A snapshot needs
 * the directory to exist (-ENOENT otherwise; -ELOOP when dir is a symbolic link); a
 * follower waits for the directory and the ring to appear, and then delivers every
 * record from sequence max(sel->from, 1) on unless sel asks for last or since. It reads
 * nothing else: the first filering_reader_next does. A reader needs only read permission
 * and never locks. It holds at most 64 segment files open at once: a read of more
 * segments opens them in windows of 64 entries of the manifest it started with, the
 * first all before reading any, each next one when the read reaches it, skipping a
 * segment removed meanwhile (a follower reports its records as lost); see
 * docs/FORMAT.md, "Reading: a consistent snapshot", step 2. A segment is removed, not
 * damaged, also when its open fails with EAGAIN (the producer holds a lease on it while
 * it reuses the file) or when it fails the checks of step 3 while its name no longer
 * names the file opened (reused after the name was looked up). */
int filering_reader_open(const char *dir, int flags, const filering_selection *sel,
                         filering_reader **out);

/* filering_reader_next returns the next event:
 *   FILERING_RECORD   *rec is the next record; sequence numbers strictly increase.
 *   FILERING_LOSS     (followers) records were lost; filering_reader_loss() has the
 *                     range. Reported as soon as the follower knows, before any later
 *                     record.
 *   FILERING_RESTART  (followers) the ring was created anew (see docs/FORMAT.md); the
 *                     next record is the new ring's.
 *   0                 a snapshot is at its end (every further call returns 0), or a
 *                     follower waited timeout_ms without anything to deliver.
 *   negative          an error; filering_reader_error() describes it. When
 *                     filering_is_damage(code), only one segment is damaged: call again
 *                     to go on with the next segment (a follower reports the records it
 *                     skips as a loss). FILERING_ENORING and FILERING_EMANIFEST end a
 *                     snapshot (further calls return 0); a follower tries again at its
 *                     next call. -EINTR: a signal interrupted the wait; call again.
 *                     -EMFILE, -ENFILE, -ENOMEM: out of resources; a snapshot ends, a
 *                     follower tries again at its next call.
 * timeout_ms: how long a follower waits for an event: -1 forever, 0 not at all. A
 * snapshot never waits. A follower wakes on inotify events on the ring directory and
 * rescans every second anyway (every 100 ms without inotify or after its queue
 * overflowed). */
int filering_reader_next(filering_reader *r, filering_record *rec, int timeout_ms);

/* filering_reader_loss stores the inclusive range of the records lost, reported by the
 * last FILERING_LOSS, in *from and *to. */
void filering_reader_loss(const filering_reader *r, uint64_t *from, uint64_t *to);

/* The last error filering_reader_next returned: a message naming the file as DIR/NAME
 * (and "offset N" when there is one), e.g. "/run/ring/s/0000000000000002.seg: corrupt at
 * offset 160: record checksum mismatch (computed 1c291ca3, stored 00000000)"; the file's
 * name inside the ring ("manifest", a segment name) or NULL for the directory itself;
 * the byte offset in that file, or -1 when the error is about the file as a whole; the
 * error's kind (filering_kind's vocabulary, or NULL). Strings are valid until the next
 * call on r. */
const char *filering_reader_error(const filering_reader *r);
const char *filering_reader_error_file(const filering_reader *r);
int64_t filering_reader_error_offset(const filering_reader *r);
const char *filering_reader_error_kind(const filering_reader *r);

/* filering_reader_fd returns a descriptor that becomes readable when a follower should
 * call filering_reader_next again (its inotify descriptor), for use in the caller's own
 * event loop with a timeout of at most a second (100 ms when it returns -1); -1 when
 * there is none (a snapshot, inotify unavailable, or the directory not there yet). It may
 * change after any call to filering_reader_next. */
int filering_reader_fd(const filering_reader *r);

/* filering_reader_close releases everything. NULL is a no-op. */
void filering_reader_close(filering_reader *r);

/* ======================================================================================
 * Output formats of the command-line readers (docs/FORMAT.md, "Output formats")
 * ==================================================================================== */

#define FILERING_FORMAT_LINES 0 /* payload, then "\n" */
#define FILERING_FORMAT_JSON 1  /* {"seq":N,"time":"...Z","data":"..."} or "data_b64", "\n" */
#define FILERING_FORMAT_RAW 2   /* u32 little-endian length, then payload */

/* filering_format_bound returns the most bytes filering_format writes for a payload of
 * len bytes in format (0 if that does not fit in a size_t or format is unknown). */
size_t filering_format_bound(size_t len, int format);

/* filering_format writes rec in format to buf, which must hold filering_format_bound
 * bytes, and returns how many it wrote. Byte for byte what `filering cat` prints.
 * (A raw frame of a payload of 4 GiB or more cannot be written: it is not a frame.) */
size_t filering_format(const filering_record *rec, int format, void *buf);

/* filering_format_time writes t (ns since the epoch) as YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ
 * (30 bytes) to buf, which must hold 31; NUL-terminated. Returns 30. */
size_t filering_format_time(int64_t t, char *buf);

/* filering_utf8_valid reports whether the len bytes at p are valid UTF-8 (strict: no
 * surrogates, no overlong forms, nothing above U+10FFFF). */
int filering_utf8_valid(const void *p, size_t len);

/* filering_crc32 returns the CRC-32 (IEEE) of len bytes at p, continuing from crc (0 to
 * start): zlib's crc32(). */
uint32_t filering_crc32(uint32_t crc, const void *p, size_t len);

#ifdef __cplusplus
}
#endif
#endif /* FILERING_H */

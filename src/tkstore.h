/*
 * tkstore: the persistent replay store of remote takeover, so that no
 * request executes twice, not even across a restart of the bridge.
 *
 * <state_dir>/takeover.ids is an append-only file of records
 * (host, vm, id, payload digest, recorded_us), each written with one
 * write(2) and protected by a CRC-32.  The bridge records an id with
 * tkstore_record() after its replay cache said it is new and BEFORE it
 * executes it; when that fails it refuses the request with
 * "store_error".  At start, tkstore_load() puts the ids still inside
 * their time to live back into the replay cache (tk_cache_restore(): a
 * restored id is answered "replay", never executed).
 *
 * Durability: a record is safe against kill -9 of the bridge as soon as
 * write(2) returned (it is in the kernel's page cache); appends are not
 * fsync'ed.  Power loss is not covered, on purpose: it kills the VM's
 * QEMU processes too, and with them every request that could still be
 * acted on.  Compaction, which replaces the file, fsyncs the new file
 * before the rename and the directory after it, so that it cannot lose
 * records that were already safe.
 *
 * Recovery: a torn last record (a crash in the middle of a write(2)) is
 * cut off; a record that fails its CRC elsewhere is skipped with a
 * warning and the next valid record is found by its magic number.  The
 * file is compacted (live records only: temp file, fsync, rename, fsync of
 * the directory) when it grows past TKSTORE_COMPACT_MIN and four times
 * the bytes still live.
 */
#ifndef QMP2MQTT_TKSTORE_H
#define QMP2MQTT_TKSTORE_H

#include <stddef.h>
#include <stdint.h>

#include "takeover.h"

#define TKSTORE_FILE		"takeover.ids"
#define TKSTORE_COMPACT_MIN	(1024 * 1024)	/* bytes */

struct tkstore;

/*
 * Opens (creating dir, mode 0700, and the file, mode 0600, as needed)
 * dir/takeover.ids for appending.  Returns the store, or NULL with a
 * message in err (unwritable directory, not a directory, ...).
 */
struct tkstore	*tkstore_open(const char *dir, char *err, size_t errlen);

/*
 * Reads the file and restores every record still live at now_us
 * (now_us < recorded_us + ttl_us) into cache; ttl_us is also the time to
 * live that compaction applies from then on.  Cuts a torn tail off the
 * file.  Returns the number of ids restored, or -1 (read error, or the
 * cache could not take them all: fail closed, the bridge must not serve
 * takeovers).
 */
int		 tkstore_load(struct tkstore *, struct tk_cache *,
		    int64_t now_us, int64_t ttl_us);

/*
 * Appends (host, vm, id, digest, now_us) with one write(2), and compacts
 * the file when it is due (a failed compaction only logs).  Returns 0
 * once the record is written, or -1 (nothing of it is left in the file):
 * the caller must then refuse the request ("store_error").
 */
int		 tkstore_record(struct tkstore *, const char *host,
		    const char *vm, const char *id,
		    const unsigned char digest[32], int64_t now_us);

/*
 * Rewrites the file with the records still live at now_us.  Returns 0,
 * or -1 with the old file left in place.  tkstore_record() calls it when
 * due; exposed for tests and for a quiet moment.
 */
int		 tkstore_compact(struct tkstore *, int64_t now_us);

/* Bytes in the file, and records held in memory (live or not yet pruned). */
uint64_t	 tkstore_size(const struct tkstore *);
size_t		 tkstore_count(const struct tkstore *);

void		 tkstore_close(struct tkstore *);	/* NULL is a no-op */

#endif

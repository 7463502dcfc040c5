/*
 * vmstate: what the bridge last published about one VM, kept in
 * bridge.state_dir so that a restarted bridge can (1) continue each VM's
 * seq above every value it ever used, and (2) notice a COLO exit that
 * happened while it was not listening (QEMU does not replay events).
 *
 * One small JSON file per VM, <state_dir>/vm_<host>_<vm>.json (names
 * percent-encoded so that no name can leave the directory), replaced
 * atomically (write to a temporary file, then rename).
 *
 * seq safety: the owner hands out seqs only below a ceiling it saved
 * first (seq_reserved).  When a save fails (a full disk), it marks the
 * file stale instead: an empty <file>.stale next to it (creating an empty
 * file needs an inode, not a block, so it works on a full disk; if even
 * that fails the state file is truncated to nothing, which reads as
 * damaged), and switches to time-based seqs (above the wall clock in µs).
 * A load that finds the mark (or a damaged file) reports it, and the
 * owner then continues above the wall clock, hence above every seq used
 * before.  The next successful save removes the mark.
 */
#ifndef QMP2MQTT_VMSTATE_H
#define QMP2MQTT_VMSTATE_H

#include <stdint.h>
#include <json-c/json.h>

#include "colo.h"

#define VMSTATE_SEQ_RESERVE	1000	/* seq values reserved per save */

struct vmstate {
	char		 mode[COLO_ENUM_MAX + 1];	/* "" unknown */
	char		 last_mode[COLO_ENUM_MAX + 1];
	char		 reason[COLO_ENUM_MAX + 1];
	int		 exited;	/* a COLO_EXIT was published for the
					   current COLO session */
	uint64_t	 seq_reserved;	/* every seq used is below this */
	int		 hb_unconfirmed; /* a heartbeat was sent, its outcome
					   not read yet (vm.h tk_unconfirmed) */
	json_object	*last_exit;	/* owned reference, or NULL */
	int		 stale;		/* (load) marked stale: seq_reserved
					   may be below seqs used since */
};

/*
 * Loads the VM's state.  Returns 0 when found, 1 when there is none yet
 * (st zeroed), -1 when the file is unreadable or damaged (logged; st
 * zeroed).
 */
int	vmstate_load(const char *dir, const char *host, const char *vm,
	    struct vmstate *st);
/*
 * Saves atomically; with sync, durably (fsync of the file before the
 * rename and of the directory after: for seq ceilings, which must survive
 * a power cut).  Removes a stale mark.  0, or -1 (logged).
 */
int	vmstate_save(const char *dir, const char *host, const char *vm,
	    const struct vmstate *st, int sync);
/* Marks the saved state stale (see above).  0, or -1 (logged). */
int	vmstate_mark_stale(const char *dir, const char *host, const char *vm);
/* Releases st->last_exit. */
void	vmstate_clear(struct vmstate *st);

#endif

/*
 * wire.h - an observer of the iSCSI byte stream libiscsi reads from a session's socket:
 * it follows every PDU the target sends, proves where each byte of Data-In landed,
 * checks what libiscsi 1.19 would otherwise trust blindly (sense lengths, login keys,
 * R2T and Data-In bounds), and bounds how much one iscsi_service() call may read.
 * How and why: the comment at the top of src/wire.c.
 *
 * Used by the libiscsi transport (src/transport_iscsi.c) only. Everything on one
 * wire_conn runs on the thread that calls iscsi_service() for its context; the global
 * descriptor table behind wire_attach() is lock-free and safe from any thread.
 */
#ifndef ISCSIFS_WIRE_H
#define ISCSIFS_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct wire_conn;

/* What one iscsi_service() call may read at most: it returns (the socket still
 * readable) once this many PDUs or bytes were read, so the caller's timers run and its
 * commands are sent however fast the target talks. */
#define WIRE_SERVICE_PDUS 64
#define WIRE_SERVICE_BYTES (4u << 20)

/* More target-initiated NOP-In pings than this within one second end the connection:
 * libiscsi queues a NOP-Out for each, and a target that pings without reading would
 * make that queue grow without bound. */
#define WIRE_MAX_PINGS_PER_S 1000

/* A new observer, not yet attached to a descriptor. NULL when out of memory. */
struct wire_conn *wire_new(void);

/* Detach (if attached) and free. */
void wire_free(struct wire_conn *w);

/*
 * Observe descriptor `fd` (libiscsi's socket, iscsi_get_fd, right after
 * iscsi_connect_async): from now on every recv/readv on it goes through w. Returns 0,
 * -EBUSY when fd is already observed, -EMFILE when fd is too large for the table.
 */
int wire_attach(struct wire_conn *w, int fd);

/* Stop observing; call before the descriptor is closed (before iscsi_destroy_context). */
void wire_detach(struct wire_conn *w);

/* Call before each iscsi_service(): starts a new read budget. */
void wire_service_begin(struct wire_conn *w);

/* R2Ts accepted since the previous call (each makes libiscsi queue a burst of Data-Out
 * PDUs: the transport corks the socket while it sends them). Resets the count. */
uint32_t wire_take_r2ts(struct wire_conn *w);

/*
 * Why the observer ended the connection (it failed libiscsi's read with ECONNRESET
 * rather than let it process a PDU it would misuse, or because it lost track of the
 * stream), as one line naming what the target did; NULL while the connection is fine.
 */
const char *wire_fault(const struct wire_conn *w);

/* The command (ITT) the fault of wire_fault() is about; false when it is about the
 * connection as a whole. */
bool wire_fault_itt(const struct wire_conn *w, uint32_t *itt);

/* Whether the observer saw, checked and accepted the target's final login response
 * (transit to full feature phase). libiscsi reporting a login the observer did not see
 * means it reads the socket in a way the observer does not follow: refuse it. */
bool wire_logged_in(const struct wire_conn *w);

/* Make room to track one more command (call before queueing it): 0 or -ENOMEM. */
int wire_cmd_reserve(struct wire_conn *w);

/*
 * Track SCSI command `itt` (scsi_task.itt after iscsi_scsi_command_async, before the
 * next iscsi_service): `in` is the buffer Data-In goes to (libiscsi's iovec) and in_len
 * its size, NULL and 0 when the command reads nothing; out_len the bytes it writes
 * (R2T bounds). Cannot fail after wire_cmd_reserve; without room the command stays
 * untracked, and its answer is refused (wire_answer.known is false).
 */
void wire_cmd_begin(struct wire_conn *w, uint32_t itt, void *in, uint32_t in_len,
		    uint32_t out_len);

/* What the observer saw of one command's answer. */
struct wire_answer {
	bool known;            /* the command was tracked (wire_cmd_begin) */
	bool status_seen;      /* its status (SCSI Response, or Data-In with S) passed */
	uint8_t status;        /* the SCSI status byte, when status_seen */
	uint32_t data_in;      /* bytes of Data-In proven: in order, DataSN without gaps,
	                          every offset exactly where the previous PDU ended */
	uint32_t residual;     /* the residual count, when underflow */
	bool underflow, overflow;
	bool sense_valid;      /* CHECK CONDITION with sense data present, within the data
	                          segment, as long as its SenseLength and its own additional
	                          length claim, response code 0x70-0x73 */
	uint8_t sense_key, asc, ascq;   /* when sense_valid */
	uint16_t sense_len;    /* SenseLength as the target claimed it */
	char fault[200];       /* "" or how the target's answer broke the protocol */
};

/* Stop tracking `itt` and say what was seen (all zero, known false, when untracked). */
void wire_cmd_end(struct wire_conn *w, uint32_t itt, struct wire_answer *out);

/*
 * Whether the observer is in place: this process's recv and readv are wire.c's (the
 * executable exports them, so libiscsi's calls reach them). false with a one-line
 * reason otherwise. Pure; any thread.
 */
bool wire_selftest(char *err, size_t errlen);

#endif

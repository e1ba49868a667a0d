/*
 * transport.h - what a session needs from an iSCSI initiator library: one connection
 * (context) to one target, driven by the session's event thread.
 *
 * session.c drives a struct session_transport and never calls libiscsi itself, so its
 * state machine can be unit-tested over a fake (tests/unit/test_session.c). The real
 * transport, transport_libiscsi (src/transport_iscsi.c), is libiscsi 1.19 (every slot
 * below says which libiscsi call it is) plus what libiscsi does not do: resolving host
 * names without blocking (resolve.h), and proving what the target sent - Data-In
 * placement, sense lengths, login keys - through the wire observer (wire.h).
 *
 * Rules for every slot:
 *   - All calls on one connection are made from one thread (the session's); a
 *     transport need not be thread-safe per connection.
 *   - Asynchronous slots return 0 when the request was queued, or -1 when it was
 *     refused (the reason is in get_error); a refused request's callback is never
 *     called. Callbacks of queued requests are called only from inside service() or
 *     destroy(), never from the slot that queued them.
 *   - A callback may queue new requests on the same connection, but must not destroy it.
 */
#ifndef ISCSIFS_TRANSPORT_H
#define ISCSIFS_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "iscsifs/config.h"

/* One connection; its layout is private to the transport. */
struct transport_conn;

enum transport_session_type { TRANSPORT_SESSION_NORMAL = 0, TRANSPORT_SESSION_DISCOVERY };

enum transport_dir { TRANSPORT_DIR_NONE = 0, TRANSPORT_DIR_READ, TRANSPORT_DIR_WRITE };

/*
 * The status a callback receives: a SCSI status byte (0 GOOD, 2 CHECK CONDITION,
 * 8 BUSY, 0x28 TASK SET FULL, ...) when the target answered, or one of these when it
 * did not. They are libiscsi's values (checked at compile time in transport_iscsi.c).
 */
#define TRANSPORT_STATUS_GOOD 0
#define TRANSPORT_STATUS_CHECK_CONDITION 2
#define TRANSPORT_STATUS_CANCELLED 0x0f000000  /* connection lost or destroyed under it */
#define TRANSPORT_STATUS_ERROR 0x0f000001      /* the transport failed; see get_error */
#define TRANSPORT_STATUS_TIMEOUT 0x0f000002    /* the transport's own timeout */

/* Connect, login, NOP-Out and logout completions. */
typedef void (*transport_cb)(struct transport_conn *conn, int status, void *priv);

/* The outcome of a SCSI command. */
struct transport_result {
	int status;          /* as above */
	bool sense_valid;    /* CHECK CONDITION with sense data present, as long as it
	                        claims (SenseLength within the data segment, the sense's own
	                        additional length within SenseLength), response code
	                        0x70-0x73 (fixed format: through ASCQ) */
	int sense_key, asc, ascq;   /* when sense_valid, else 0 */
	uint32_t residual;   /* bytes of data-in not transferred (underflow), else 0 */
	uint32_t data_in;    /* READ: bytes of Data-In proven to have arrived, in order and
	                        each where the previous one ended; 0 otherwise. Only these
	                        bytes of the buffer were written by the target. */
	bool protocol_error; /* with TRANSPORT_STATUS_ERROR: the target's answer to this
	                        command broke the protocol (Data-In misplaced, duplicated or
	                        beyond the buffer, unusable sense, ...). It was answered,
	                        wrongly: fail it, do not re-issue it. */
	const char *reason;  /* with protocol_error: what the target did; with CANCELLED,
	                        ERROR or TIMEOUT otherwise: why the connection failed when the
	                        transport knows, else NULL. Valid during the callback. */
};

typedef void (*transport_cmd_cb)(struct transport_conn *conn,
				 const struct transport_result *res, void *priv);

struct session_transport {
	/*
	 * A new, unconnected connection (iscsi_create_context and the iscsi_set_* calls):
	 * initiator name, session type, target name (normal sessions; NULL for discovery),
	 * header digest, and CHAP credentials from cfg (mutual CHAP only for normal
	 * sessions). The transport's own automatic reconnect is off: the session recovers.
	 * `opaque` is what session_create_with() was given. NULL when out of memory.
	 */
	struct transport_conn *(*create)(void *opaque, const struct config *cfg,
					 const char *target, enum transport_session_type type);

	/* Start the TCP connection to "host:port" (iscsi_connect_async); cb gets
	 * TRANSPORT_STATUS_GOOD once connected. A host name is resolved first without
	 * blocking the caller (libiscsi 1.19 would call getaddrinfo synchronously): until it
	 * is, get_fd is a descriptor that becomes readable with the answer. */
	int (*connect_async)(struct transport_conn *conn, const char *portal, transport_cb cb,
			     void *priv);

	/* Start the login on a connected connection (iscsi_login_async); cb gets GOOD once
	 * logged in, else an error whose text get_error holds. */
	int (*login_async)(struct transport_conn *conn, transport_cb cb, void *priv);

	/* Do the work poll() found (iscsi_service): `revents` as poll returned them for
	 * get_fd (POLLRDHUP cleared). Callbacks run from here. Returns 0, or -1 when the
	 * connection failed (get_error says why); in-flight requests may then already
	 * have been called back with CANCELLED. One call does a bounded amount of work
	 * (wire.h: WIRE_SERVICE_PDUS, WIRE_SERVICE_BYTES) and may leave the descriptor
	 * readable: the caller polls again, after running its timers. */
	int (*service)(struct transport_conn *conn, int revents);

	/* The descriptor to poll (iscsi_get_fd); -1 when there is none yet. */
	int (*get_fd)(struct transport_conn *conn);

	/* The poll events wanted now (iscsi_which_events); may be 0. */
	int (*which_events)(struct transport_conn *conn);

	/*
	 * Send one SCSI command to `lun` (iscsi_scsi_command_async): a CDB of cdb_len bytes
	 * and at most one data buffer, read into (TRANSPORT_DIR_READ) or written from
	 * (TRANSPORT_DIR_WRITE); `buf` must stay valid until cb. cb gets the status, the
	 * sense and the residual. The transport owns whatever it allocated for the command
	 * and frees it after cb, or in destroy. Returns -ENOMEM when it could not allocate
	 * (nothing queued, the connection is still usable), another negative value when
	 * the connection is unusable.
	 */
	int (*command_async)(struct transport_conn *conn, uint64_t lun, const uint8_t *cdb,
			     int cdb_len, enum transport_dir dir, void *buf, uint32_t len,
			     transport_cmd_cb cb, void *priv);

	/*
	 * Whether command_async can address `lun` (a lunaddr.h value) exactly as given.
	 * libiscsi 1.19 writes only the first two bytes of the LUN field
	 * (iscsi_pdu_set_lun), so a LUN with any of bytes 2..7 set cannot be reached
	 * through it; command_async refuses such a LUN with -EINVAL rather than send the
	 * command to another LUN. Pure; callable from any thread.
	 */
	bool (*can_address)(uint64_t lun);

	/* Send a NOP-Out that asks for a NOP-In (iscsi_nop_out_async); cb gets GOOD when it
	 * came back. */
	int (*nop_out_async)(struct transport_conn *conn, transport_cb cb, void *priv);

	/* Log out (iscsi_logout_async); cb gets the outcome. */
	int (*logout_async)(struct transport_conn *conn, transport_cb cb, void *priv);

	/* The last error as one line (iscsi_get_error); never NULL, may be stale. */
	const char *(*get_error)(struct transport_conn *conn);

	/* Close and free the connection (iscsi_destroy_context). Callbacks still pending
	 * are either called from here with TRANSPORT_STATUS_CANCELLED or never; the
	 * caller ignores them while it destroys. */
	void (*destroy)(struct transport_conn *conn);
};

/* The real transport: libiscsi over TCP. Its create ignores `opaque`. */
extern const struct session_transport transport_libiscsi;

/*
 * Classify a connect or login error text into -errno and a one-line reason for the
 * user (naming target, portal, and what to check; never a secret). The texts are
 * libiscsi's (a fake transport reports the same words): -ECONNREFUSED, -EHOSTUNREACH,
 * -EACCES (authentication or authorization), -ENOENT (unknown target), else -EIO.
 * `target` is NULL for discovery.
 */
int transport_classify_error(const char *what, const char *portal, const char *target,
			     const struct config *cfg, char *err, size_t errlen);

#endif

/*
 * lunaddr.h - a LUN as the target reported it.
 *
 * SAM-5 (4.7) makes a LUN an 8-byte field whose first two bits of each level choose
 * the address method: 00b peripheral device, 01b flat space, 10b logical unit, 11b
 * extended. iscsifs never re-encodes a LUN: the 8 bytes of a REPORT LUNS entry are
 * kept as they came and sent back unchanged in every command (discovery, I/O, the
 * identity check after a re-login, `ls`). Re-encoding a number is what aliased LUN 257
 * (flat space 0x4101) to LUN 1 (peripheral 0x0001) when a target reported both.
 *
 * The value is held in a uint64_t whose most significant byte is byte 0 of the field
 * (the order of the bytes on the wire), so equal LUNs compare equal as numbers.
 */
#ifndef ISCSIFS_LUNADDR_H
#define ISCSIFS_LUNADDR_H

#include <stddef.h>
#include <stdint.h>

/* The 8 bytes of a REPORT LUNS entry (or of a LUN field) as a lunaddr. */
uint64_t lunaddr_from_bytes(const uint8_t b[8]);

/* And back: b[0] is the most significant byte. */
void lunaddr_to_bytes(uint64_t a, uint8_t b[8]);

/*
 * The LUN number users see (file names `lunN`, the URL's /N, log lines): for a
 * single-level LUN in peripheral device addressing on bus 0 (00b, byte 1 = 0..255) or
 * flat space addressing (01b, 14 bits = 0..16383). -1 for every other form (a bus
 * number, logical unit or extended addressing, a second level): those have no number
 * and are shown as lunaddr_format() gives them.
 */
int lunaddr_number(uint64_t a);

/*
 * The address of LUN number n (0..16383) as targets report it when they report it in
 * the simplest form: peripheral device addressing for 0..255, flat space for
 * 256..16383 (what tgt, LIO and SCST do). UINT64_MAX for other n.
 */
uint64_t lunaddr_from_number(int n);

/* "257" when lunaddr_number() knows the number, else "0x" and 16 hex digits. */
const char *lunaddr_format(uint64_t a, char *buf, size_t len);

#define LUNADDR_STRLEN 24

/* lunaddr_format() into a temporary, for one printf argument: "LUN %s", LUNSTR(a). */
#define LUNSTR(a) lunaddr_format((a), (char[LUNADDR_STRLEN]){ 0 }, LUNADDR_STRLEN)

#endif

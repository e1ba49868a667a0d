/*
 * lunaddr.c - LUN fields as SAM-5 4.7 defines them (lunaddr.h).
 */
#include <stdio.h>

#include "iscsifs/lunaddr.h"

uint64_t lunaddr_from_bytes(const uint8_t b[8])
{
	uint64_t a = 0;
	for (int i = 0; i < 8; i++)
		a = a << 8 | b[i];
	return a;
}

void lunaddr_to_bytes(uint64_t a, uint8_t b[8])
{
	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)(a >> (56 - 8 * i));
}

int lunaddr_number(uint64_t a)
{
	uint8_t b[8];
	lunaddr_to_bytes(a, b);
	for (int i = 2; i < 8; i++)
		if (b[i])
			return -1; /* a second level, or a longer (extended) form */
	switch (b[0] >> 6) {
	case 0: /* peripheral device addressing: byte 0 is the bus, byte 1 the LUN */
		return b[0] == 0 ? b[1] : -1;
	case 1: /* flat space addressing: 14 bits */
		return (b[0] & 0x3f) << 8 | b[1];
	default: /* logical unit or extended addressing */
		return -1;
	}
}

uint64_t lunaddr_from_number(int n)
{
	if (n < 0 || n > 0x3fff)
		return UINT64_MAX;
	if (n < 256)
		return (uint64_t)n << 48;
	return (uint64_t)(0x4000 | n) << 48;
}

const char *lunaddr_format(uint64_t a, char *buf, size_t len)
{
	int n = lunaddr_number(a);
	if (n >= 0)
		snprintf(buf, len, "%d", n);
	else
		snprintf(buf, len, "0x%016llx", (unsigned long long)a);
	return buf;
}

/*
 * rec: what the bridge's two append-only logs (the event spool,
 * spool.log, and the replay store, takeover.ids) share to write records
 * that a crash can tear but never corrupt unnoticed: a CRC-32 (IEEE
 * 802.3, the zlib one) over each record, fixed-width integers in the
 * machine's byte order (both files are local to the machine), and a
 * write(2) loop.  Pure but for rec_write_all().
 */
#ifndef QMP2MQTT_REC_H
#define QMP2MQTT_REC_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* The CRC-32 of buf, continuing from crc (0 to start). */
uint32_t	rec_crc32(uint32_t crc, const void *buf, size_t len);
/* write(2) all of buf, retrying on EINTR.  0, or -1 (errno set). */
int		rec_write_all(int fd, const void *buf, size_t len);

static inline void
rec_put16(unsigned char *p, uint16_t v)
{
	memcpy(p, &v, 2);
}

static inline uint16_t
rec_get16(const unsigned char *p)
{
	uint16_t v;

	memcpy(&v, p, 2);
	return v;
}

static inline void
rec_put32(unsigned char *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static inline uint32_t
rec_get32(const unsigned char *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return v;
}

#endif

/* INTERIM: stand-ins until the tkstore/config/mqtt branches are merged. */
#ifndef QMP2MQTT_INTERIM_H
#define QMP2MQTT_INTERIM_H
#include <stddef.h>
#include <stdint.h>
struct tkstore;
struct tk_cache;
static inline struct tkstore *tkstore_open(const char *d, char *e, size_t l)
{ (void)d; (void)e; (void)l; return (struct tkstore *)(uintptr_t)1; }
static inline int tkstore_load(struct tkstore *s, struct tk_cache *c,
    int64_t n, int64_t t) { (void)s; (void)c; (void)n; (void)t; return 0; }
static inline int tkstore_record(struct tkstore *s, const char *h,
    const char *v, const char *i, const unsigned char *d, int64_t n)
{ (void)s; (void)h; (void)v; (void)i; (void)d; (void)n; return 0; }
static inline void tkstore_close(struct tkstore *s) { (void)s; }
#ifndef MQTT_SUB_NO_LOCAL
#define MQTT_SUB_RETAINED	0
#define MQTT_SUB_NO_RETAINED	1
#define MQTT_SUB_NO_LOCAL	0
#endif
#endif

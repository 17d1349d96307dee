/* xalloc.h -- allocation that cannot fail: out of memory ends the process with a message.
 * A half-handled out-of-memory path is worse than a clean restart (STYLE.md). */
#ifndef HERALD_XALLOC_H
#define HERALD_XALLOC_H

#include <stddef.h>

/* Ends the process with a message: an allocation of n bytes failed. For libraries that return
 * NULL when they run out (jansson's dumps), so one policy covers every allocation. */
_Noreturn void xalloc_fail(size_t n);
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

#endif

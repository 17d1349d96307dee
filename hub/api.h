/* api.h -- the HTTP API of SPEC.md on --api-listen (evhttp on the control loop). */
#ifndef HERALD_API_H
#define HERALD_API_H

#include <stddef.h>

struct hub;
struct api;

/* Binds --api-listen. Returns NULL with err set. */
struct api *api_new(struct hub *hub, char *err, size_t errlen);
void api_free(struct api *api); /* NULL is a no-op */

#endif

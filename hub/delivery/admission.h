/* admission.h -- who may open a client connection (/ws or /sse): the path, draining,
 * the instance's connection cap, the per-address cap, the Origin and the token, decided as
 * plain policy over the request's strings. No lws here: conn.c reads the headers and hands
 * them over, saying for each whether it was absent or too long for its buffer (too long is a
 * refusal, never "absent"). The slots a connection holds live in one admission_gate shared by
 * every plane. Any thread (the gate is thread-safe). */
#ifndef HERALD_ADMISSION_H
#define HERALD_ADMISSION_H

#include "common/metrics.h"
#include "common/netaddr.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config;
struct jwt_claims;

/* The counts behind --max-connections and --max-connections-per-ip, over every plane. */
struct admission_gate;
struct admission_gate *admission_gate_new(void);
void admission_gate_free(struct admission_gate *g); /* NULL is a no-op */
/* Connections holding a slot now (a gauge; equal to herald_connections once settled). */
long admission_gate_count(const struct admission_gate *g);
/* Connections counted under addr's limit key now. */
unsigned admission_gate_count_of(struct admission_gate *g, const char *key);

enum hdr_state { HDR_ABSENT, HDR_PRESENT, HDR_TOO_LONG };
/* One request header (or query argument) as the transport read it. value is NUL-terminated
 * when PRESENT, and may be "" (an empty header is present). */
struct hdr {
    enum hdr_state state;
    const char *value;
};

struct admission_request {
    struct hdr path;          /* the request path, without the query */
    const char *peer;         /* the socket's peer address, normalised */
    struct hdr origin;        /* Origin */
    struct hdr forwarded_for; /* every X-Forwarded-For line, joined with ',' */
    struct hdr authorization; /* Authorization */
    struct hdr query_token;   /* ?token= */
    bool is_draining;
    int64_t now_s; /* Unix seconds, for the token's exp */
};

enum admission_verdict {
    ADMIT,            /* go on: welcome the client */
    ADMIT_THEN_CLOSE, /* complete the handshake, then close with close_code before any welcome */
    REFUSE_HTTP,      /* answer the request with status and a JSON error */
};

struct admission {
    enum admission_verdict verdict;
    /* REFUSE_HTTP */
    unsigned status;
    const char *code, *text;
    enum refuse_reason refuse_why;
    /* ADMIT_THEN_CLOSE */
    uint16_t close_code;
    const char *close_reason;
    enum close_reason close_why;
    /* what the request was: its client (through trusted proxies) and why it was refused */
    char ip[NETADDR_STRLEN];
    char ip_key[NETADDR_KEYLEN]; /* what --max-connections-per-ip counts it under */
    char why[160];               /* for the log line; never a token */
    /* held until admission_release() */
    struct jwt_claims *claims; /* with --jwt-secret-file, on ADMIT */
    struct admission_gate *gate;
    bool holds_slot, holds_ip_slot;
};

/* Decides on rq under cfg, for a connection served on path `want` ("/ws" or "/sse"). Takes the
 * connection's slots in gate atomically (so racing upgrades on two planes cannot both pass
 * the last one); every verdict, refusals included, must be followed by admission_release()
 * once the connection ends. out is overwritten. */
void admission_decide(const struct config *cfg, struct admission_gate *gate, const char *want,
                      const struct admission_request *rq, struct admission *out);
/* Gives back the slots and the claims. Safe to call twice. */
void admission_release(struct admission *a);

#endif

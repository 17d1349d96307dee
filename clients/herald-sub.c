/* herald-sub.c -- subscribe to Herald channels and print each event as one JSON line.
 *
 * The command-line subscriber (like `redis-cli subscribe`): it opens one WebSocket to the hub's
 * /ws endpoint with the libwebsockets client API, waits for the hub's welcome, subscribes to every
 * CHANNEL given, then copies each "event" frame to stdout verbatim, one line per event, flushed
 * per line so that pipes and tests see events as they come. Progress ("subscribed X", "ready")
 * and errors go to stderr, one line each, so that scripts can wait for them.
 *
 * One thread, one lws context, one connection, no reconnection: a script that wants to survive a
 * hub restart reruns herald-sub. Signals only set a flag; the loop, woken at least every 100 ms by
 * an lws timer, notices it and closes with 1000. The exit status says how the session ended:
 *
 *   0  close 1000 from the hub, --count reached, SIGINT or SIGTERM, stdout closed by its reader
 *   1  cannot connect (DNS, refused, TLS, handshake refused) or a local failure
 *   2  bad usage
 *   3  closed by the hub with a code other than 1000, connection lost, frame over 16 MiB
 *   4  the hub refused a subscription (an error frame that echoes a subscribe ref)
 *   5  --timeout expired
 *
 * Event lines are the hub's JSON text unchanged; herald-sub parses each frame only to read its
 * "type" (and an event's "seq"). JSON text can carry a raw CR or LF only as whitespace between
 * tokens, so those are turned into spaces to keep an event on one line; the hub sends compact
 * JSON anyway.
 *
 * History: --last N asks the hub for each channel's N newest kept events before live ones;
 * --since EPOCH:SEQ (one channel) resumes after event SEQ of EPOCH: the hub replays what came
 * since, or says it cannot ("not resumed" on stderr: events were missed). herald-sub keeps each
 * channel's epoch and last seq and prints them on exit ("position CHANNEL EPOCH:SEQ"), which is
 * what a later --since takes. A gap the hub reports, and a channel whose numbering restarts,
 * are one line each on stderr, --quiet or not: events were lost. */

#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <jansson.h>
#include <libwebsockets.h>

#include "client_util.h"
#include "herald_version.h"
#include "url.h"

#define SUB_DEFAULT_URL "ws://127.0.0.1:8080/ws"
#define SUB_PROTOCOL "herald"
#define SUB_MAX_FRAME ((size_t)16 * 1024 * 1024) /* largest message we accumulate */
#define SUB_MAX_TOKEN 16384                      /* fits the handshake buffer below */
#define SUB_SERV_BUF 32768                       /* lws pt_serv_buf_size: headers are built in it */
#define SUB_TICK_US (100 * LWS_US_PER_MS)        /* the loop wakes at least this often */
#define SUB_HANDSHAKE_SECS 10   /* lws timeout_secs: TCP + TLS + upgrade response */
#define SUB_CLOSE_GRACE_MS 2000 /* how long our close may wait for the hub's */
#define SUB_LAST_MAX 1000UL     /* --last: what the hub takes */
#define SUB_EPOCH_MAX 24        /* --since: the hub's epochs are 1 to 24 letters and digits */
#define SUB_SEQ_MAX 9007199254740991ULL /* 2^53 - 1: what a JSON number holds exactly */

enum sub_exit {
    SUB_EXIT_OK = 0,
    SUB_EXIT_CONNECT = 1,
    SUB_EXIT_USAGE = 2,
    SUB_EXIT_CLOSED = 3,
    SUB_EXIT_REFUSED = 4,
    SUB_EXIT_TIMEOUT = 5,
};

/* Where the session is. Only set_state() writes sub->state. */
enum sub_state {
    SUB_CONNECTING,  /* TCP, TLS, HTTP upgrade */
    SUB_OPEN,        /* upgraded, waiting for the welcome */
    SUB_SUBSCRIBING, /* subscribes sent or queued, acks pending */
    SUB_READY,       /* every channel acknowledged */
    SUB_CLOSING,     /* we sent (or are about to send) a close frame */
    SUB_DONE,        /* the connection is gone: the loop ends */
};

static const char *const state_names[] = {"connecting", "open",    "subscribing",
                                          "ready",      "closing", "done"};

struct sub_opts {
    const char *url;
    const char *token;       /* NULL: no Authorization header */
    unsigned long count;     /* 0: no limit */
    unsigned long timeout_s; /* 0: none */
    unsigned long last;      /* --last N; 0: none */
    char *since_epoch;       /* --since EPOCH:SEQ (allocated); NULL: none */
    unsigned long since_seq;
    int is_quiet;
    const char **channels; /* deduplicated, pointing into argv */
    int nchannels;
};

/* Where a channel is in the hub's numbering. */
struct sub_position {
    char *epoch; /* NULL until a subscribed frame names one */
    unsigned long long seq;
};

struct sub {
    const struct sub_opts *opts;
    struct client_url url;
    struct lws_context *ctx;
    struct lws *wsi;            /* NULL once the connection is gone */
    lws_sorted_usec_list_t sul; /* the wake-up tick */
    enum sub_state state;
    char *auth;               /* "Bearer <token>" or NULL */
    unsigned char *is_acked;  /* one per channel */
    struct sub_position *pos; /* one per channel */
    int next_subscribe;       /* index of the next channel to send */
    int nacked;
    char *rx; /* the message being reassembled from fragments */
    size_t rx_len, rx_cap;
    int is_rx_dropping; /* the current message went over SUB_MAX_FRAME */
    unsigned long nevents;
    int peer_code; /* close code the hub sent, -1 before any close frame */
    char peer_reason[128];
    int close_code;  /* what our close frame carries */
    int exit_status; /* decided when the session ends (or when we start closing) */
    int64_t start_ms, closing_since_ms;
    int is_signalled, is_timed_out;
};

static volatile sig_atomic_t got_signal; /* SIGINT/SIGTERM count, read by the loop */

static void on_signal(int sig)
{
    (void)sig;
    if (got_signal < 2)
        got_signal++;
}

#define SUB_SYNOPSIS                                                                               \
    "usage: herald-sub [--url ws://HOST:PORT/ws] [--token JWT] [--count N]\n"                      \
    "                  [--timeout SECONDS] [--last N] [--quiet] CHANNEL...\n"                      \
    "       herald-sub [OPTIONS] --since EPOCH:SEQ CHANNEL\n"

static void print_help(void)
{
    fputs(SUB_SYNOPSIS
          "\n"
          "Subscribe to Herald channels and print each event as one JSON line on stdout.\n"
          "\n"
          "  --url URL          hub WebSocket endpoint, ws:// or wss:// (default " SUB_DEFAULT_URL
          ")\n"
          "  --token JWT        send Authorization: Bearer JWT with the handshake\n"
          "  --count N          exit 0 after N events\n"
          "  --timeout SECONDS  exit 5 if not finished after SECONDS (default 0: never)\n"
          "  --last N           first the N newest events the hub keeps of each channel\n"
          "                     (0 to 1000), then live ones\n"
          "  --since EPOCH:SEQ  one CHANNEL only: the events after SEQ of EPOCH first (as\n"
          "                     printed by 'position' on a former run), then live ones; with\n"
          "                     --last, the hub uses --last when it cannot resume\n"
          "  --quiet            no 'subscribed' and 'position' lines on stderr\n"
          "  --help, --version\n"
          "\n"
          "stderr: 'herald-sub: subscribed CHANNEL at EPOCH:SEQ' per acknowledged channel\n"
          "(SEQ: the channel's latest event), then 'herald-sub: ready' once all are (also with\n"
          "--quiet). With --since, 'resumed from EPOCH:SEQ', or 'not resumed from EPOCH:SEQ'\n"
          "when the hub no longer has those events (then only live ones follow: some were\n"
          "missed). A 'gap' line names events that will not come; 'restarted its numbering'\n"
          "a channel whose numbers begin again. On exit, 'herald-sub: position CHANNEL\n"
          "EPOCH:SEQ' per channel: the last event printed, for a later --since.\n"
          "exit: 0 closed normally (1000), --count reached or SIGINT/SIGTERM; 1 cannot connect;\n"
          "2 usage; 3 closed by the hub with another code or connection lost;\n"
          "4 subscription refused; 5 timeout.\n",
          stdout);
}

/* Parse ws[s]://HOST[:PORT][/PATH][?QUERY] (clients/url.c), within what lws 4.1.6 can send:
 * it writes the Host header into 128 bytes and the request line into 2048. */
static int url_parse(const char *url, struct client_url *u, const char **err)
{
    static const char *const schemes[] = {"ws", "wss", NULL};

    if (client_url_parse(url, schemes, u, err) < 0) {
        if (!strcmp(*err, "unsupported scheme"))
            *err = "must start with ws:// or wss://";
        return -1;
    }
    if (strlen(u->authority) > 120) {
        *err = "host too long";
        return -1;
    }
    if (strlen(u->path) > 1900) {
        *err = "path too long";
        return -1;
    }
    return 0;
}

/* EPOCH:SEQ (split at the last colon) into o. Returns 0, or -1 with a message printed. */
static int parse_since(const char *arg, struct sub_opts *o)
{
    const char *colon = strrchr(arg, ':');
    unsigned long long seq = 0;
    size_t elen = colon ? (size_t)(colon - arg) : 0;
    const char *d;

    if (colon && colon[1]) {
        for (d = colon + 1; *d >= '0' && *d <= '9' && seq <= SUB_SEQ_MAX; d++)
            seq = seq * 10 + (unsigned long long)(*d - '0');
    }
    if (!colon || !colon[1] || *d || seq > SUB_SEQ_MAX || elen == 0 || elen > SUB_EPOCH_MAX) {
        fprintf(stderr, "herald-sub: --since: '%s' is not EPOCH:SEQ\n", arg);
        return -1;
    }
    if (strspn(arg, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") < elen) {
        fprintf(stderr, "herald-sub: --since: an epoch is letters and digits\n");
        return -1;
    }
    free(o->since_epoch);
    o->since_epoch = client_xprintf("%.*s", (int)elen, arg);
    o->since_seq = (unsigned long)seq;
    return 0;
}

/* Fill o from argv. Returns -1 to exit with status *status (help, version, bad usage), else 0.
 * o->channels and o->since_epoch are allocated: the caller frees them. */
static int parse_args(int argc, char **argv, struct sub_opts *o, int *status)
{
    static const struct option longopts[] = {
        {"url", required_argument, NULL, 'u'},   {"token", required_argument, NULL, 't'},
        {"count", required_argument, NULL, 'c'}, {"timeout", required_argument, NULL, 'T'},
        {"quiet", no_argument, NULL, 'q'},       {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},     {"last", required_argument, NULL, 'l'},
        {"since", required_argument, NULL, 's'}, {NULL, 0, NULL, 0},
    };
    int c;

    memset(o, 0, sizeof(*o));
    o->url = SUB_DEFAULT_URL;
    *status = SUB_EXIT_USAGE;
    opterr = 0; /* our messages say "herald-sub", not argv[0] */
    while ((c = getopt_long(argc, argv, ":hq", longopts, NULL)) != -1) {
        switch (c) {
        case 'u': o->url = optarg; break;
        case 't':
            if (!*optarg || strlen(optarg) > SUB_MAX_TOKEN || strpbrk(optarg, "\r\n")) {
                fputs("herald-sub: --token: empty, too long or not one line\n", stderr);
                return -1;
            }
            o->token = optarg;
            break;
        case 'c':
            if (client_parse_ulong(optarg, 1000000000UL, &o->count) < 0 || o->count == 0) {
                fprintf(stderr, "herald-sub: --count: '%s' is not a number from 1\n", optarg);
                return -1;
            }
            break;
        case 'T':
            if (client_parse_ulong(optarg, 100000000UL, &o->timeout_s) < 0) {
                fprintf(stderr, "herald-sub: --timeout: '%s' is not a number of seconds\n", optarg);
                return -1;
            }
            break;
        case 'l':
            if (client_parse_ulong(optarg, SUB_LAST_MAX, &o->last) < 0) {
                fprintf(stderr, "herald-sub: --last: '%s' is not a number from 0 to %lu\n", optarg,
                        SUB_LAST_MAX);
                return -1;
            }
            break;
        case 's':
            if (parse_since(optarg, o) < 0)
                return -1;
            break;
        case 'q': o->is_quiet = 1; break;
        case 'h':
            print_help();
            *status = SUB_EXIT_OK;
            return -1;
        case 'V':
            printf("herald-sub %s\n", HERALD_VERSION);
            *status = SUB_EXIT_OK;
            return -1;
        default: client_bad_option(c, argv, SUB_SYNOPSIS); return -1;
        }
    }
    if (optind == argc) {
        fputs("herald-sub: no CHANNEL given\n", stderr);
        client_usage_error(SUB_SYNOPSIS);
        return -1;
    }
    o->channels = client_xmalloc(sizeof(*o->channels) * (size_t)(argc - optind));
    for (int i = optind; i < argc; i++) {
        json_t *name = json_string(argv[i]); /* NULL unless valid UTF-8 */
        int is_dup = 0;

        if (!*argv[i] || !name) {
            fputs("herald-sub: a CHANNEL is empty or not UTF-8\n", stderr);
            json_decref(name);
            return -1;
        }
        json_decref(name);
        for (int j = 0; j < o->nchannels; j++)
            is_dup |= !strcmp(o->channels[j], argv[i]);
        if (!is_dup)
            o->channels[o->nchannels++] = argv[i];
    }
    if (o->since_epoch && o->nchannels != 1) {
        fputs("herald-sub: --since takes one CHANNEL (a position is a channel's)\n", stderr);
        client_usage_error(SUB_SYNOPSIS);
        return -1;
    }
    return 0;
}

static void set_state(struct sub *s, enum sub_state st)
{
    if (s->state == st)
        return;
    /* lwsl_notice, not lwsl_info: lws compiles lwsl_info out when NDEBUG is defined */
    lwsl_notice("herald-sub: %s -> %s\n", state_names[s->state], state_names[st]);
    s->state = st;
}

/* The session is over with status: the loop ends after this turn. */
static void finish(struct sub *s, int status)
{
    s->exit_status = status;
    set_state(s, SUB_DONE);
}

/* Close the connection with code, then exit with status. The close frame goes out from the
 * writeable callback; the hub's answer ends the session (or SUB_CLOSE_GRACE_MS does). Before
 * the upgrade there is nothing to close: the session ends at once. */
static void begin_close(struct sub *s, int code, int status)
{
    if (s->state >= SUB_CLOSING)
        return;
    if (s->state == SUB_CONNECTING || !s->wsi) {
        finish(s, status);
        return;
    }
    s->close_code = code;
    s->exit_status = status;
    s->closing_since_ms = client_mono_ms();
    set_state(s, SUB_CLOSING);
    lws_callback_on_writable(s->wsi);
}

static int channel_index(const struct sub *s, const char *name)
{
    if (!name)
        return -1;
    for (int i = 0; i < s->opts->nchannels; i++)
        if (!strcmp(s->opts->channels[i], name))
            return i;
    return -1;
}

static int send_text(struct lws *wsi, const char *text)
{
    size_t len = strlen(text);
    unsigned char *buf = client_xmalloc(LWS_PRE + len);
    int n;

    memcpy(buf + LWS_PRE, text, len);
    n = lws_write(wsi, buf + LWS_PRE, len, LWS_WRITE_TEXT);
    free(buf);
    return n < (int)len ? -1 : 0;
}

/* Send the next queued subscribe. Returns 0, or -1 when the connection must drop. */
static int send_subscribe(struct sub *s, struct lws *wsi)
{
    const struct sub_opts *o = s->opts;
    const char *channel = o->channels[s->next_subscribe];
    json_t *msg = NULL;
    char *text = NULL;
    int rc = -1;

    msg = json_pack("{s:s, s:s}", "type", "subscribe", "channel", channel);
    if (msg && o->since_epoch)
        json_object_set_new(
            msg, "since",
            json_pack("{s:s, s:I}", "epoch", o->since_epoch, "seq", (json_int_t)o->since_seq));
    if (msg && o->last)
        json_object_set_new(msg, "last", json_integer((json_int_t)o->last));
    if (msg)
        json_object_set_new(msg, "ref", json_string(channel));
    text = msg ? json_dumps(msg, JSON_COMPACT) : NULL; /* names are UTF-8: parse_args checked */
    if (!text) {
        fputs("herald-sub: out of memory\n", stderr);
        goto fail;
    }
    if (send_text(wsi, text) < 0) {
        fputs("herald-sub: connection lost while subscribing\n", stderr);
        goto fail;
    }
    s->next_subscribe++;
    if (s->next_subscribe < s->opts->nchannels)
        lws_callback_on_writable(wsi);
    rc = 0;
fail:
    free(text);
    json_decref(msg);
    return rc;
}

static void on_welcome(struct sub *s)
{
    if (s->state != SUB_OPEN)
        return;
    set_state(s, SUB_SUBSCRIBING);
    lws_callback_on_writable(s->wsi);
}

/* Prints text (from the hub) to stderr, control characters as '?'. */
static void put_text(const char *text)
{
    client_put_clean(stderr, text, strlen(text));
}

/* A subscribed frame's epoch and seq into *p. Returns whether it had both. */
static int read_position(json_t *msg, struct sub_position *p)
{
    const char *epoch = json_string_value(json_object_get(msg, "epoch"));
    json_t *seq = json_object_get(msg, "seq");

    if (!epoch || !json_is_integer(seq) || json_integer_value(seq) < 0)
        return 0;
    free(p->epoch);
    p->epoch = client_xprintf("%s", epoch);
    p->seq = (unsigned long long)json_integer_value(seq);
    return 1;
}

/* A ref-less subscribed for a channel held already: its numbering restarted. */
static void on_reset(struct sub *s, int i, json_t *msg)
{
    struct sub_position *p = &s->pos[i];

    if (!read_position(msg, p))
        return;
    fprintf(stderr, "herald-sub: %s restarted its numbering at ", s->opts->channels[i]);
    put_text(p->epoch);
    fprintf(stderr, ":%llu: events may have been missed\n", p->seq);
    fflush(stderr);
}

static void on_subscribed(struct sub *s, json_t *msg)
{
    const struct sub_opts *o = s->opts;
    int i = channel_index(s, json_string_value(json_object_get(msg, "ref")));
    int has_ref = i >= 0, has_pos;
    json_t *recovered = json_object_get(msg, "recovered");

    if (i < 0)
        i = channel_index(s, json_string_value(json_object_get(msg, "channel")));
    if (i < 0)
        return;
    if (s->is_acked[i]) {
        if (!has_ref)
            on_reset(s, i, msg);
        return;
    }
    s->is_acked[i] = 1;
    s->nacked++;
    has_pos = read_position(msg, &s->pos[i]);
    if (o->since_epoch && json_is_true(recovered))
        s->pos[i].seq = o->since_seq; /* the replay moves it on */
    if (!o->is_quiet) {
        fprintf(stderr, "herald-sub: subscribed %s", o->channels[i]);
        if (has_pos) {
            fputs(" at ", stderr);
            put_text(s->pos[i].epoch);
            fprintf(stderr, ":%llu",
                    (unsigned long long)json_integer_value(json_object_get(msg, "seq")));
        }
        fputc('\n', stderr);
    }
    if (o->since_epoch) {
        int is_resumed = json_is_true(recovered);
        int is_same_epoch = has_pos && !strcmp(s->pos[i].epoch, o->since_epoch);

        if (!is_resumed || !o->is_quiet) {
            fprintf(stderr, "herald-sub: %s %s from ", o->channels[i],
                    is_resumed ? "resumed" : "not resumed");
            put_text(o->since_epoch);
            fprintf(stderr, ":%lu%s\n", o->since_seq,
                    is_resumed      ? ""
                    : is_same_epoch ? ": the hub no longer keeps those events; some were missed"
                                    : ": the channel's numbering restarted; events may have "
                                      "been missed");
        }
    }
    fflush(stderr);
    if (s->nacked == s->opts->nchannels && s->state == SUB_SUBSCRIBING) {
        set_state(s, SUB_READY);
        fputs("herald-sub: ready\n", stderr);
        fflush(stderr);
    }
}

static void on_error_frame(struct sub *s, json_t *msg)
{
    const char *code = json_string_value(json_object_get(msg, "code"));
    const char *text = json_string_value(json_object_get(msg, "message"));
    int i = channel_index(s, json_string_value(json_object_get(msg, "ref")));

    code = code ? code : "?";
    text = text ? text : "";
    fputs("herald-sub: error ", stderr);
    client_put_clean(stderr, code, strlen(code));
    fputs(": ", stderr);
    client_put_clean(stderr, text, strlen(text));
    fputc('\n', stderr);
    fflush(stderr);
    if (i >= 0 && !s->is_acked[i]) /* a subscription was refused */
        begin_close(s, LWS_CLOSE_STATUS_NORMAL, SUB_EXIT_REFUSED);
}

static void on_gap(struct sub *s, json_t *msg)
{
    int i = channel_index(s, json_string_value(json_object_get(msg, "channel")));
    json_t *from = json_object_get(msg, "from"), *to = json_object_get(msg, "to");

    if (i < 0 || !json_is_integer(from) || !json_is_integer(to))
        return;
    fprintf(stderr,
            "herald-sub: gap %s %" JSON_INTEGER_FORMAT "-%" JSON_INTEGER_FORMAT
            ": those events will not come\n",
            s->opts->channels[i], json_integer_value(from), json_integer_value(to));
    fflush(stderr);
    if (json_integer_value(to) > 0 && (unsigned long long)json_integer_value(to) > s->pos[i].seq)
        s->pos[i].seq = (unsigned long long)json_integer_value(to);
}

/* Moves the channel's position to the event's seq. */
static void track_event(struct sub *s, json_t *msg)
{
    int i = channel_index(s, json_string_value(json_object_get(msg, "channel")));
    json_t *seq = json_object_get(msg, "seq");

    if (i >= 0 && json_is_integer(seq) && json_integer_value(seq) > 0 &&
        (unsigned long long)json_integer_value(seq) > s->pos[i].seq)
        s->pos[i].seq = (unsigned long long)json_integer_value(seq);
}

/* Print one event frame, raw, as one line. */
static void on_event(struct sub *s, char *text, size_t len)
{
    if (s->opts->count && s->nevents >= s->opts->count)
        return;
    for (size_t i = 0; i < len; i++)
        if (text[i] == '\n' || text[i] == '\r')
            text[i] = ' ';
    errno = 0;
    if (fwrite(text, 1, len, stdout) != len || putchar('\n') == EOF || fflush(stdout) == EOF) {
        if (errno == EPIPE) { /* the reader has gone: a normal way to stop */
            begin_close(s, LWS_CLOSE_STATUS_NORMAL, SUB_EXIT_OK);
            return;
        }
        fprintf(stderr, "herald-sub: cannot write to stdout: %s\n", strerror(errno));
        begin_close(s, LWS_CLOSE_STATUS_NORMAL, SUB_EXIT_CONNECT);
        return;
    }
    s->nevents++;
    if (s->opts->count && s->nevents >= s->opts->count)
        begin_close(s, LWS_CLOSE_STATUS_NORMAL, SUB_EXIT_OK);
}

/* Dispatch one complete message. text is ours to modify until the next message. */
static void on_message(struct sub *s, char *text, size_t len)
{
    json_error_t jerr;
    json_t *msg = json_loadb(text, len, 0, &jerr);
    const char *type = json_string_value(json_object_get(msg, "type"));

    if (!type) {
        if (!s->opts->is_quiet)
            fputs("herald-sub: ignoring a frame that is not a typed JSON object\n", stderr);
    } else if (!strcmp(type, "event")) {
        if (!s->opts->count || s->nevents < s->opts->count)
            track_event(s, msg); /* before on_event: it may change text */
        on_event(s, text, len);
    } else if (!strcmp(type, "welcome")) {
        on_welcome(s);
    } else if (!strcmp(type, "subscribed")) {
        on_subscribed(s, msg);
    } else if (!strcmp(type, "error")) {
        on_error_frame(s, msg);
    } else if (!strcmp(type, "gap")) {
        on_gap(s, msg);
    } /* pong, unsubscribed and anything newer: nothing to do */
    json_decref(msg);
}

/* Accumulate a fragment; dispatch at the end of a message. Returns 0. */
static int on_receive(struct sub *s, struct lws *wsi, const void *in, size_t len)
{
    int is_final = lws_is_final_fragment(wsi);

    if (s->state >= SUB_CLOSING || s->is_rx_dropping) {
        if (is_final)
            s->is_rx_dropping = 0;
        return 0;
    }
    if (len > SUB_MAX_FRAME - s->rx_len) {
        fprintf(stderr, "herald-sub: the hub sent a message over %zu bytes\n", SUB_MAX_FRAME);
        s->rx_len = 0;
        s->is_rx_dropping = !is_final;
        begin_close(s, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, SUB_EXIT_CLOSED);
        return 0;
    }
    if (s->rx_len + len > s->rx_cap) {
        size_t cap = s->rx_cap ? s->rx_cap : 4096;

        while (cap < s->rx_len + len)
            cap *= 2;
        s->rx = client_xrealloc(s->rx, cap);
        s->rx_cap = cap;
    }
    memcpy(s->rx + s->rx_len, in, len);
    s->rx_len += len;
    if (!is_final)
        return 0;
    if (!lws_frame_is_binary(wsi)) /* the hub sends text only; ignore anything else */
        on_message(s, s->rx, s->rx_len);
    s->rx_len = 0;
    return 0;
}

/* Returns -1 to make lws send our close frame (or drop the connection), else 0. */
static int on_writeable(struct sub *s, struct lws *wsi)
{
    if (s->state == SUB_CLOSING) {
        lws_close_reason(wsi, (enum lws_close_status)s->close_code, NULL, 0);
        return -1;
    }
    if (s->state != SUB_SUBSCRIBING || s->next_subscribe >= s->opts->nchannels)
        return 0;
    if (send_subscribe(s, wsi) < 0) {
        s->exit_status = SUB_EXIT_CONNECT;
        s->closing_since_ms = client_mono_ms();
        set_state(s, SUB_CLOSING); /* on_closed keeps the status */
        return -1;
    }
    return 0;
}

/* in: 2 bytes of big-endian close code, then the reason; both optional. Returning 0 makes lws
 * echo the close. Beware: lws 4.1.6 (client-parser-ws.c) rewrites codes 1012-1015 and 1016-2999
 * to 1002 before this callback, so a hub's 1013 (slow consumer) arrives here as 1002, with its
 * reason intact. Fixed upstream in 4.2 (commit fb9abfdf0). */
static void on_peer_close(struct sub *s, const unsigned char *in, size_t len)
{
    size_t n;

    if (len < 2) {
        s->peer_code = LWS_CLOSE_STATUS_NO_STATUS;
        return;
    }
    s->peer_code = in[0] << 8 | in[1];
    n = len - 2 < sizeof(s->peer_reason) - 1 ? len - 2 : sizeof(s->peer_reason) - 1;
    memcpy(s->peer_reason, in + 2, n);
    s->peer_reason[n] = '\0';
}

static void on_closed(struct sub *s)
{
    s->wsi = NULL;
    if (s->state == SUB_DONE) /* the context is being destroyed */
        return;
    if (s->state == SUB_CLOSING) {
        finish(s, s->exit_status);
    } else if (s->peer_code == LWS_CLOSE_STATUS_NORMAL) {
        finish(s, SUB_EXIT_OK);
    } else if (s->peer_code >= 0) {
        fprintf(stderr, "herald-sub: closed by hub: %d", s->peer_code);
        if (*s->peer_reason) {
            fputc(' ', stderr);
            client_put_clean(stderr, s->peer_reason, strlen(s->peer_reason));
        }
        fputc('\n', stderr);
        finish(s, SUB_EXIT_CLOSED);
    } else {
        fputs("herald-sub: connection lost\n", stderr);
        finish(s, SUB_EXIT_CLOSED);
    }
}

/* in: lws's reason, not always terminated (len bytes) and sometimes NULL. */
static void on_connection_error(struct sub *s, struct lws *wsi, const char *in, size_t len)
{
    unsigned int http_status = lws_http_client_http_response(wsi); /* 0 before a response */

    s->wsi = NULL;
    if (s->state == SUB_DONE)
        return;
    fprintf(stderr, "herald-sub: cannot connect to %s: ", s->url.display);
    if (in)
        client_put_clean(stderr, in, strnlen(in, len ? len : 256));
    else
        fputs("connection failed", stderr);
    if (http_status)
        fprintf(stderr, " (HTTP %u)", http_status);
    fputc('\n', stderr);
    finish(s, SUB_EXIT_CONNECT);
}

/* Every wsi ends here, reported or not. lws 4.1.6 frees a client that times out waiting for the
 * upgrade response without CLIENT_CONNECTION_ERROR (close.c only reports LRS_WAITING_SERVER_REPLY
 * for the ws role, and the wsi is still h1 then): without this the loop would wait forever. */
static void on_wsi_destroy(struct sub *s, struct lws *wsi)
{
    if (wsi != s->wsi || s->state == SUB_DONE) /* already reported, or another wsi */
        return;
    if (s->state != SUB_CONNECTING) {
        on_closed(s);
        return;
    }
    s->wsi = NULL;
    if (client_mono_ms() - s->start_ms >= SUB_HANDSHAKE_SECS * 1000 - 250)
        fprintf(stderr, "herald-sub: cannot connect to %s: no upgrade response within %ds\n",
                s->url.display, SUB_HANDSHAKE_SECS);
    else
        fprintf(stderr, "herald-sub: cannot connect to %s: closed before the upgrade\n",
                s->url.display);
    finish(s, SUB_EXIT_CONNECT);
}

/* Append the Authorization header. in is a char ** cursor into a buffer with len bytes left.
 * Returns -1 (the handshake fails) if it does not fit. */
static int on_append_headers(struct sub *s, struct lws *wsi, void *in, size_t len)
{
    unsigned char **p = in, *end = *p + len;

    if (!s->auth)
        return 0;
    if (lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_AUTHORIZATION,
                                     (const unsigned char *)s->auth, (int)strlen(s->auth), p,
                                     end)) {
        fputs("herald-sub: the token does not fit in the handshake\n", stderr);
        return -1;
    }
    return 0;
}

static int sub_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                        size_t len)
{
    struct sub *s = lws_context_user(lws_get_context(wsi));

    (void)user;
    switch (reason) {
    case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER: return on_append_headers(s, wsi, in, len);
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR: on_connection_error(s, wsi, in, len); return 0;
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        if (s->state == SUB_CONNECTING)
            set_state(s, SUB_OPEN);
        return 0;
    case LWS_CALLBACK_CLIENT_RECEIVE: return on_receive(s, wsi, in, len);
    case LWS_CALLBACK_CLIENT_WRITEABLE: return on_writeable(s, wsi);
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE: on_peer_close(s, in, len); return 0;
    case LWS_CALLBACK_CLIENT_CLOSED: on_closed(s); return 0;
    case LWS_CALLBACK_WSI_DESTROY: on_wsi_destroy(s, wsi); return 0;
    default: return 0;
    }
}

static const struct lws_protocols protocols[] = {
    {SUB_PROTOCOL, sub_callback, 0, 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

/* The wake-up tick: it only keeps lws_service() returning; the loop does the checks. */
static void on_tick(lws_sorted_usec_list_t *sul)
{
    struct sub *s = lws_container_of(sul, struct sub, sul);

    lws_sul_schedule(s->ctx, 0, &s->sul, on_tick, SUB_TICK_US);
}

/* Signals, --timeout and the close grace period; called by the loop after every service turn. */
static void check_clock(struct sub *s)
{
    int64_t now = client_mono_ms();

    if (got_signal && !s->is_signalled) {
        s->is_signalled = 1;
        begin_close(s, LWS_CLOSE_STATUS_NORMAL, SUB_EXIT_OK);
    }
    if (got_signal > 1) /* a second signal: stop waiting for the hub */
        finish(s, SUB_EXIT_OK);
    if (s->opts->timeout_s && !s->is_timed_out && s->state < SUB_CLOSING &&
        now - s->start_ms >= (int64_t)s->opts->timeout_s * 1000) {
        s->is_timed_out = 1;
        fprintf(stderr, "herald-sub: timed out after %lus\n", s->opts->timeout_s);
        begin_close(s, LWS_CLOSE_STATUS_NORMAL, SUB_EXIT_TIMEOUT);
    }
    if (s->state == SUB_CLOSING && now - s->closing_since_ms >= SUB_CLOSE_GRACE_MS)
        finish(s, s->exit_status); /* the hub did not answer our close */
}

/* lws_client_connect_via_info() failed before any callback: say why as well as we can. */
static void report_connect_failure(const struct sub *s)
{
    struct addrinfo hints, *res = NULL;
    int rc;

    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    rc = getaddrinfo(s->url.host, NULL, &hints, &res);
    if (rc)
        fprintf(stderr, "herald-sub: cannot connect to %s: cannot resolve %s: %s\n", s->url.display,
                s->url.host, gai_strerror(rc));
    else
        fprintf(stderr, "herald-sub: cannot connect to %s: connection failed\n", s->url.display);
    if (res)
        freeaddrinfo(res);
}

static int sub_run(struct sub *s)
{
    struct lws_context_creation_info info;
    struct lws_client_connect_info ci;

    client_catch_signals(on_signal);

    memset(&info, 0, sizeof(info));
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = protocols;
    info.user = s;
    info.gid = -1;
    info.uid = -1;
    info.fd_limit_per_thread = 4;
    info.pt_serv_buf_size = SUB_SERV_BUF;
    info.timeout_secs = SUB_HANDSHAKE_SECS;
    if (s->url.is_tls)
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT; /* OpenSSL: system trust store */
    s->ctx = lws_create_context(&info); /* also ignores SIGPIPE, process-wide */
    if (!s->ctx) {
        fputs("herald-sub: cannot create the libwebsockets context\n", stderr);
        return SUB_EXIT_CONNECT;
    }
    s->start_ms = client_mono_ms();
    lws_sul_schedule(s->ctx, 0, &s->sul, on_tick, SUB_TICK_US);

    memset(&ci, 0, sizeof(ci));
    ci.context = s->ctx;
    ci.address = s->url.host;
    ci.port = s->url.port;
    ci.ssl_connection = s->url.is_tls ? LCCSCF_USE_SSL : 0;
    ci.path = s->url.path;
    ci.host = s->url.authority;
    ci.protocol = NULL; /* no Sec-WebSocket-Protocol header */
    ci.local_protocol_name = SUB_PROTOCOL;
    ci.pwsi = &s->wsi;
    if (!lws_client_connect_via_info(&ci) && s->state != SUB_DONE) {
        report_connect_failure(s);
        finish(s, SUB_EXIT_CONNECT);
    }

    while (s->state != SUB_DONE) {
        if (lws_service(s->ctx, 0) < 0) {
            fputs("herald-sub: event loop failed\n", stderr);
            finish(s, SUB_EXIT_CONNECT);
            break;
        }
        check_clock(s);
    }
    lws_sul_cancel(&s->sul);
    lws_context_destroy(s->ctx);
    s->ctx = NULL;
    return s->exit_status;
}

/* "herald-sub: position CHANNEL EPOCH:SEQ" for each channel whose epoch is known. */
static void print_positions(const struct sub *s)
{
    if (s->opts->is_quiet)
        return;
    for (int i = 0; i < s->opts->nchannels; i++) {
        if (!s->pos[i].epoch)
            continue;
        fprintf(stderr, "herald-sub: position %s ", s->opts->channels[i]);
        put_text(s->pos[i].epoch);
        fprintf(stderr, ":%llu\n", s->pos[i].seq);
    }
    fflush(stderr);
}

int main(int argc, char **argv)
{
    struct sub_opts opts;
    struct sub s;
    const char *err = NULL, *debug = getenv("HERALD_SUB_DEBUG");
    int status;

    client_set_name("herald-sub");
    memset(&s, 0, sizeof(s));
    if (parse_args(argc, argv, &opts, &status) < 0)
        goto done;
    if (url_parse(opts.url, &s.url, &err) < 0) {
        fprintf(stderr, "herald-sub: --url: %s\n", err);
        status = SUB_EXIT_USAGE;
        goto done;
    }
    /* lws logs its errors only (every outcome gets its own one-line message here); more when
     * HERALD_SUB_DEBUG is set */
    lws_set_log_level(debug && *debug ? LLL_ERR | LLL_WARN | LLL_NOTICE | LLL_INFO : LLL_ERR, NULL);

    s.opts = &opts;
    s.peer_code = -1;
    s.is_acked = client_xmalloc((size_t)opts.nchannels);
    memset(s.is_acked, 0, (size_t)opts.nchannels);
    s.pos = client_xmalloc(sizeof(*s.pos) * (size_t)opts.nchannels);
    memset(s.pos, 0, sizeof(*s.pos) * (size_t)opts.nchannels);
    if (opts.token)
        s.auth = client_xprintf("Bearer %s", opts.token);
    status = sub_run(&s);
    print_positions(&s);
done:
    free(s.rx);
    free(s.auth);
    free(s.is_acked);
    for (int i = 0; s.pos && i < opts.nchannels; i++)
        free(s.pos[i].epoch);
    free(s.pos);
    client_url_free(&s.url);
    free(opts.channels);
    free(opts.since_epoch);
    return status;
}

/* main.c -- herald: options, logging, signals, and the control loop.
 * Exit status: 0 after a drain (SIGTERM, SIGINT), 1 when start-up fails (a port in use),
 * 2 for a bad option value. */
#include "common/config.h"
#include "common/keyhash.h"
#include "common/log.h"
#include "control/hub.h"

#include <event2/event.h>
#include <event2/thread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

extern char **environ;

/* lws sizes its descriptor table from RLIMIT_NOFILE, and Debian's build (lws_config.h defines
 * _DEBUG) walks the whole table twice on every connection close: at LimitNOFILE=1048576 a
 * close costs milliseconds and a drain of many clients takes minutes. So the hub sets its own
 * soft limit from what it needs: --max-connections plus room for everything else, or 65,536
 * without a limit (raise it with --max-connections), never above the hard limit. */
static void size_descriptor_table(const struct config *cfg)
{
    struct rlimit rl;
    rlim_t want = cfg->max_connections ? (rlim_t)cfg->max_connections + 1024 : 65536;

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return;
    if (want > rl.rlim_max)
        want = rl.rlim_max;
    if (want != rl.rlim_cur) {
        rl.rlim_cur = want;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            log_error_errno("main", "setrlimit(RLIMIT_NOFILE, %llu)", (unsigned long long)want);
    }
    log_info("main", "descriptor table: %llu (hard limit %llu)", (unsigned long long)want,
             (unsigned long long)rl.rlim_max);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct hub *h = arg;

    (void)what;
    if (sig == SIGHUP) {
        hub_reload(h);
        return;
    }
    log_info("main", "%s: shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
    hub_drain(h);
}

int main(int argc, char **argv)
{
    struct config cfg;
    struct hub hub;
    struct event_base *base = NULL;
    struct event *sigs[3] = {NULL, NULL, NULL};
    char err[512];
    int rc = 1;

    switch (config_load(&cfg, argc, argv, environ, stdout, err, sizeof(err))) {
    case CONFIG_EXIT: config_free(&cfg); return 0;
    case CONFIG_ERROR:
        fprintf(stderr, "herald: %s\n", err);
        config_free(&cfg);
        return 2;
    case CONFIG_OK: break;
    }
    if (config_resolve(&cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "herald: %s\n", err);
        config_free(&cfg);
        return 2;
    }
    log_setup(cfg.log_level, cfg.log_format, cfg.instance_id);
    if (keyhash_init() < 0) {
        log_error("main", "cannot initialise libsodium (the keyed hash of the hub's tables)");
        config_free(&cfg);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    size_descriptor_table(&cfg);

    if (evthread_use_pthreads() < 0 || !(base = event_base_new())) {
        log_error("main", "cannot create the event loop");
        goto out;
    }
    if (hub_start(&hub, &cfg, base, err, sizeof(err)) < 0) {
        log_error("main", "%s", err);
        fprintf(stderr, "herald: %s\n", err);
        goto out;
    }
    sigs[0] = evsignal_new(base, SIGTERM, on_signal, &hub);
    sigs[1] = evsignal_new(base, SIGINT, on_signal, &hub);
    sigs[2] = evsignal_new(base, SIGHUP, on_signal, &hub); /* re-read --tls-cert, --tls-key */
    for (int i = 0; i < 3; i++)
        event_add(sigs[i], NULL);

    event_base_dispatch(base);
    hub_stop(&hub);
    log_info("main", "stopped");
    rc = 0;
out:
    for (int i = 0; i < 3; i++)
        if (sigs[i])
            event_free(sigs[i]);
    if (base)
        event_base_free(base);
    config_free(&cfg);
    libevent_global_shutdown();
    return rc;
}

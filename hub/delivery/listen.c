/* listen.c -- a plane's listen socket and its accept loop.
 * Debian's lws 4.1.6 has LWS_MAX_SMP 1, so it never sets SO_REUSEPORT on a listen socket of its
 * own (server.c does only for count_threads > 1). Each plane therefore opens its own socket on
 * --listen with SO_REUSEPORT (the kernel spreads new connections over the planes), watches it
 * with a libev watcher on the plane's loop, accepts, and adopts each connection into its lws
 * vhost, where lws serves HTTP and the upgrade. The socket never passes through lws itself, so
 * no protocol name a client sends can reach it (an lws protocol that adopted it could be
 * selected by Sec-WebSocket-Protocol). */
#include "plane_priv.h"

#include "common/config.h"
#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define ACCEPT_BATCH 64 /* connections taken per wake of the listen socket */
#define LISTEN_BACKLOG 4096

int listen_open(struct plane *p, char *err, size_t errlen)
{
    const struct config_addr *addr = &p->cfg->listen;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICHOST};
    struct addrinfo *res = NULL;
    char port[8];
    int fd = -1, one = 1, rc;

    snprintf(port, sizeof(port), "%u", addr->port);
    rc = getaddrinfo(addr->host, port, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "--listen: '%s' is not a numeric address: %s", addr->host,
                 gai_strerror(rc));
        return -1;
    }
    fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
        bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, LISTEN_BACKLOG) < 0) {
        snprintf(err, errlen, "--listen: cannot listen on %s:%u: %s", addr->host, addr->port,
                 strerror(errno));
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    p->listen_fd = fd;
    p->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    return fd < 0 ? -1 : 0;
}

/* Out of descriptors: accept with the spare one and close at once, so the backlog does not
 * keep the listen socket readable forever (a busy loop). */
static void shed_one(struct plane *p)
{
    int fd;

    if (p->spare_fd < 0)
        return;
    close(p->spare_fd);
    fd = accept(p->listen_fd, NULL, NULL);
    if (fd >= 0)
        close(fd);
    p->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static void on_acceptable(struct ev_loop *loop, ev_io *w, int revents)
{
    struct plane *p = w->data;
    int one = 1;

    (void)loop;
    (void)revents;
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        int fd = accept4(p->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE) {
                log_warn("ws", "plane %u: out of file descriptors: refusing a connection",
                         p->index);
                shed_one(p);
            } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
                       errno != ECONNABORTED) {
                log_error_errno("ws", "plane %u: accept", p->index);
            }
            break;
        }
        if (p->is_draining) {
            close(fd);
            continue;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        /* with TLS, adoption runs the handshake's first step: a client whose first bytes are
         * not a TLS hello it accepts (plain HTTP, an old protocol) fails here, and lws closes
         * fd. Internet noise, not worth a warning each. */
        if (!lws_adopt_socket_vhost(p->vh, fd)) {
            if (p->tls)
                log_debug("ws", "plane %u: a TLS handshake failed at its first step", p->index);
            else
                log_warn("ws", "plane %u: could not adopt a connection", p->index);
        }
    }
}

void listen_start(struct plane *p)
{
    ev_io_init(&p->accept_watcher, on_acceptable, p->listen_fd, EV_READ);
    p->accept_watcher.data = p;
    ev_io_start(p->loop, &p->accept_watcher);
}

void listen_close(struct plane *p)
{
    if (p->listen_fd >= 0) {
        if (p->loop)
            ev_io_stop(p->loop, &p->accept_watcher);
        close(p->listen_fd);
        p->listen_fd = -1;
    }
    if (p->spare_fd >= 0) {
        close(p->spare_fd);
        p->spare_fd = -1;
    }
}

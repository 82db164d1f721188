/* Measurement aid, not part of the daemon: an LD_PRELOAD shim that turns TCP_NODELAY on for every
 * socket a relay process accepts, and keeps it on when the relay itself turns it off (hyper, as
 * nostr-rs-relay 0.8.12 uses it, sets TCP_NODELAY to 0 right after accept). It shows how much of
 * a round trip through a relay is the relay's Nagle stall. See docs/performance.md.
 *
 *   gcc -shared -fPIC -O2 -o nodelay.so nodelay.c -ldl
 *   LD_PRELOAD=$PWD/nodelay.so nostr-rs-relay --config config.toml
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

static void nodelay(int fd) {
    if (fd >= 0) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
}

int accept(int s, struct sockaddr *a, socklen_t *l) {
    static int (*real)(int, struct sockaddr *, socklen_t *);
    if (!real) real = dlsym(RTLD_NEXT, "accept");
    int fd = real(s, a, l);
    nodelay(fd);
    return fd;
}

int accept4(int s, struct sockaddr *a, socklen_t *l, int flags) {
    static int (*real)(int, struct sockaddr *, socklen_t *, int);
    if (!real) real = dlsym(RTLD_NEXT, "accept4");
    int fd = real(s, a, l, flags);
    nodelay(fd);
    return fd;
}

int setsockopt(int fd, int level, int name, const void *v, socklen_t len) {
    static int (*real)(int, int, int, const void *, socklen_t);
    if (!real) real = dlsym(RTLD_NEXT, "setsockopt");
    if (level == IPPROTO_TCP && name == TCP_NODELAY) {
        int one = 1;
        return real(fd, level, name, &one, sizeof one);
    }
    return real(fd, level, name, v, len);
}

/* The libevent peer of the echo benchmark: evconnlistener + bufferevent, as libevent's users write it.
 *
 * Built and run by benches/run.sh:
 *   cc -O2 -o target/release/libevent_echo benches/libevent_echo.c -levent
 *   target/release/libevent_echo --addr 127.0.0.1:7100
 * The read callback moves the whole input buffer to the output buffer (no copy); the event
 * callback frees the connection on EOF or error. TCP_NODELAY on every accepted socket. */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

static void read_cb(struct bufferevent *bev, void *ctx) {
    (void)ctx;
    evbuffer_add_buffer(bufferevent_get_output(bev), bufferevent_get_input(bev));
}

static void event_cb(struct bufferevent *bev, short what, void *ctx) {
    (void)ctx;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        bufferevent_free(bev);
}

static void accept_cb(struct evconnlistener *listener, evutil_socket_t fd, struct sockaddr *peer,
                      int peer_len, void *ctx) {
    (void)peer;
    (void)peer_len;
    (void)ctx;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct event_base *base = evconnlistener_get_base(listener);
    struct bufferevent *bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        evutil_closesocket(fd);
        return;
    }
    bufferevent_setcb(bev, read_cb, NULL, event_cb, NULL);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
}

static void error_cb(struct evconnlistener *listener, void *ctx) {
    (void)listener;
    (void)ctx;
    /* EMFILE and friends: report and keep listening. */
    perror("accept");
}

int main(int argc, char **argv) {
    const char *addr = "127.0.0.1:7100";
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], "--addr") == 0)
            addr = argv[++i];
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (evutil_parse_sockaddr_port(addr, (struct sockaddr *)&ss, &len) != 0) {
        fprintf(stderr, "libevent_echo: bad --addr %s\n", addr);
        return 2;
    }
    struct event_base *base = event_base_new();
    if (!base) {
        fprintf(stderr, "libevent_echo: event_base_new failed\n");
        return 1;
    }
    struct evconnlistener *listener =
        evconnlistener_new_bind(base, accept_cb, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 1024,
                                (struct sockaddr *)&ss, len);
    if (!listener) {
        perror("libevent_echo: bind");
        return 1;
    }
    evconnlistener_set_error_cb(listener, error_cb);
    event_base_dispatch(base);
    evconnlistener_free(listener);
    event_base_free(base);
    return 0;
}

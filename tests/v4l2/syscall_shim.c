/* Preload shim for the V4L2 end-to-end test (built by tests/v4l2/e2e.sh).
 *
 * PipeWire's V4L2 compatibility layer (libpw-v4l2.so) interposes ioctl(), but the `v4l`
 * crate issues its ioctls as syscall(SYS_ioctl, ...), which the layer never sees. This shim
 * sends those through ioctl() so that the layer answers them; every other syscall goes to
 * libc unchanged.
 *
 * The layer may also report a buffer ready (POLLIN) before one is: a non-blocking DQBUF then
 * fails with EAGAIN. usq handles that itself (waits and retries), so the shim does not hide
 * it unless USQ_SHIM_DQBUF_WAIT_MS is set.
 *
 * Source-change events (USQ_SHIM_SOURCE_CHANGE=FILE): the layer sends no V4L2 events, so a
 * driver that can tell its source changed (an HDMI bridge) is played here: the shim accepts
 * the subscription to V4L2_EVENT_SOURCE_CHANGE, and once FILE exists it raises POLLPRI on the
 * subscribed descriptor and answers VIDIOC_DQEVENT with one resolution change, deleting FILE
 * (one event per file). Everything else still goes to the layer. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <linux/videodev2.h>

typedef long (*syscall_t)(long, ...);
typedef int (*poll_t)(struct pollfd *, nfds_t, int);

/* The descriptor subscribed to source-change events, or -1. */
static int subscribed_fd = -1;
static unsigned int event_sequence;

static const char *source_change_file(void)
{
    const char *s = getenv("USQ_SHIM_SOURCE_CHANGE");
    return s && *s ? s : NULL;
}

static int source_change_due(int fd)
{
    const char *file = source_change_file();
    return file && fd == subscribed_fd && access(file, F_OK) == 0;
}

/* The event ioctls, when the shim plays the driver's events: 1 when answered (rc set). */
static int event_ioctl(int fd, unsigned long request, void *arg, int *rc)
{
    if (!source_change_file())
        return 0;
    if ((unsigned int)request == (unsigned int)VIDIOC_SUBSCRIBE_EVENT) {
        const struct v4l2_event_subscription *sub = arg;
        if (sub->type != V4L2_EVENT_SOURCE_CHANGE)
            return 0;
        subscribed_fd = fd;
        fprintf(stderr, "usq-shim: source-change events subscribed on fd %d\n", fd);
        *rc = 0;
        return 1;
    }
    if ((unsigned int)request == (unsigned int)VIDIOC_DQEVENT && fd == subscribed_fd) {
        if (!source_change_due(fd)) {
            errno = ENOENT;
            *rc = -1;
            return 1;
        }
        unlink(source_change_file());
        struct v4l2_event *ev = arg;
        memset(ev, 0, sizeof *ev);
        ev->type = V4L2_EVENT_SOURCE_CHANGE;
        ev->u.src_change.changes = V4L2_EVENT_SRC_CH_RESOLUTION;
        ev->sequence = event_sequence++;
        clock_gettime(CLOCK_MONOTONIC, &ev->timestamp);
        fprintf(stderr, "usq-shim: source-change event sent on fd %d\n", fd);
        *rc = 0;
        return 1;
    }
    return 0;
}

/* POLLPRI on the subscribed descriptor while an event is due; otherwise the real poll. */
int poll(struct pollfd *fds, nfds_t n, int timeout)
{
    static poll_t libc_poll;
    if (!libc_poll && !(libc_poll = (poll_t)dlsym(RTLD_NEXT, "poll"))) {
        errno = ENOSYS;
        return -1;
    }
    int due = 0;
    for (nfds_t i = 0; i < n; i++)
        if ((fds[i].events & POLLPRI) && source_change_due(fds[i].fd))
            due = 1;
    if (!due)
        return libc_poll(fds, n, timeout);
    int ready = 0;
    for (nfds_t i = 0; i < n; i++) {
        fds[i].revents = (fds[i].events & POLLPRI) && source_change_due(fds[i].fd) ? POLLPRI : 0;
        ready += fds[i].revents != 0;
    }
    return ready;
}

static int dqbuf_wait_ms(void)
{
    const char *s = getenv("USQ_SHIM_DQBUF_WAIT_MS");
    return s ? atoi(s) : 0;
}

static long forward_ioctl(int fd, unsigned long request, void *arg)
{
    int rc;
    if (event_ioctl(fd, request, arg, &rc))
        return rc;
    rc = ioctl(fd, request, arg);
    int wait_ms = dqbuf_wait_ms();
    if (rc < 0 && errno == EAGAIN && (unsigned int)request == (unsigned int)VIDIOC_DQBUF && wait_ms > 0) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (poll(&p, 1, wait_ms) > 0)
            rc = ioctl(fd, request, arg);
    }
    return rc;
}

long syscall(long number, ...)
{
    static syscall_t libc_syscall;
    long a[6];
    va_list ap;
    va_start(ap, number);
    for (int i = 0; i < 6; i++)
        a[i] = va_arg(ap, long);
    va_end(ap);

    if (number == SYS_ioctl)
        return forward_ioctl((int)a[0], (unsigned long)a[1], (void *)a[2]);
    if (!libc_syscall && !(libc_syscall = (syscall_t)dlsym(RTLD_NEXT, "syscall"))) {
        errno = ENOSYS;
        return -1;
    }
    return libc_syscall(number, a[0], a[1], a[2], a[3], a[4], a[5]);
}

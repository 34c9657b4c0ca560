/* Preload shim for the V4L2 end-to-end test (built by tests/v4l2/e2e.sh).
 *
 * PipeWire's V4L2 compatibility layer (libpw-v4l2.so) interposes ioctl(), but the `v4l`
 * crate issues its ioctls as syscall(SYS_ioctl, ...), which the layer never sees. This shim
 * sends those through ioctl() so that the layer answers them; every other syscall goes to
 * libc unchanged.
 *
 * The layer may also report a buffer ready (POLLIN) before one is: a non-blocking DQBUF then
 * fails with EAGAIN. usq handles that itself (waits and retries), so the shim does not hide
 * it unless USQ_SHIM_DQBUF_WAIT_MS is set. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <linux/videodev2.h>

typedef long (*syscall_t)(long, ...);

static int dqbuf_wait_ms(void)
{
    const char *s = getenv("USQ_SHIM_DQBUF_WAIT_MS");
    return s ? atoi(s) : 0;
}

static long forward_ioctl(int fd, unsigned long request, void *arg)
{
    int rc = ioctl(fd, request, arg);
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

/* Calls every function libhuptime.so interposes, through the symbol (and symbol version) this
 * libc exports for it, so that LD_DEBUG=bindings shows where each call was bound. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <unistd.h>

/* What fortified builds call instead of poll(). */
int __poll_chk(struct pollfd *fds, nfds_t nfds, int timeout, size_t fdslen);

static void handler(int sig) { (void)sig; }

int main(void) {
    int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bind(s, (struct sockaddr *)&addr, sizeof addr);
    listen(s, 8);
    accept(s, NULL, NULL);
    accept4(s, NULL, NULL, SOCK_CLOEXEC);

    int d = dup(s);
    dup2(d, d + 1);
    dup3(d, d + 2, O_CLOEXEC);
    int f = fcntl(d, F_DUPFD_CLOEXEC, 100);
    close(f);
    f = fcntl64(d, F_DUPFD_CLOEXEC, 100);
    close(f);
    close_range(d + 1, d + 2, 0);
    syscall(SYS_close, d);

    int u = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(9), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    sendto(u, "x", 1, 0, (struct sockaddr *)&to, sizeof to);
    struct iovec iov = {.iov_base = "x", .iov_len = 1};
    struct msghdr msg = {.msg_name = &to, .msg_namelen = sizeof to, .msg_iov = &iov, .msg_iovlen = 1};
    sendmsg(u, &msg, 0);
    struct mmsghdr mmsg = {.msg_hdr = msg};
    sendmmsg(u, &mmsg, 1, 0);
    close(u);

    int ep = epoll_create(1);
    int ep1 = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = s};
    epoll_ctl(ep1, EPOLL_CTL_ADD, s, &ev);
    struct pollfd p = {.fd = s, .events = POLLIN};
    poll(&p, 1, 0);
    __poll_chk(&p, 1, 0, sizeof p);
    struct timespec zero = {0, 0};
    ppoll(&p, 1, &zero, NULL);
    fd_set r;
    FD_ZERO(&r);
    FD_SET(s, &r);
    struct timeval tv = {0, 0};
    select(s + 1, &r, NULL, NULL, &tv);
    pselect(s + 1, &r, NULL, NULL, &zero, NULL);
    close(ep);
    close(ep1);

    struct sigaction sa = {.sa_handler = handler};
    sigaction(SIGUSR1, &sa, NULL);
    signal(SIGUSR2, handler);

    unlink("/nonexistent/huptime-bindings-test");
    unlinkat(AT_FDCWD, "/nonexistent/huptime-bindings-test", 0);

    pid_t child = fork();
    if (child == 0) {
        setsid();
        _exit(0);
    }
    waitpid(child, NULL, 0);
    closefrom(s + 1);
    close(s);
    exit(0);
}

/* wisp-shell-worker: a warm worker (api/worker_protocol.md) that runs a shell command per
 * request.
 *
 *   wisp-shell-worker CMD   each request's payload is CMD's stdin (sh -c CMD)
 *   wisp-shell-worker       each request's payload is itself the command (sh -c PAYLOAD)
 *
 * The response is the command's stdout; its status byte is the exit code (128+N for signal
 * N, capped at 255). The command's stderr goes to the worker's stderr, which the agent
 * captures per call. Static, no libc beyond POSIX: suits any rootfs. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int read_full(int fd, void *buf, size_t n) {
  char *p = buf;
  while (n > 0) {
    ssize_t r = read(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    p += r;
    n -= (size_t)r;
  }
  return 0;
}

static int write_full(int fd, const void *buf, size_t n) {
  const char *p = buf;
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Runs `sh -c cmd` with `input` on stdin; collects stdout into *out. Returns the status byte. */
static uint8_t run(const char *cmd, const char *input, size_t input_len, char **out,
                   size_t *out_len) {
  int in_pipe[2], out_pipe[2];
  *out = NULL;
  *out_len = 0;
  if (pipe2(in_pipe, O_CLOEXEC) < 0 || pipe2(out_pipe, O_CLOEXEC) < 0) return 255;
  pid_t pid = fork();
  if (pid < 0) return 255;
  if (pid == 0) {
    dup2(in_pipe[0], 0);
    dup2(out_pipe[1], 1);
    execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
    _exit(127);
  }
  close(in_pipe[0]);
  close(out_pipe[1]);
  /* Feed stdin from a helper so a command that writes a lot before reading cannot deadlock. */
  pid_t feeder = fork();
  if (feeder == 0) {
    close(out_pipe[0]);
    write_full(in_pipe[1], input, input_len);
    _exit(0);
  }
  close(in_pipe[1]);
  size_t cap = 65536;
  char *buf = malloc(cap);
  for (;;) {
    if (*out_len == cap) {
      cap *= 2;
      buf = realloc(buf, cap);
    }
    ssize_t r = read(out_pipe[0], buf + *out_len, cap - *out_len);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    *out_len += (size_t)r;
  }
  close(out_pipe[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (feeder > 0) {
    kill(feeder, SIGKILL); /* the command may not have read all of its stdin */
    waitpid(feeder, NULL, 0);
  }
  *out = buf;
  if (WIFEXITED(status)) return (uint8_t)WEXITSTATUS(status);
  int code = 128 + WTERMSIG(status);
  return (uint8_t)(code > 255 ? 255 : code);
}

int main(int argc, char **argv) {
  const char *fixed = argc > 1 ? argv[1] : NULL;
  signal(SIGPIPE, SIG_IGN);
  for (;;) {
    uint8_t hdr[4];
    if (read_full(0, hdr, 4) < 0) return 0; /* the agent closed stdin: done */
    uint32_t len = hdr[0] | hdr[1] << 8 | hdr[2] << 16 | (uint32_t)hdr[3] << 24;
    if (len == 0xffffffffu) continue; /* the "resumed" notice: a shell keeps no generator */
    char *payload = malloc((size_t)len + 1);
    if (payload == NULL || read_full(0, payload, len) < 0) return 1;
    payload[len] = '\0';
    char *out;
    size_t out_len;
    uint8_t st = fixed ? run(fixed, payload, len, &out, &out_len)
                       : run(payload, "", 0, &out, &out_len);
    uint8_t resp[5] = {(uint8_t)out_len, (uint8_t)(out_len >> 8), (uint8_t)(out_len >> 16),
                       (uint8_t)(out_len >> 24), st};
    if (write_full(1, resp, 5) < 0 || write_full(1, out, out_len) < 0) return 1;
    free(out);
    free(payload);
  }
}

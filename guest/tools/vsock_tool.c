// vsock_tool: the guest end of wisp's vsock integration tests. Static, no dependencies beyond
// libc (gcc -static -O2; see build.sh). One line of output per connection, "key=value" words,
// so a test can grep the console.
//
//   vsock_tool listen [-n COUNT] PORT MODE [N]   accept on PORT, each connection in a child:
//       echo        write back everything read, until EOF       -> "echo bytes=N"
//       sink        read until EOF, answer "N SHA256\n"           -> "sink bytes=N sha256=H"
//       source N    write N pattern bytes, then close             -> "source bytes=N sha256=H"
//       abort N     write N pattern bytes, close without reading  (mid-stream close)
//       discard     read until EOF without hashing, answer "N\n"   (throughput benchmarks)
//     -n COUNT: exit (status 0 if all went well) after COUNT connections.
//   vsock_tool send-to-host PORT NBYTES [CONNS]   connect to host CID 2, send NBYTES, half-close,
//       read the reply until EOF                  -> "send bytes=N sha256=H reply=... match=0|1"
//       (match=1 when the host answered "N H", as `vsock_host.py listen ... sink` does)
//   vsock_tool recv-from-host PORT [CONNS]        connect, read until EOF
//                                                 -> "recv bytes=N sha256=H"
//   CONNS runs that many connections at once (one process each). Exit status 0 when every
//   connection succeeded.
#include <errno.h>
#include <linux/vm_sockets.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

// ---- SHA-256 (FIPS 180-4) -------------------------------------------------------------------

typedef struct {
  uint32_t h[8];
  uint64_t len;
  uint8_t buf[64];
  size_t used;
} Sha256;

static const uint32_t kK[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
    0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
    0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
    0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
    0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
    0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
    0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha256_block(Sha256* s, const uint8_t* p) {
  uint32_t w[64];
  for (int i = 0; i < 16; ++i)
    w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 |
           p[4 * i + 3];
  for (int i = 16; i < 64; ++i) {
    uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
    uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
    w[i] = w[i - 16] + s0 + w[i - 7] + s1;
  }
  uint32_t a = s->h[0], b = s->h[1], c = s->h[2], d = s->h[3], e = s->h[4], f = s->h[5],
           g = s->h[6], h = s->h[7];
  for (int i = 0; i < 64; ++i) {
    uint32_t t1 = h + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) + kK[i] + w[i];
    uint32_t t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
    h = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
  }
  s->h[0] += a, s->h[1] += b, s->h[2] += c, s->h[3] += d;
  s->h[4] += e, s->h[5] += f, s->h[6] += g, s->h[7] += h;
}

static void sha256_init(Sha256* s) {
  static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  memcpy(s->h, h0, sizeof(h0));
  s->len = 0;
  s->used = 0;
}

static void sha256_update(Sha256* s, const uint8_t* p, size_t n) {
  s->len += n;
  while (n > 0) {
    if (s->used == 0 && n >= 64) {
      sha256_block(s, p);
      p += 64, n -= 64;
      continue;
    }
    size_t take = 64 - s->used < n ? 64 - s->used : n;
    memcpy(s->buf + s->used, p, take);
    s->used += take, p += take, n -= take;
    if (s->used == 64) sha256_block(s, s->buf), s->used = 0;
  }
}

static void sha256_hex(Sha256* s, char out[65]) {
  uint64_t bits = s->len * 8;
  uint8_t pad = 0x80, zero = 0, len[8];
  sha256_update(s, &pad, 1);
  while (s->used != 56) sha256_update(s, &zero, 1);
  for (int i = 0; i < 8; ++i) len[i] = (uint8_t)(bits >> (56 - 8 * i));
  sha256_update(s, len, 8);
  for (int i = 0; i < 8; ++i) sprintf(out + 8 * i, "%08x", s->h[i]);
}

// ---- I/O helpers ----------------------------------------------------------------------------

// A deterministic byte pattern (xorshift32), so both ends could regenerate it.
static void pattern(uint8_t* p, size_t n, uint32_t* state) {
  for (size_t i = 0; i < n; ++i) {
    uint32_t x = *state;
    x ^= x << 13, x ^= x >> 17, x ^= x << 5;
    *state = x;
    p[i] = (uint8_t)x;
  }
}

static int write_all(int fd, const uint8_t* p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    p += w, n -= (size_t)w;
  }
  return 0;
}

static uint8_t g_buf[256 * 1024];

// Writes `n` pattern bytes; fills `hex` with their SHA-256. -1 on a write error.
static int send_pattern(int fd, uint64_t n, char hex[65]) {
  Sha256 s;
  sha256_init(&s);
  uint32_t state = 0x9e3779b9;
  while (n > 0) {
    size_t chunk = n < sizeof(g_buf) ? (size_t)n : sizeof(g_buf);
    pattern(g_buf, chunk, &state);
    sha256_update(&s, g_buf, chunk);
    if (write_all(fd, g_buf, chunk) != 0) return -1;
    n -= chunk;
  }
  sha256_hex(&s, hex);
  return 0;
}

// Reads until EOF; returns the byte count (or -1) and the SHA-256 in `hex`. When `echo_fd`
// >= 0, writes everything read back to it.
static int64_t recv_all(int fd, char hex[65], int echo_fd) {
  Sha256 s;
  sha256_init(&s);
  int64_t total = 0;
  for (;;) {
    ssize_t r = read(fd, g_buf, sizeof(g_buf));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return -1;
    if (r == 0) break;
    sha256_update(&s, g_buf, (size_t)r);
    if (echo_fd >= 0 && write_all(echo_fd, g_buf, (size_t)r) != 0) return -1;
    total += r;
  }
  sha256_hex(&s, hex);
  return total;
}

static int vsock_socket(void) {
  int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) perror("vsock_tool: socket(AF_VSOCK)");
  return fd;
}

// ---- Subcommands ----------------------------------------------------------------------------

static int serve(int fd, const char* mode, uint64_t n) {
  char hex[65];
  if (!strcmp(mode, "echo")) {
    int64_t got = recv_all(fd, hex, fd);
    printf("echo bytes=%lld\n", (long long)got);
    return got < 0;
  }
  if (!strcmp(mode, "sink")) {
    int64_t got = recv_all(fd, hex, -1);
    if (got < 0) {
      printf("sink error=%s\n", strerror(errno));
      return 1;
    }
    char reply[100];
    int len = snprintf(reply, sizeof(reply), "%lld %s\n", (long long)got, hex);
    write_all(fd, (const uint8_t*)reply, (size_t)len);
    printf("sink bytes=%lld sha256=%s\n", (long long)got, hex);
    return 0;
  }
  if (!strcmp(mode, "discard")) {  // for throughput benchmarks: no hashing in the way
    int64_t total = 0;
    for (;;) {
      ssize_t r = read(fd, g_buf, sizeof(g_buf));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) break;
      total += r;
    }
    char reply[32];
    int len = snprintf(reply, sizeof(reply), "%lld\n", (long long)total);
    write_all(fd, (const uint8_t*)reply, (size_t)len);
    return 0;
  }
  if (!strcmp(mode, "source") || !strcmp(mode, "abort")) {
    int rc = send_pattern(fd, n, hex);
    printf("%s bytes=%llu sha256=%s%s\n", mode, (unsigned long long)n, hex,
           rc ? " error=write" : "");
    return rc != 0;
  }
  fprintf(stderr, "vsock_tool: unknown mode %s\n", mode);
  return 2;
}

static int cmd_listen(int argc, char** argv) {
  long count = -1;
  if (argc >= 2 && !strcmp(argv[0], "-n")) {
    count = atol(argv[1]);
    argc -= 2, argv += 2;
  }
  if (argc < 2) return 2;
  unsigned port = (unsigned)strtoul(argv[0], NULL, 10);
  const char* mode = argv[1];
  uint64_t n = argc > 2 ? strtoull(argv[2], NULL, 10) : 0;
  int lfd = vsock_socket();
  if (lfd < 0) return 1;
  struct sockaddr_vm addr = {.svm_family = AF_VSOCK, .svm_port = port, .svm_cid = VMADDR_CID_ANY};
  if (bind(lfd, (struct sockaddr*)&addr, sizeof(addr)) != 0 || listen(lfd, 128) != 0) {
    perror("vsock_tool: bind/listen");
    return 1;
  }
  printf("listening port=%u mode=%s\n", port, mode);
  fflush(stdout);
  int failures = 0;
  for (long done = 0; count < 0 || done < count; ++done) {
    int fd = accept(lfd, NULL, NULL);
    if (fd < 0) {
      if (errno == EINTR) continue;
      perror("vsock_tool: accept");
      return 1;
    }
    pid_t pid = fork();
    if (pid == 0) {
      close(lfd);
      int rc = serve(fd, mode, n);
      fflush(stdout);
      _exit(rc);
    }
    close(fd);
    // Reap finished children without blocking (connections run concurrently).
    int status;
    while (waitpid(-1, &status, WNOHANG) > 0) failures += !WIFEXITED(status) || WEXITSTATUS(status);
  }
  int status;
  while (wait(&status) > 0) failures += !WIFEXITED(status) || WEXITSTATUS(status);
  return failures != 0;
}

static int connect_host(unsigned port) {
  int fd = vsock_socket();
  if (fd < 0) return -1;
  struct sockaddr_vm addr = {.svm_family = AF_VSOCK, .svm_port = port, .svm_cid = VMADDR_CID_HOST};
  if (connect(fd, (struct sockaddr*)&addr, sizeof(addr)) != 0) {
    printf("connect port=%u error=%s\n", port, strerror(errno));
    close(fd);
    return -1;
  }
  return fd;
}

static int one_send(unsigned port, uint64_t n) {
  int fd = connect_host(port);
  if (fd < 0) return 1;
  char hex[65], reply_hex[65];
  if (send_pattern(fd, n, hex) != 0) {
    printf("send bytes=%llu error=%s\n", (unsigned long long)n, strerror(errno));
    return 1;
  }
  shutdown(fd, SHUT_WR);
  char reply[128] = {0};
  size_t got = 0;
  ssize_t r;
  while (got < sizeof(reply) - 1 && (r = read(fd, reply + got, sizeof(reply) - 1 - got)) > 0)
    got += (size_t)r;
  reply[strcspn(reply, "\n")] = 0;
  unsigned long long echoed = 0;
  int match = sscanf(reply, "%llu %64s", &echoed, reply_hex) == 2 && echoed == n &&
              !strcmp(reply_hex, hex);
  printf("send bytes=%llu sha256=%s reply=%s match=%d\n", (unsigned long long)n, hex,
         got ? reply : "-", match);
  close(fd);
  return 0;
}

static int one_recv(unsigned port) {
  int fd = connect_host(port);
  if (fd < 0) return 1;
  char hex[65];
  int64_t got = recv_all(fd, hex, -1);
  if (got < 0) {
    printf("recv error=%s\n", strerror(errno));
    return 1;
  }
  printf("recv bytes=%lld sha256=%s\n", (long long)got, hex);
  close(fd);
  return 0;
}

// Runs `conns` copies of a client at once, one process each.
static int fan_out(int conns, int is_send, unsigned port, uint64_t n) {
  for (int i = 0; i < conns; ++i) {
    pid_t pid = fork();
    if (pid == 0) {
      int rc = is_send ? one_send(port, n) : one_recv(port);
      fflush(stdout);
      _exit(rc);
    }
    if (pid < 0) return 1;
  }
  int status, failures = 0;
  while (wait(&status) > 0) failures += !WIFEXITED(status) || WEXITSTATUS(status);
  return failures != 0;
}

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);  // a peer that closes mid-stream is a result, not a crash
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc >= 4 && !strcmp(argv[1], "listen")) return cmd_listen(argc - 2, argv + 2);
  if (argc >= 4 && !strcmp(argv[1], "send-to-host"))
    return fan_out(argc > 4 ? atoi(argv[4]) : 1, 1, (unsigned)strtoul(argv[2], NULL, 10),
                   strtoull(argv[3], NULL, 10));
  if (argc >= 3 && !strcmp(argv[1], "recv-from-host"))
    return fan_out(argc > 3 ? atoi(argv[3]) : 1, 0, (unsigned)strtoul(argv[2], NULL, 10), 0);
  fprintf(stderr,
          "usage: vsock_tool listen [-n COUNT] PORT echo|sink|source N|abort N\n"
          "       vsock_tool send-to-host PORT NBYTES [CONNS]\n"
          "       vsock_tool recv-from-host PORT [CONNS]\n");
  return 2;
}

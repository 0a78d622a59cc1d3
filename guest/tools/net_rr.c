// net_rr: TCP request/response round trips, the benchmark iperf3 lacks (perf/net_bench.py).
// One connection, TCP_NODELAY, a 1-byte request answered by a 1-byte response, COUNT times;
// the same static binary is the server (on the host side of the TAP) and the client (in the
// guest), for wisp and for both QEMU back-ends alike.
//
//   net_rr server ADDR PORT          accept connections one after another, echo each byte
//   net_rr client ADDR PORT COUNT    -> "net_rr n=COUNT p50_us=X p90_us=Y tps=Z"
//
// The client times every round trip with CLOCK_MONOTONIC; tps is COUNT over the whole loop.
// The first 10 round trips (ARP, slow start of the path) are run but not counted.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { kWarmup = 10, kMaxCount = 10000000 };

static int parse_addr(const char* ip, const char* port, struct sockaddr_in* sa) {
  char* end;
  long p = strtol(port, &end, 10);
  memset(sa, 0, sizeof(*sa));
  sa->sin_family = AF_INET;
  if (*end || p <= 0 || p > 65535 || inet_pton(AF_INET, ip, &sa->sin_addr) != 1) {
    fprintf(stderr, "net_rr: bad address %s:%s\n", ip, port);
    return -1;
  }
  sa->sin_port = htons((unsigned short)p);
  return 0;
}

static void nodelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static int serve(const struct sockaddr_in* sa) {
  int ls = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (ls < 0 || bind(ls, (const struct sockaddr*)sa, sizeof(*sa)) < 0 || listen(ls, 8) < 0) {
    perror("net_rr: listen");
    return 1;
  }
  for (;;) {
    int c = accept(ls, NULL, NULL);
    if (c < 0) continue;
    nodelay(c);
    char b;
    while (read(c, &b, 1) == 1 && write(c, &b, 1) == 1) {
    }
    close(c);
  }
}

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp_double(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return x < y ? -1 : x > y;
}

static int client(const struct sockaddr_in* sa, long count) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0 || connect(fd, (const struct sockaddr*)sa, sizeof(*sa)) < 0) {
    perror("net_rr: connect");
    return 1;
  }
  nodelay(fd);
  double* rtt = malloc(sizeof(double) * (size_t)count);
  if (!rtt) return 1;
  double start = 0;
  for (long i = -kWarmup; i < count; i++) {
    if (i == 0) start = now_us();
    double t0 = now_us();
    char b = 'x';
    if (write(fd, &b, 1) != 1 || read(fd, &b, 1) != 1 || b != 'x') {
      fprintf(stderr, "net_rr: round trip %ld failed\n", i);
      return 1;
    }
    if (i >= 0) rtt[i] = now_us() - t0;
  }
  double total = now_us() - start;
  close(fd);
  qsort(rtt, (size_t)count, sizeof(double), cmp_double);
  printf("net_rr n=%ld p50_us=%.1f p90_us=%.1f tps=%.1f\n", count, rtt[count / 2],
         rtt[count * 9 / 10], count / (total / 1e6));
  free(rtt);
  return 0;
}

int main(int argc, char** argv) {
  struct sockaddr_in sa;
  if (argc == 4 && strcmp(argv[1], "server") == 0) {
    if (parse_addr(argv[2], argv[3], &sa)) return 2;
    return serve(&sa);
  }
  if (argc == 5 && strcmp(argv[1], "client") == 0) {
    char* end;
    long count = strtol(argv[4], &end, 10);
    if (*end || count <= 0 || count > kMaxCount || parse_addr(argv[2], argv[3], &sa)) {
      fprintf(stderr, "net_rr: bad COUNT %s\n", argv[4]);
      return 2;
    }
    return client(&sa, count);
  }
  fprintf(stderr, "usage: net_rr server ADDR PORT | net_rr client ADDR PORT COUNT\n");
  return 2;
}

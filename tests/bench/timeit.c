// timeit: runs a command N times with fork/exec and prints min, median, p90
// and max wall time in milliseconds. The benchmark scripts in tests/bench use
// it for every peer and for Corral alike, so that the harness overhead is the
// same on both sides of each ratio.
//
//   timeit [-n RUNS] [-w WARMUP] [-j PARALLEL] [-l LABEL] [-o FILE]
//          [-I FILE] [-t SECONDS] [-m] [-k] -- COMMAND [ARGS...]
//
// Exit status: 0 when every timed run exited 0; 1 when a run failed (the
// first failure stops the measurement unless -k); 2 on a usage error.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void Usage(void) {
  fprintf(
      stderr,
      "usage: timeit [-n RUNS] [-w WARMUP] [-j PARALLEL] [-l LABEL]\n"
      "              [-o FILE] [-I FILE] [-t SECONDS] [-m] [-k] -- COMMAND "
      "[ARGS...]\n"
      "  -n RUNS      timed runs (default 200; with -I: lines of FILE)\n"
      "  -w WARMUP    untimed runs first (default 3)\n"
      "  -j PARALLEL  keep this many runs in flight (default 1); the\n"
      "               throughput line then counts runs per second of wall\n"
      "  -l LABEL     name printed before the numbers (default COMMAND)\n"
      "  -o FILE      append each run's stdout to FILE (default /dev/null)\n"
      "  -I FILE      run once per line of FILE, replacing every argument\n"
      "               \"{}\" with that line; no warmup\n"
      "  -t SECONDS   end a run that takes longer with SIGALRM (a failure)\n"
      "  -m           machine output: LABEL RUNS FAILED MIN MEDIAN P90 MAX\n"
      "               WALL_S PER_SECOND\n"
      "  -k           keep going after a failed run\n");
  exit(2);
}

static double NowMs(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int CompareDoubles(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}

// Nearest-rank percentile of a sorted array.
static double Percentile(const double* sorted, int n, double p) {
  if (n == 0) return 0;
  int rank = (int)(p / 100.0 * n + 0.999999);
  if (rank < 1) rank = 1;
  if (rank > n) rank = n;
  return sorted[rank - 1];
}

static double Median(const double* sorted, int n) {
  if (n == 0) return 0;
  return n % 2 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
}

static char** ReadLines(const char* path, int* count) {
  FILE* f = fopen(path, "r");
  if (!f) {
    fprintf(stderr, "timeit: open %s: %s\n", path, strerror(errno));
    exit(2);
  }
  char** lines = NULL;
  int n = 0, cap = 0;
  char* line = NULL;
  size_t size = 0;
  ssize_t len;
  while ((len = getline(&line, &size, f)) >= 0) {
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
      line[--len] = 0;
    if (len == 0) continue;
    if (n == cap) {
      cap = cap ? cap * 2 : 64;
      lines = realloc(lines, sizeof(char*) * cap);
      if (!lines) abort();
    }
    lines[n++] = strdup(line);
  }
  free(line);
  fclose(f);
  *count = n;
  return lines;
}

struct Options {
  char** argv;  // command; "{}" placeholders when -I
  int argc;
  char** lines;  // -I lines, or NULL
  int stdout_fd;
  unsigned timeout_s;  // 0: none
};

// Starts run `index` (-1 for warmup) and returns its pid.
static pid_t Start(const struct Options* o, int index) {
  char** argv = o->argv;
  char** substituted = NULL;
  if (o->lines && index >= 0) {
    substituted = calloc(o->argc + 1, sizeof(char*));
    if (!substituted) abort();
    for (int i = 0; i < o->argc; i++)
      substituted[i] =
          strcmp(o->argv[i], "{}") == 0 ? o->lines[index] : o->argv[i];
    argv = substituted;
  }
  pid_t pid = fork();
  if (pid < 0) {
    perror("timeit: fork");
    exit(1);
  }
  if (pid == 0) {
    dup2(o->stdout_fd, 1);
    // A pending alarm survives execve: the command gets SIGALRM when its
    // time is up, with no watchdog thread in timeit.
    if (o->timeout_s) alarm(o->timeout_s);
    execvp(argv[0], argv);
    // Only async-signal-safe calls after fork.
    static const char kMessage[] = "timeit: exec failed\n";
    ssize_t ignored = write(2, kMessage, sizeof kMessage - 1);
    (void)ignored;
    _exit(127);
  }
  free(substituted);
  return pid;
}

static int Failed(int status) {
  return !WIFEXITED(status) || WEXITSTATUS(status) != 0;
}

static void Describe(int status, char* out, size_t size) {
  if (WIFEXITED(status))
    snprintf(out, size, "exit status %d", WEXITSTATUS(status));
  else if (WIFSIGNALED(status))
    snprintf(out, size, "signal %d", WTERMSIG(status));
  else
    snprintf(out, size, "status 0x%x", status);
}

int main(int argc, char** argv) {
  int runs = 200, warmup = 3, parallel = 1, machine = 0, keep_going = 0;
  const char* label = NULL;
  const char* output = "/dev/null";
  const char* lines_path = NULL;
  int timeout_s = 0;
  int opt;
  while ((opt = getopt(argc, argv, "+n:w:j:l:o:I:t:mkh")) != -1) {
    switch (opt) {
      case 'n':
        runs = atoi(optarg);
        break;
      case 'w':
        warmup = atoi(optarg);
        break;
      case 'j':
        parallel = atoi(optarg);
        break;
      case 'l':
        label = optarg;
        break;
      case 'o':
        output = optarg;
        break;
      case 'I':
        lines_path = optarg;
        break;
      case 't':
        timeout_s = atoi(optarg);
        break;
      case 'm':
        machine = 1;
        break;
      case 'k':
        keep_going = 1;
        break;
      default:
        Usage();
    }
  }
  if (optind >= argc || runs < 1 || warmup < 0 || parallel < 1 || timeout_s < 0)
    Usage();

  struct Options o = {.argv = argv + optind,
                      .argc = argc - optind,
                      .timeout_s = (unsigned)timeout_s};
  if (!label) label = o.argv[0];
  o.stdout_fd = open(output, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (o.stdout_fd < 0) {
    fprintf(stderr, "timeit: open %s: %s\n", output, strerror(errno));
    return 2;
  }
  if (lines_path) {
    o.lines = ReadLines(lines_path, &runs);
    warmup = 0;
    if (runs == 0) {
      fprintf(stderr, "timeit: %s has no lines\n", lines_path);
      return 2;
    }
  }

  for (int i = 0; i < warmup; i++) {
    int status;
    pid_t pid = Start(&o, -1);
    if (waitpid(pid, &status, 0) < 0) return perror("timeit: waitpid"), 1;
    if (Failed(status) && !keep_going) {
      char why[64];
      Describe(status, why, sizeof why);
      fprintf(stderr, "timeit: %s: warmup run failed (%s)\n", label, why);
      return 1;
    }
  }

  double* times = calloc(runs, sizeof(double));
  pid_t* pids = calloc(parallel, sizeof(pid_t));
  double* starts = calloc(parallel, sizeof(double));
  if (!times || !pids || !starts) abort();
  int started = 0, finished = 0, failed = 0, in_flight = 0, stop = 0;
  double wall_start = NowMs();
  while (finished < started || (!stop && started < runs)) {
    while (!stop && started < runs && in_flight < parallel) {
      int slot = 0;
      while (pids[slot]) slot++;
      starts[slot] = NowMs();
      pids[slot] = Start(&o, started);
      started++;
      in_flight++;
    }
    int status;
    pid_t pid = waitpid(-1, &status, 0);
    double end = NowMs();
    if (pid < 0) {
      if (errno == EINTR) continue;
      perror("timeit: waitpid");
      return 1;
    }
    int slot = 0;
    while (slot < parallel && pids[slot] != pid) slot++;
    if (slot == parallel) continue;  // not ours
    pids[slot] = 0;
    in_flight--;
    times[finished++] = end - starts[slot];
    if (Failed(status)) {
      failed++;
      if (!keep_going && !stop) {
        char why[64];
        Describe(status, why, sizeof why);
        fprintf(stderr, "timeit: %s: run %d failed (%s); stopping\n", label,
                finished, why);
        stop = 1;
      }
    }
  }
  double wall_s = (NowMs() - wall_start) / 1e3;

  qsort(times, finished, sizeof(double), CompareDoubles);
  double min = finished ? times[0] : 0,
         max = finished ? times[finished - 1] : 0;
  double median = Median(times, finished),
         p90 = Percentile(times, finished, 90);
  double per_second = wall_s > 0 ? finished / wall_s : 0;
  if (machine) {
    printf("%s %d %d %.3f %.3f %.3f %.3f %.3f %.1f\n", label, finished, failed,
           min, median, p90, max, wall_s, per_second);
  } else {
    printf("%-28s n=%-4d min %7.2f  median %7.2f  p90 %7.2f  max %7.2f ms",
           label, finished, min, median, p90, max);
    if (parallel > 1) printf("  (%d in flight: %.0f/s)", parallel, per_second);
    if (failed) printf("  [%d FAILED]", failed);
    printf("\n");
  }
  return failed ? 1 : 0;
}

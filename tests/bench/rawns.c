// rawns: the floor peer for the `linux` runtime. Starts the smallest honest
// namespace sandbox and runs a command in it: new mount, pid, net, ipc, uts
// and cgroup namespaces (plus a user namespace with -u), a tmpfs root with a
// read-only /usr, a minimal /dev and a fresh /proc, pivot_root, no_new_privs
// and a seccomp filter, then execve. It is what bubblewrap and Corral's
// launcher do, minus their option parsing and bookkeeping.
//
//   rawns [-u] COMMAND [ARGS...]     (COMMAND resolved under /usr/bin)
//
// Exit status: the command's, or 125 when the sandbox could not be set up.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static char** command;
static int sync_pipe[2];

// Child side: report the failing call and errno, then exit 125.
static int Fail(const char* what) {
  fprintf(stderr, "rawns: %s: %s\n", what, strerror(errno));
  _exit(125);
}

static void BindDevice(const char* name) {
  char source[64], target[64];
  snprintf(source, sizeof source, "/dev/%s", name);
  snprintf(target, sizeof target, "/tmp/dev/%s", name);
  int fd = open(target, O_CREAT | O_WRONLY | O_CLOEXEC, 0666);
  if (fd < 0) Fail(target);
  close(fd);
  if (mount(source, target, NULL, MS_BIND, NULL) != 0) Fail(target);
}

static void LoadSeccomp(void) {
  // Refuses other ABIs and a few syscalls no sandbox needs; allows the rest.
  struct sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000, 5, 0),  // x32
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_kexec_load, 4, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_init_module, 3, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_bpf, 2, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_keyctl, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
  };
  struct sock_fprog program = {.len = sizeof filter / sizeof filter[0],
                               .filter = filter};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) Fail("prctl no_new_privs");
  if (syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, 0, &program) != 0)
    Fail("seccomp");
}

static int Child(void* unused) {
  (void)unused;
  // Wait until the parent has written the id maps (user namespace only).
  char byte;
  close(sync_pipe[1]);
  if (read(sync_pipe[0], &byte, 1) < 0) Fail("read sync pipe");
  close(sync_pipe[0]);

  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0)
    Fail("make / private");
  if (mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV,
            "mode=0755,size=1m") != 0)
    Fail("mount tmpfs root");
  if (mkdir("/tmp/usr", 0755) != 0 || mkdir("/tmp/proc", 0555) != 0 ||
      mkdir("/tmp/dev", 0755) != 0 || mkdir("/tmp/tmp", 01777) != 0 ||
      mkdir("/tmp/old", 0700) != 0)
    Fail("mkdir");
  if (mount("/usr", "/tmp/usr", NULL, MS_BIND | MS_REC, NULL) != 0)
    Fail("bind /usr");
  if (mount(NULL, "/tmp/usr", NULL,
            MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) != 0)
    Fail("remount /usr read-only");
  if (symlink("usr/bin", "/tmp/bin") != 0 ||
      symlink("usr/lib", "/tmp/lib") != 0 ||
      symlink("usr/lib64", "/tmp/lib64") != 0)
    Fail("symlink");
  BindDevice("null");
  BindDevice("zero");
  BindDevice("urandom");
  if (mount("proc", "/tmp/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC,
            NULL) != 0)
    Fail("mount proc");
  if (syscall(SYS_pivot_root, "/tmp", "/tmp/old") != 0) Fail("pivot_root");
  if (chdir("/") != 0) Fail("chdir /");
  if (umount2("/old", MNT_DETACH) != 0) Fail("umount old root");
  rmdir("/old");
  if (sethostname("rawns", 5) != 0) Fail("sethostname");
  if (setsid() < 0) Fail("setsid");
  LoadSeccomp();
  char path[256];
  snprintf(path, sizeof path, "/usr/bin/%s", command[0]);
  execv(strchr(command[0], '/') ? command[0] : path, command);
  Fail("execv");
  return 125;
}

static void WriteFile(const char* path, const char* text) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0 || write(fd, text, strlen(text)) < 0) {
    fprintf(stderr, "rawns: write %s: %s\n", path, strerror(errno));
    exit(125);
  }
  close(fd);
}

int main(int argc, char** argv) {
  int user_namespace = 0, first = 1;
  if (argc > 1 && strcmp(argv[1], "-u") == 0) {
    user_namespace = 1;
    first = 2;
  }
  if (first >= argc) {
    fprintf(stderr, "usage: rawns [-u] COMMAND [ARGS...]\n");
    return 2;
  }
  command = argv + first;
  if (pipe2(sync_pipe, O_CLOEXEC) != 0) return perror("rawns: pipe"), 125;

  static char stack[256 * 1024] __attribute__((aligned(16)));
  int flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC |
              CLONE_NEWUTS | CLONE_NEWCGROUP | SIGCHLD;
  if (user_namespace) flags |= CLONE_NEWUSER;
  pid_t pid = clone(Child, stack + sizeof stack, flags, NULL);
  if (pid < 0) return perror("rawns: clone"), 125;
  close(sync_pipe[0]);
  if (user_namespace) {
    char path[64], map[64];
    snprintf(path, sizeof path, "/proc/%d/setgroups", pid);
    WriteFile(path, "deny");
    snprintf(map, sizeof map, "0 %d 1\n", getuid());
    snprintf(path, sizeof path, "/proc/%d/uid_map", pid);
    WriteFile(path, map);
    snprintf(map, sizeof map, "0 %d 1\n", getgid());
    snprintf(path, sizeof path, "/proc/%d/gid_map", pid);
    WriteFile(path, map);
  }
  close(sync_pipe[1]);  // releases the child
  int status;
  if (waitpid(pid, &status, 0) < 0) return perror("rawns: waitpid"), 125;
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + WTERMSIG(status);
}

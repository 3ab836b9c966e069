/* The init of the qemu bench's bare boot: the kernel runs it from a trivial
 * initramfs; it says it is up on the console and powers the VM off. The
 * time to its line is what the same kernel costs to boot with nothing of
 * Corral's in it. */
#include <sys/reboot.h>
#include <unistd.h>

int main(void) {
  static const char kReady[] = "corral-bare-ready\n";
  (void)!write(1, kReady, sizeof(kReady) - 1);
  reboot(RB_POWER_OFF);
  return 0;
}

/* CPUID with some feature bits cleared, for this process and the threads it starts afterwards:
 * Linux's CPUID faulting (arch_prctl ARCH_SET_CPUID, where the CPU and hypervisor offer it) makes
 * every CPUID instruction raise SIGSEGV; the handler runs the real instruction with faulting off
 * for a moment, clears the masked bits and steps over it. Libraries that pick kernels by CPUID
 * (ONNX Runtime's MLAS, OpenVINO, numpy, bertcpu) then choose what they would on a CPU without
 * those features. Used by hide_cpu_features.py; loaded with ctypes. Not thread-safe to install:
 * call cpuid_mask_install() once, before other threads start. */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <cpuid.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#define MAX_MASKS 16

struct mask {
  unsigned leaf, subleaf, reg; /* reg: 0 eax, 1 ebx, 2 ecx, 3 edx */
  unsigned bits;
};

static struct mask masks[MAX_MASKS];
static int mask_count;
static struct sigaction previous;
static volatile unsigned long trapped; /* CPUID instructions handled, for the caller's check */

static long set_cpuid_faulting(int on) { return syscall(SYS_arch_prctl, ARCH_SET_CPUID, !on); }

static void on_segv(int sig, siginfo_t *info, void *context) {
  greg_t *g = ((ucontext_t *)context)->uc_mcontext.gregs;
  const unsigned char *ip = (const unsigned char *)g[REG_RIP];
  if (ip[0] != 0x0f || ip[1] != 0xa2) { /* not CPUID: a real fault, for whoever handled it before */
    sigaction(SIGSEGV, &previous, NULL);
    return; /* the instruction runs again and faults into the previous handler */
  }
  unsigned r[4];
  const unsigned leaf = (unsigned)g[REG_RAX], subleaf = (unsigned)g[REG_RCX];
  set_cpuid_faulting(0);
  __cpuid_count(leaf, subleaf, r[0], r[1], r[2], r[3]);
  set_cpuid_faulting(1);
  for (int i = 0; i < mask_count; ++i)
    if (masks[i].leaf == leaf && masks[i].subleaf == subleaf) r[masks[i].reg] &= ~masks[i].bits;
  g[REG_RAX] = r[0];
  g[REG_RBX] = r[1];
  g[REG_RCX] = r[2];
  g[REG_RDX] = r[3];
  g[REG_RIP] += 2;
  ++trapped;
  (void)sig;
  (void)info;
}

/* Adds bits to clear in register reg of CPUID leaf/subleaf; returns 0, or -1 when full. */
int cpuid_mask_add(unsigned leaf, unsigned subleaf, unsigned reg, unsigned bits) {
  if (mask_count == MAX_MASKS || reg > 3) return -1;
  masks[mask_count++] = (struct mask){leaf, subleaf, reg, bits};
  return 0;
}

/* Installs the handler and turns faulting on: 0, or the errno-style failure of arch_prctl (no
 * CPUID faulting on this CPU or hypervisor) or sigaction. */
int cpuid_mask_install(void) {
  struct sigaction action;
  memset(&action, 0, sizeof action);
  action.sa_sigaction = on_segv;
  action.sa_flags = SA_SIGINFO | SA_NODEFER;
  sigemptyset(&action.sa_mask);
  if (sigaction(SIGSEGV, &action, &previous) != 0) return -1;
  if (set_cpuid_faulting(1) != 0) {
    sigaction(SIGSEGV, &previous, NULL);
    return -2;
  }
  return 0;
}

unsigned long cpuid_mask_trapped(void) { return trapped; }

// lowp_self_test() (gemm_lowp.h): the known-answer test the amx path runs before its kernels are
// chosen, under a SIGILL guard, so that a CPU or OS that does not run the instructions after all
// (or runs them wrongly) costs a fallback and a warning, not the process or a wrong answer.
#include <csetjmp>
#include <csignal>
#include <cmath>
#include <mutex>
#include <string>
#include <vector>

#include "kernels/gemm_lowp.h"

namespace bertcpu {

namespace {

// The jump target of the thread running guarded code, if any.
thread_local sigjmp_buf* t_sigill_jump = nullptr;
struct sigaction g_previous_sigill;

void on_sigill(int, siginfo_t*, void*) {
  if (t_sigill_jump) siglongjmp(*t_sigill_jump, 1);
  // Another thread's illegal instruction: not ours to handle. With the previous handler back, the
  // instruction runs again on return and raises the signal there.
  sigaction(SIGILL, &g_previous_sigill, nullptr);
}

// Runs f() on the calling thread with a SIGILL handler installed for the time it runs (the
// previous one is restored after): true if f returned, false if it raised SIGILL. What f's frames
// own is leaked if they are left by the signal (the self-test's few small allocations, once).
template <class F>
bool runs_without_sigill(const F& f) {
  static std::mutex mutex;  // one guarded run at a time: the handler is process-wide
  std::lock_guard<std::mutex> lock(mutex);
  struct sigaction action = {};
  action.sa_sigaction = on_sigill;
  action.sa_flags = SA_SIGINFO;
  sigemptyset(&action.sa_mask);
  sigaction(SIGILL, &action, &g_previous_sigill);
  sigjmp_buf jump;
  volatile bool returned = false;
  if (sigsetjmp(jump, 1) == 0) {  // 1: the signal mask is restored by the jump
    t_sigill_jump = &jump;
    f();
    returned = true;
  }
  t_sigill_jump = nullptr;
  sigaction(SIGILL, &g_previous_sigill, nullptr);
  return returned;
}

// The problem: two row tiles and a 3-row tail (M = 35), K = 300 (not a multiple of 32 or 64; two
// bf16 K chunks), N = 45 (a panel and a tail). bf16 inputs are small integers, so every sum is
// exact in any order and any correct kernel returns the same bits; int8 inputs are spread floats,
// quantized identically by every table (Int8Kernels::quantize_row).
constexpr int kM = 35, kK = 300, kN = 45;

// "" if got == expected, else where they differ first.
std::string compare(const char* what, const std::vector<float>& got,
                    const std::vector<float>& expected) {
  for (size_t i = 0; i < got.size(); ++i) {
    if (got[i] == expected[i]) continue;
    return std::string(what) + " result [" + std::to_string(i / kN) + ", " +
           std::to_string(i % kN) + "] is " + std::to_string(got[i]) + ", expected " +
           std::to_string(expected[i]);
  }
  return "";
}

}  // namespace

std::string lowp_self_test(const Bf16Kernels& bf16, const Int8Kernels& int8, bool corrupt) {
  std::vector<float> x_small(kM * kK), w_small(kN * kK), x(kM * kK), w(kN * kK), bias(kN);
  for (int i = 0; i < kM; ++i)
    for (int k = 0; k < kK; ++k) {
      x_small[i * kK + k] = static_cast<float>((i * 7 + k * 3) % 9 - 4);
      x[i * kK + k] = std::sin(0.37f * i + 0.11f * k) * static_cast<float>(1 + i % 3);
    }
  for (int n = 0; n < kN; ++n) {
    bias[n] = static_cast<float>(n - 20);
    for (int k = 0; k < kK; ++k) {
      w_small[n * kK + k] = static_cast<float>((n * 5 + k * 11) % 7 - 3);
      w[n * kK + k] = std::cos(0.23f * n - 0.07f * k);
    }
  }
  // Both products on one pair of tables, on this thread, with the weights packed for them first:
  // nothing is allocated under the SIGILL guard, whose jump out would skip destructors.
  struct Packed {
    PackedLinearBf16 bf16;
    PackedLinearInt8 int8;
  };
  auto pack = [&](const Bf16Kernels& bf16_kt, const Int8Kernels& int8_kt, Packed& p) {
    p.bf16.init(bf16_kt, kN, kK);
    p.bf16.pack_weight(w_small.data());
    p.bf16.set_bias(bias.data());
    p.int8.init(int8_kt, kN, kK);
    p.int8.pack_weight(w.data());
    p.int8.set_bias(bias.data());
  };
  AlignedBuffer scratch;
  auto products = [&](const Bf16Kernels& bf16_kt, const Int8Kernels& int8_kt, const Packed& p,
                      std::vector<float>& bf16_out, std::vector<float>& int8_out) {
    linear_bf16(bf16_kt, p.bf16, kM, x_small.data(), kK, bf16_out.data(), kN, true,
                Activation::none, scratch, 1);
    linear_int8(int8_kt, p.int8, kM, x.data(), kK, int8_out.data(), kN, true, Activation::none,
                scratch, 1);
  };
  // The expected answers, from the generic tables (which also size `scratch`).
  Packed reference, candidate;
  pack(generic_bf16_kernels(), generic_int8_kernels(), reference);
  pack(bf16, int8, candidate);
  std::vector<float> bf16_expected(kM * kN), int8_expected(kM * kN);
  products(generic_bf16_kernels(), generic_int8_kernels(), reference, bf16_expected,
           int8_expected);
  std::vector<float> bf16_got(kM * kN), int8_got(kM * kN);
  const bool returned =
      runs_without_sigill([&] { products(bf16, int8, candidate, bf16_got, int8_got); });
  if (!returned) return "illegal instruction (SIGILL) in the kernels";
  if (corrupt) bf16_got[0] += 1.0f;
  std::string error = compare("bf16", bf16_got, bf16_expected);
  if (error.empty()) error = compare("int8", int8_got, int8_expected);
  return error;
}

}  // namespace bertcpu

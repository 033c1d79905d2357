// The AMX kernels of lowp_amx.h on the real tile instructions (AMX-TILE, AMX-BF16, AMX-INT8:
// Sapphire Rapids and later), with the AVX-512 epilogues and row formats of lowp_avx512bf16.cpp
// and lowp_avx512vnni.cpp. Called only on the amx path, which needs the CPU, the OS (XCR0 and, on
// Linux, arch_prctl) and a passing self-test at first use (gemm_lowp.cpp).
#include <immintrin.h>

#include "kernels/lowp_amx.h"
#include "kernels/lowp_int8_avx512.h"

namespace bertcpu {

namespace {

// The instructions. Written as asm with the tile numbers as constant operands: GCC's intrinsics
// (amxtileintrin.h) paste their tile argument into the instruction text, so they take only
// literal numbers, not template arguments. AT&T order: sources first, B before A.
struct AmxTiles {
  static void load_config(const amx::TileConfig& cfg) { _tile_loadconfig(&cfg); }
  static void release() { _tile_release(); }

  template <int t>
  static void zero() {
    __asm__ volatile("tilezero %%tmm%c0" ::"i"(t));
  }
  template <int t>
  static void load(const void* base, long stride) {
    __asm__ volatile("tileloadd (%0,%1,1), %%tmm%c2" ::"r"(base), "r"(stride), "i"(t) : "memory");
  }
  template <int t>
  static void store(void* base, long stride) {
    __asm__ volatile("tilestored %%tmm%c2, (%0,%1,1)" ::"r"(base), "r"(stride), "i"(t) : "memory");
  }
  template <int c, int a, int b>
  static void dpbf16ps() {
    __asm__ volatile("tdpbf16ps %%tmm%c0, %%tmm%c1, %%tmm%c2" ::"i"(b), "i"(a), "i"(c));
  }
  template <int c, int a, int b>
  static void dpbusd() {
    __asm__ volatile("tdpbusd %%tmm%c0, %%tmm%c1, %%tmm%c2" ::"i"(b), "i"(a), "i"(c));
  }
};

struct Avx512Finish {
  static void bf16_row(const float* acc, float* row, int n, bool accumulate, const float* bias,
                       Activation act) {
    const VecAvx512 r[2] = {VecAvx512::load(acc), VecAvx512::load(acc + 16)};
    finish_row<VecAvx512, 2>(r, row, n, accumulate, bias, act);
  }
  static void int8_row(const int32_t* acc, const int32_t* colsum, float a_scale, int32_t a_zero,
                       int top, float top_value, const int8_t* panel, const float* w_scale,
                       const float* bias, float* row, int n, Activation act) {
    static_assert(amx::kInt8Group == 4 && amx::kNr == 32, "finish_int8_row_avx512<2>'s panel");
    finish_int8_row_avx512<2>(acc, colsum, a_scale, a_zero, top, top_value, panel, amx::kNr,
                              w_scale, bias, row, n, act);
  }
};

}  // namespace

const Bf16Kernels& amx_bf16_kernels() {
  static const Bf16Kernels table =
      amx::bf16_table<AmxTiles, Avx512Finish>(Isa::amx, "amx", avx512_bf16_kernels());
  return table;
}

const Int8Kernels& amx_int8_kernels() {
  static const Int8Kernels table =
      amx::int8_table<AmxTiles, Avx512Finish>(Isa::amx, "amx", avx512_vnni_int8_kernels());
  return table;
}

}  // namespace bertcpu

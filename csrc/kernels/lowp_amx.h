// The AMX micro-kernels, written once over a tile backend: lowp_amx.cpp instantiates them with the
// real instructions (Sapphire Rapids and later), lowp_amx_model.cpp with a scalar model of those
// instructions that runs on every CPU, so that the packing, tile configuration and loops the
// instructions run are tested everywhere.
//
// Tiles (palette 1): 8 registers of up to 16 rows x 64 bytes, configured per thread. The micro-tile
// is 32 x 32: C in four accumulator tiles (2 row tiles x 2 column tiles of 16 x 16 fp32 / int32),
// two A tiles (16 rows x 64 bytes of K: 32 bf16 or 64 uint8) and two B tiles, so that each tile
// loaded feeds two products. B is the packed panel as gemm_lowp.h lays it out for nr = 32 and
// kgroup 2 (bf16) / 4 (int8): a pair (quad) row of the panel is 32 columns x 4 bytes, and a B tile
// is 16 such rows of one 16-column half -- the layout TDPBF16PS / TDPBUSD read. K is zero-padded
// to whole tiles at pack time (k_align) and A has whole 16-row groups (kLowpRowAlign), so the loop
// has no K or row tail; the epilogue writes the m x n part of the tile.
//
// A backend T provides, all static (tile numbers are template arguments because the instructions
// encode them): load_config(const TileConfig&) (ldtilecfg), release() (tilerelease), zero<t>()
// (tilezero), load<t>(const void*, long stride) (tileloadd), store<t>(void*, long stride)
// (tilestored), dpbf16ps<c, a, b>() (tdpbf16ps: C[c] += A[a] * B[b]) and dpbusd<c, a, b>()
// (tdpbusd). Everything here has internal linkage, as in kernels_simd.h: the translation units
// that include it are compiled with different ISA flags.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/lowp_kernels.h"

namespace bertcpu {
namespace amx {
namespace {

constexpr int kTileRows = 16;
constexpr int kTileRowBytes = 64;
constexpr int kMr = 2 * kTileRows;             // rows of C per micro-tile
constexpr int kNr = 2 * (kTileRowBytes / 4);   // columns of C: two tiles of 16 fp32 / int32
constexpr int kBf16Group = 2, kInt8Group = 4;  // K values per packed column group
// K values one A tile row holds (the K step of one tile product), and so the K alignment.
constexpr int kBf16KStep = kTileRowBytes / 2, kInt8KStep = kTileRowBytes;
// Bytes from one pair / quad row of a packed panel to the next: a B tile's row stride.
constexpr long kPanelRowBytes = kNr * 4;

// The tile registers: C[row tile][column tile], A per row tile, B per column tile.
enum TileName : int { kC00, kC01, kC10, kC11, kA0, kA1, kB0, kB1 };

// The 64-byte operand of ldtilecfg.
struct alignas(64) TileConfig {
  uint8_t palette;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];  // bytes per row of tiles 0..7 (8..15 reserved, zero)
  uint8_t rows[16];
};
static_assert(sizeof(TileConfig) == 64, "ldtilecfg reads 64 bytes");

// Every tile 16 rows x 64 bytes: C 16 x 16 of 4-byte sums, A 16 rows x 64 bytes of K, B 16 pair /
// quad rows x 16 columns.
inline TileConfig tile_config() {
  TileConfig cfg{};
  cfg.palette = 1;
  for (int t = 0; t < 8; ++t) {
    cfg.colsb[t] = kTileRowBytes;
    cfg.rows[t] = kTileRows;
  }
  return cfg;
}

template <class T>
struct Bf16Dot {
  template <int c, int a, int b>
  static void run() {
    T::template dpbf16ps<c, a, b>();
  }
};

template <class T>
struct Int8Dot {
  template <int c, int a, int b>
  static void run() {
    T::template dpbusd<c, a, b>();
  }
};

// out[0, 16 R) x [0, 32) = A[16 R rows] * Bp over kc values of K (a multiple of the K step), with
// R = 1 or 2 row tiles. a: rows of stride lda elements; bp: the panel from this K chunk on.
template <class T, int R, class Dot, class AElem, class BElem, class CElem>
inline void tile_product(int kc, const AElem* a, int lda, const BElem* bp, CElem (*out)[kNr]) {
  constexpr int kStep = kTileRowBytes / sizeof(AElem);
  constexpr int kHalf = kTileRowBytes / sizeof(BElem);  // the second column tile of a B row
  const long a_stride = static_cast<long>(lda) * sizeof(AElem);
  const AElem* a1 = a + static_cast<ptrdiff_t>(kTileRows) * lda;
  T::template zero<kC00>();
  T::template zero<kC01>();
  if constexpr (R == 2) {
    T::template zero<kC10>();
    T::template zero<kC11>();
  }
  for (int k = 0; k < kc; k += kStep) {
    // K values k.. are the (k / group)-th pair / quad row: k * kNr elements into the panel.
    const BElem* b = bp + static_cast<ptrdiff_t>(k) * kNr;
    T::template load<kB0>(b, kPanelRowBytes);
    T::template load<kB1>(b + kHalf, kPanelRowBytes);
    T::template load<kA0>(a + k, a_stride);
    Dot::template run<kC00, kA0, kB0>();
    Dot::template run<kC01, kA0, kB1>();
    if constexpr (R == 2) {
      T::template load<kA1>(a1 + k, a_stride);
      Dot::template run<kC10, kA1, kB0>();
      Dot::template run<kC11, kA1, kB1>();
    }
  }
  constexpr long out_stride = kNr * sizeof(CElem);
  T::template store<kC00>(out[0], out_stride);
  T::template store<kC01>(out[0] + kNr / 2, out_stride);
  if constexpr (R == 2) {
    T::template store<kC10>(out[kTileRows], out_stride);
    T::template store<kC11>(out[kTileRows] + kNr / 2, out_stride);
  }
}

// Bf16Kernels::gemm_micro for mr = nr = 32 and kc a multiple of 32. Finish::bf16_row(acc, row, n,
// accumulate, bias, act) does what finish_bf16_row_scalar() does.
template <class T, class Finish>
void bf16_micro(int kc, const bf16* a, int lda, const bf16* bp, float* c, int ldc, int m, int n,
                int flags, const float* bias, Activation act) {
  alignas(64) float acc[kMr][kNr];
  if (m > kTileRows)
    tile_product<T, 2, Bf16Dot<T>>(kc, a, lda, bp, acc);
  else
    tile_product<T, 1, Bf16Dot<T>>(kc, a, lda, bp, acc);
  for (int i = 0; i < m; ++i)
    Finish::bf16_row(acc[i], c + static_cast<ptrdiff_t>(i) * ldc, n, flags & kGemmAccumulate,
                     bias, act);
}

// Int8Kernels::gemm_micro for mr = nr = 32 and kp a multiple of 64. Finish::int8_row(acc, colsum,
// a_scale, a_zero, top, top_value, panel, w_scale, bias, row, n, act) does what
// finish_int8_row_scalar() does (the panel: kNr columns in groups of kInt8Group K values).
template <class T, class Finish>
void int8_micro(int kp, const uint8_t* a, int lda, const int8_t* bp, const int32_t* colsum,
                const float* a_scale, const int32_t* a_zero, const int32_t* a_top,
                const float* a_top_value, const float* w_scale, const float* bias, float* c,
                int ldc, int m, int n, Activation act) {
  alignas(64) int32_t acc[kMr][kNr];
  if (m > kTileRows)
    tile_product<T, 2, Int8Dot<T>>(kp, a, lda, bp, acc);
  else
    tile_product<T, 1, Int8Dot<T>>(kp, a, lda, bp, acc);
  for (int i = 0; i < m; ++i)
    Finish::int8_row(acc[i], colsum, a_scale[i], a_zero[i], a_top[i], a_top_value[i], bp, w_scale,
                     bias, c + static_cast<ptrdiff_t>(i) * ldc, n, act);
}

// The tile configuration is per thread: loaded before a run of micro-kernel calls and released
// after it, so that nothing depends on what other code on the thread did with the tiles between
// two runs (another library's tilerelease would make a cached configuration fault).
template <class T>
void begin_block() {
  static const TileConfig config = tile_config();
  T::load_config(config);
}

template <class T>
void end_block() {
  T::release();
}

// The two tables for backend T; convert_row / quantize_row come from the table of the SIMD path
// the instructions run beside (the row formats are the ones of every x86 path).
template <class T, class Finish>
Bf16Kernels bf16_table(Isa isa, const char* name, const Bf16Kernels& rows_from) {
  return Bf16Kernels{isa,         name,         kMr,          kNr,
                     rows_from.convert_row,     bf16_micro<T, Finish>,     kBf16Group,
                     0,           kBf16KStep,   begin_block<T>, end_block<T>};
}

template <class T, class Finish>
Int8Kernels int8_table(Isa isa, const char* name, const Int8Kernels& rows_from) {
  return Int8Kernels{isa,        name, kMr, kNr, kInt8Group, rows_from.quantize_row,
                     int8_micro<T, Finish>,  0,   0,  kInt8KStep, begin_block<T>, end_block<T>};
}

}  // namespace
}  // namespace amx
}  // namespace bertcpu

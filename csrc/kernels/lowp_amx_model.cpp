// The AMX kernels of lowp_amx.h over a scalar model of the tile instructions: plain C++ that runs
// on every CPU, so that the kernels' packing, tile configuration and loops are tested against the
// generic kernels everywhere (tests/test_kernels_lowp.py, tables "amx_model"), and the amx path's
// selection can be exercised without AMX (BERTCPU_TEST_AMX_MODEL, cpu_isa.h).
//
// What the model assumes, after Intel's pseudocode (Intel 64 and IA-32 Architectures Software
// Developer's Manual, Vol. 2B, TDPBF16PS, TDPBUSD, LDTILECFG, TILELOADD, TILESTORED):
// - ldtilecfg: palette 1 (8 tiles, at most 16 rows x 64 bytes), start_row 0, reserved bytes zero;
//   it zeroes every tile. tilerelease returns to the initial state (no configuration). Using a tile
//   without a configuration, a tile of 0 rows, or operands whose shapes do not fit each other
//   faults (#UD on the hardware): the model reports it and raises SIGILL, like the CPU would.
// - tileloadd / tilestored: rows x colsb bytes, row r at base + r * stride; a load zeroes the rest
//   of the tile.
// - tdpbf16ps C, A, B: for each row m and column n, two fp32 sums start at zero, even and odd;
//   for each pair k of A's row (16 with 64-byte rows), even = fma(A[m][2k], B[k][2n], even) and
//   odd = fma(A[m][2k+1], B[k][2n+1], odd); then C[m][n] = C[m][n] + (even + odd). Every
//   operation rounds to nearest even in fp32; MXCSR is not used: denormal inputs count as zero and
//   denormal results become zero. Not vdpbf16ps's order (Bf16Kernels::gemm_micro), which the tests
//   take into account.
// - tdpbusd C, A, B: C[m][n] += sum over the 4 bytes i of A[m][4k+i] (unsigned) * B[k][4n+i]
//   (signed), exactly, in wrapping 32-bit arithmetic.
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "kernels/lowp_amx.h"

namespace bertcpu {

namespace {

using amx::TileConfig;

class TileModel {
 public:
  static void load_config(const TileConfig& cfg) {
    if (cfg.palette != 1 || cfg.start_row != 0) fault("ldtilecfg: palette 1 from row 0 only");
    for (uint8_t r : cfg.reserved)
      if (r != 0) fault("ldtilecfg: reserved bytes set");
    for (int t = 0; t < 16; ++t) {
      const bool valid = t < kTiles ? cfg.rows[t] <= amx::kTileRows &&
                                          cfg.colsb[t] <= amx::kTileRowBytes &&
                                          (cfg.rows[t] == 0) == (cfg.colsb[t] == 0)
                                    : cfg.rows[t] == 0 && cfg.colsb[t] == 0;
      if (!valid) fault("ldtilecfg: a tile shape palette 1 does not have");
    }
    State& s = state();
    s = State{};
    s.config = cfg;
    s.configured = true;
  }

  static void release() { state() = State{}; }

  template <int t>
  static void zero() {
    std::memset(tile(t).bytes, 0, sizeof(Tile::bytes));
  }

  template <int t>
  static void load(const void* base, long stride) {
    Tile& x = tile(t);
    std::memset(x.bytes, 0, sizeof(Tile::bytes));
    const auto* src = static_cast<const unsigned char*>(base);
    for (int r = 0; r < rows(t); ++r) std::memcpy(x.bytes[r], src + r * stride, colsb(t));
  }

  template <int t>
  static void store(void* base, long stride) {
    const Tile& x = tile(t);
    auto* dst = static_cast<unsigned char*>(base);
    for (int r = 0; r < rows(t); ++r) std::memcpy(dst + r * stride, x.bytes[r], colsb(t));
  }

  template <int c, int a, int b>
  static void dpbf16ps() {
    check_product(c, a, b);
    Tile &tc = tile(c), &ta = tile(a), &tb = tile(b);
    for (int m = 0; m < rows(c); ++m) {
      float even[amx::kTileRowBytes / 4] = {}, odd[amx::kTileRowBytes / 4] = {};
      for (int k = 0; k < colsb(a) / 4; ++k) {
        for (int n = 0; n < colsb(c) / 4; ++n) {
          even[n] = bf16_fma(get<bf16>(ta, m, 2 * k), get<bf16>(tb, k, 2 * n), even[n]);
          odd[n] = bf16_fma(get<bf16>(ta, m, 2 * k + 1), get<bf16>(tb, k, 2 * n + 1), odd[n]);
        }
      }
      for (int n = 0; n < colsb(c) / 4; ++n)
        set(tc, m, n, ftz(daz(get<float>(tc, m, n)) + ftz(even[n] + odd[n])));
    }
  }

  template <int c, int a, int b>
  static void dpbusd() {
    check_product(c, a, b);
    Tile &tc = tile(c), &ta = tile(a), &tb = tile(b);
    for (int m = 0; m < rows(c); ++m) {
      for (int k = 0; k < colsb(a) / 4; ++k) {
        for (int n = 0; n < colsb(c) / 4; ++n) {
          uint32_t acc = get<uint32_t>(tc, m, n);
          for (int i = 0; i < 4; ++i)
            acc += static_cast<uint32_t>(static_cast<int32_t>(get<uint8_t>(ta, m, 4 * k + i)) *
                                         get<int8_t>(tb, k, 4 * n + i));
          set(tc, m, n, acc);
        }
      }
    }
  }

 private:
  static constexpr int kTiles = 8;

  struct Tile {
    alignas(64) unsigned char bytes[amx::kTileRows][amx::kTileRowBytes];
  };

  // The per-thread tile state, as the CPU keeps it.
  struct State {
    bool configured = false;
    TileConfig config{};
    Tile tiles[kTiles]{};
  };

  static State& state() {
    thread_local State s;
    return s;
  }

  [[noreturn]] static void fault(const char* what) {
    std::fprintf(stderr, "bertcpu AMX tile model: %s (#UD on the CPU)\n", what);
    std::raise(SIGILL);
    std::abort();  // SIGILL ignored
  }

  static Tile& tile(int t) {
    State& s = state();
    if (!s.configured) fault("tile instruction without a tile configuration");
    if (s.config.rows[t] == 0) fault("tile instruction on an unconfigured tile");
    return s.tiles[t];
  }

  static int rows(int t) { return state().config.rows[t]; }
  static int colsb(int t) { return state().config.colsb[t]; }

  // The shape rules of tdpbf16ps / tdpbusd: C is rows(A) x colsb(B), A's row holds one K group
  // (4 bytes) per row of B, and the three tiles differ.
  static void check_product(int c, int a, int b) {
    tile(c);
    tile(a);
    tile(b);
    if (c == a || c == b || a == b) fault("tile product with a tile used twice");
    if (rows(c) != rows(a) || colsb(c) != colsb(b) || colsb(a) != 4 * rows(b))
      fault("tile product of mismatched shapes");
  }

  template <class E>
  static E get(const Tile& x, int row, int index) {
    E v;
    std::memcpy(&v, x.bytes[row] + index * sizeof(E), sizeof(E));
    return v;
  }

  template <class E>
  static void set(Tile& x, int row, int index, E v) {
    std::memcpy(x.bytes[row] + index * sizeof(E), &v, sizeof(E));
  }

  // Denormals as (signed) zeros: daz for inputs, ftz for results.
  static float daz(float x) {
    return std::fpclassify(x) == FP_SUBNORMAL ? std::copysign(0.0f, x) : x;
  }
  static float ftz(float x) { return daz(x); }

  static float bf16_fma(bf16 a, bf16 b, float acc) {
    return ftz(std::fma(daz(bf16_value(a)), daz(bf16_value(b)), daz(acc)));
  }

  static float bf16_value(bf16 x) {
    const uint32_t u = static_cast<uint32_t>(x) << 16;
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
  }
};

// The generic kernels' epilogues: the model is about the tiles, not the vector code.
struct ScalarFinish {
  static void bf16_row(const float* acc, float* row, int n, bool accumulate, const float* bias,
                       Activation act) {
    finish_bf16_row_scalar(acc, row, n, accumulate, bias, act);
  }
  static void int8_row(const int32_t* acc, const int32_t* colsum, float a_scale, int32_t a_zero,
                       int top, float top_value, const int8_t* panel, const float* w_scale,
                       const float* bias, float* row, int n, Activation act) {
    finish_int8_row_scalar(acc, colsum, a_scale, a_zero, top_value,
                           panel + packed_int8_offset(amx::kNr, amx::kInt8Group, top),
                           amx::kInt8Group, w_scale, bias, row, n, act);
  }
};

}  // namespace

const Bf16Kernels& amx_model_bf16_kernels(Isa isa) {
  static const Bf16Kernels tests = amx::bf16_table<TileModel, ScalarFinish>(
      Isa::generic, "amx_model", generic_bf16_kernels());
  static const Bf16Kernels amx_path =
      amx::bf16_table<TileModel, ScalarFinish>(Isa::amx, "amx_model", generic_bf16_kernels());
  return isa == Isa::amx ? amx_path : tests;
}

const Int8Kernels& amx_model_int8_kernels(Isa isa) {
  static const Int8Kernels tests = amx::int8_table<TileModel, ScalarFinish>(
      Isa::generic, "amx_model", generic_int8_kernels());
  static const Int8Kernels amx_path =
      amx::int8_table<TileModel, ScalarFinish>(Isa::amx, "amx_model", generic_int8_kernels());
  return isa == Isa::amx ? amx_path : tests;
}

}  // namespace bertcpu

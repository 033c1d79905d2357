// Portable scalar low-precision kernels: the reference the SIMD paths are tested against (same
// bf16 rounding and fp32 summation order, same integers), and the path of CPUs without them.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/gemm_lowp.h"

namespace bertcpu {

bf16 to_bf16(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<bf16>((u >> 16) | 0x40u);  // quiet NaN
  if ((u & 0x7f800000u) == 0) return static_cast<bf16>((u >> 16) & 0x8000u);  // zero, denormal
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even (infinity stays infinity)
  return static_cast<bf16>(u >> 16);
}

float bf16_to_float(bf16 x) {
  const uint32_t u = static_cast<uint32_t>(x) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

float quantize_int8(const float* x, int n, int8_t* q) {
  float amax = 0.0f;
  for (int i = 0; i < n; ++i) amax = std::max(amax, std::fabs(x[i]));
  const float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
  // |x * inv| <= 127 up to rounding, so the rounded value is within [-127, 127].
  for (int i = 0; i < n; ++i) q[i] = static_cast<int8_t>(std::nearbyint(x[i] * inv));
  return amax / 127.0f;
}

void finish_bf16_row_scalar(const float* acc, float* row, int n, bool accumulate,
                            const float* bias, Activation act) {
  for (int j = 0; j < n; ++j) {
    float v = acc[j];
    if (accumulate) v += row[j];
    if (bias) v += bias[j];
    row[j] = v;
  }
  generic_kernels().activation(row, row, n, act);
}

void finish_int8_row_scalar(const int32_t* acc, const int32_t* colsum, float a_scale,
                            int32_t a_zero, float top_value, const int8_t* top_weights, int kgroup,
                            const float* w_scale, const float* bias, float* row, int n,
                            Activation act) {
  for (int j = 0; j < n; ++j) {
    const int32_t centered = acc[j] - a_zero * colsum[j];
    float v = static_cast<float>(centered) * a_scale;
    if (top_value != 0.0f) v += top_value * static_cast<float>(top_weights[j * kgroup]);
    v *= w_scale[j];
    if (bias) v += bias[j];
    row[j] = v;
  }
  generic_kernels().activation(row, row, n, act);
}

namespace {

constexpr int kMr = 4;
constexpr int kNr = 8;

void convert_row(const float* x, int n, int np, bf16* out) {
  for (int i = 0; i < n; ++i) out[i] = to_bf16(x[i]);
  for (int i = n; i < np; ++i) out[i] = 0;
}

void bf16_micro(int kc, const bf16* a, int lda, const bf16* bp, float* c, int ldc, int m, int n,
                int flags, const float* bias, Activation act) {
  float acc[kMr][kNr] = {};
  for (int k = 0; k < kc; k += 2) {
    const bf16* b = bp + k * kNr;  // pair row k / 2: kNr pairs
    for (int i = 0; i < m; ++i) {
      const float a0 = bf16_to_float(a[i * lda + k]), a1 = bf16_to_float(a[i * lda + k + 1]);
      for (int j = 0; j < kNr; ++j) {
        acc[i][j] += a1 * bf16_to_float(b[2 * j + 1]);
        acc[i][j] += a0 * bf16_to_float(b[2 * j]);
      }
    }
  }
  for (int i = 0; i < m; ++i)
    finish_bf16_row_scalar(acc[i], c + i * ldc, n, flags & kGemmAccumulate, bias, act);
}

// Asymmetric 0..255 quantization of n floats (Int8Kernels::quantize_row's rule for the rest of a
// row): returns the scale, writes q and *zero_point.
float quantize_uint8(const float* x, int n, uint8_t* q, int32_t* zero_point) {
  float lo = 0.0f, hi = 0.0f;
  for (int i = 0; i < n; ++i) {
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
  }
  if (hi == lo) {  // all zero
    std::fill(q, q + n, 0);
    *zero_point = 0;
    return 0.0f;
  }
  const float range = hi - lo;
  const float inv = 255.0f / range;
  const int32_t zp = std::clamp(static_cast<int32_t>(std::nearbyint(-lo * inv)), 0, 255);
  for (int i = 0; i < n; ++i)
    q[i] = static_cast<uint8_t>(
        std::clamp(static_cast<int32_t>(std::nearbyint(x[i] * inv)) + zp, 0, 255));
  *zero_point = zp;
  return range / 255.0f;
}

float quantize_row(const float* x, int k, int kp, uint8_t* out, int32_t* zero_point,
                   int32_t* top, float* top_value) {
  int t = 0;
  for (int i = 1; i < k; ++i)
    if (std::fabs(x[i]) > std::fabs(x[t])) t = i;
  std::vector<float> rest(x, x + k);
  if (k > 0) rest[t] = 0.0f;
  const float scale = quantize_uint8(rest.data(), k, out, zero_point);
  std::fill(out + k, out + kp, static_cast<uint8_t>(*zero_point));
  *top = t;
  *top_value = k > 0 ? x[t] : 0.0f;
  return scale;
}

// kgroup 1: the panel holds kp rows of kNr int8; A is uint8.
void int8_micro(int kp, const uint8_t* a, int lda, const int8_t* bp, const int32_t* colsum,
                const float* a_scale, const int32_t* a_zero, const int32_t* a_top,
                const float* a_top_value, const float* w_scale, const float* bias, float* c,
                int ldc, int m, int n, Activation act) {
  int32_t acc[kMr][kNr] = {};
  for (int k = 0; k < kp; ++k) {
    const int8_t* b = bp + k * kNr;
    for (int i = 0; i < m; ++i) {
      const int32_t ai = a[i * lda + k];
      for (int j = 0; j < kNr; ++j) acc[i][j] += ai * b[j];
    }
  }
  for (int i = 0; i < m; ++i)
    finish_int8_row_scalar(acc[i], colsum, a_scale[i], a_zero[i], a_top_value[i],
                           bp + packed_int8_offset(kNr, 1, a_top[i]), 1, w_scale, bias,
                           c + i * ldc, n, act);
}

}  // namespace

const Bf16Kernels& generic_bf16_kernels() {
  static const Bf16Kernels table{Isa::generic, "generic", kMr, kNr, convert_row, bf16_micro};
  return table;
}

const Int8Kernels& generic_int8_kernels() {
  static const Int8Kernels table{Isa::generic, "generic", kMr, kNr, 1, quantize_row,
                                 int8_micro};
  return table;
}

}  // namespace bertcpu

// 8 x fp32 in a ymm register: the vector type kernels_simd.h is instantiated with for AVX2+FMA.
// Include only from a *_avx2.cpp translation unit.
#pragma once

#include <immintrin.h>

namespace bertcpu {
namespace {

struct VecAvx2 {
  static constexpr int width = 8;
  __m256 v;

  static VecAvx2 zero() { return {_mm256_setzero_ps()}; }
  static VecAvx2 set1(float x) { return {_mm256_set1_ps(x)}; }
  static VecAvx2 load(const float* p) { return {_mm256_loadu_ps(p)}; }
  void store(float* p) const { _mm256_storeu_ps(p, v); }
  static __m256i tail_mask(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  // Loads the first n (< width) floats; the other lanes are `fill`.
  static VecAvx2 load_partial(const float* p, int n, float fill) {
    const __m256i mask = tail_mask(n);
    const __m256 loaded = _mm256_maskload_ps(p, mask);
    return {_mm256_blendv_ps(_mm256_set1_ps(fill), loaded, _mm256_castsi256_ps(mask))};
  }
  void store_partial(float* p, int n) const { _mm256_maskstore_ps(p, tail_mask(n), v); }

  friend VecAvx2 operator+(VecAvx2 a, VecAvx2 b) { return {_mm256_add_ps(a.v, b.v)}; }
  friend VecAvx2 operator-(VecAvx2 a, VecAvx2 b) { return {_mm256_sub_ps(a.v, b.v)}; }
  friend VecAvx2 operator*(VecAvx2 a, VecAvx2 b) { return {_mm256_mul_ps(a.v, b.v)}; }
  friend VecAvx2 operator/(VecAvx2 a, VecAvx2 b) { return {_mm256_div_ps(a.v, b.v)}; }
  // a * b + c
  static VecAvx2 fmadd(VecAvx2 a, VecAvx2 b, VecAvx2 c) { return {_mm256_fmadd_ps(a.v, b.v, c.v)}; }
  // c - a * b
  static VecAvx2 fnmadd(VecAvx2 a, VecAvx2 b, VecAvx2 c) { return {_mm256_fnmadd_ps(a.v, b.v, c.v)}; }
  static VecAvx2 max(VecAvx2 a, VecAvx2 b) { return {_mm256_max_ps(a.v, b.v)}; }
  static VecAvx2 min(VecAvx2 a, VecAvx2 b) { return {_mm256_min_ps(a.v, b.v)}; }
  static VecAvx2 abs(VecAvx2 a) { return {_mm256_andnot_ps(_mm256_set1_ps(-0.0f), a.v)}; }
  // |a| with the sign of s
  static VecAvx2 copysign(VecAvx2 a, VecAvx2 s) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    return {_mm256_or_ps(_mm256_andnot_ps(sign, a.v), _mm256_and_ps(sign, s.v))};
  }
  static VecAvx2 round(VecAvx2 a) {
    return {_mm256_round_ps(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)};
  }
  // 2^n for integral n in [-126, 127]
  static VecAvx2 pow2(VecAvx2 n) {
    const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n.v),
                                                            _mm256_set1_epi32(127)), 23);
    return {_mm256_castsi256_ps(bits)};
  }
  // p * 2^n for integral n in [-126, 127].
  static VecAvx2 ldexp(VecAvx2 p, VecAvx2 n) { return p * pow2(n); }
  // r[i] lane j <-> r[j] lane i: an 8 x 8 block transposed in registers.
  static void transpose(VecAvx2* r) {
    __m256 t[8], u[8];
    for (int i = 0; i < 8; i += 2) {  // pairs of rows interleaved
      t[i] = _mm256_unpacklo_ps(r[i].v, r[i + 1].v);
      t[i + 1] = _mm256_unpackhi_ps(r[i].v, r[i + 1].v);
    }
    // u[4g + c], 128-bit lane l: rows 4g..4g+3 of column 4l + c.
    for (int g = 0; g < 8; g += 4) {
      u[g] = _mm256_shuffle_ps(t[g], t[g + 2], 0x44);
      u[g + 1] = _mm256_shuffle_ps(t[g], t[g + 2], 0xEE);
      u[g + 2] = _mm256_shuffle_ps(t[g + 1], t[g + 3], 0x44);
      u[g + 3] = _mm256_shuffle_ps(t[g + 1], t[g + 3], 0xEE);
    }
    for (int c = 0; c < 4; ++c) {
      r[c].v = _mm256_permute2f128_ps(u[c], u[4 + c], 0x20);
      r[4 + c].v = _mm256_permute2f128_ps(u[c], u[4 + c], 0x31);
    }
  }
  float reduce_add() const {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  float reduce_max() const {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  float reduce_min() const {
    __m128 s = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_min_ps(s, _mm_movehl_ps(s, s));
    s = _mm_min_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
};

}  // namespace
}  // namespace bertcpu

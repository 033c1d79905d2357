// 16 x fp32 in a zmm register: the vector type kernels_simd.h is instantiated with for AVX-512
// (F, BW, DQ, VL). Include only from a *_avx512.cpp translation unit.
#pragma once

#include <immintrin.h>

namespace bertcpu {
namespace {

struct VecAvx512 {
  static constexpr int width = 16;
  __m512 v;

  static VecAvx512 zero() { return {_mm512_setzero_ps()}; }
  static VecAvx512 set1(float x) { return {_mm512_set1_ps(x)}; }
  static VecAvx512 load(const float* p) { return {_mm512_loadu_ps(p)}; }
  void store(float* p) const { _mm512_storeu_ps(p, v); }
  static __mmask16 tail_mask(int n) { return static_cast<__mmask16>((1u << n) - 1u); }
  // Loads the first n (< width) floats; the other lanes are `fill`.
  static VecAvx512 load_partial(const float* p, int n, float fill) {
    return {_mm512_mask_loadu_ps(_mm512_set1_ps(fill), tail_mask(n), p)};
  }
  void store_partial(float* p, int n) const { _mm512_mask_storeu_ps(p, tail_mask(n), v); }

  friend VecAvx512 operator+(VecAvx512 a, VecAvx512 b) { return {_mm512_add_ps(a.v, b.v)}; }
  friend VecAvx512 operator-(VecAvx512 a, VecAvx512 b) { return {_mm512_sub_ps(a.v, b.v)}; }
  friend VecAvx512 operator*(VecAvx512 a, VecAvx512 b) { return {_mm512_mul_ps(a.v, b.v)}; }
  friend VecAvx512 operator/(VecAvx512 a, VecAvx512 b) { return {_mm512_div_ps(a.v, b.v)}; }
  static VecAvx512 fmadd(VecAvx512 a, VecAvx512 b, VecAvx512 c) {
    return {_mm512_fmadd_ps(a.v, b.v, c.v)};
  }
  static VecAvx512 fnmadd(VecAvx512 a, VecAvx512 b, VecAvx512 c) {
    return {_mm512_fnmadd_ps(a.v, b.v, c.v)};
  }
  static VecAvx512 max(VecAvx512 a, VecAvx512 b) { return {_mm512_max_ps(a.v, b.v)}; }
  static VecAvx512 min(VecAvx512 a, VecAvx512 b) { return {_mm512_min_ps(a.v, b.v)}; }
  static VecAvx512 abs(VecAvx512 a) { return {_mm512_abs_ps(a.v)}; }
  static VecAvx512 copysign(VecAvx512 a, VecAvx512 s) {
    const __m512i sign = _mm512_set1_epi32(static_cast<int>(0x80000000u));
    const __m512i mag = _mm512_andnot_si512(sign, _mm512_castps_si512(a.v));
    return {_mm512_castsi512_ps(
        _mm512_or_si512(mag, _mm512_and_si512(sign, _mm512_castps_si512(s.v))))};
  }
  static VecAvx512 round(VecAvx512 a) {
    return {_mm512_roundscale_ps(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)};
  }
  static VecAvx512 pow2(VecAvx512 n) {
    const __m512i bits = _mm512_slli_epi32(
        _mm512_add_epi32(_mm512_cvtps_epi32(n.v), _mm512_set1_epi32(127)), 23);
    return {_mm512_castsi512_ps(bits)};
  }
  // p * 2^n for integral n (vscalefps: any n).
  static VecAvx512 ldexp(VecAvx512 p, VecAvx512 n) { return {_mm512_scalef_ps(p.v, n.v)}; }
  // r[i] lane j <-> r[j] lane i: a 16 x 16 block transposed in registers.
  static void transpose(VecAvx512* r) {
    __m512 t[16], u[16];
    for (int i = 0; i < 16; i += 2) {  // pairs of rows interleaved
      t[i] = _mm512_unpacklo_ps(r[i].v, r[i + 1].v);
      t[i + 1] = _mm512_unpackhi_ps(r[i].v, r[i + 1].v);
    }
    // u[4g + c], 128-bit lane l: rows 4g..4g+3 of column 4l + c.
    for (int g = 0; g < 16; g += 4) {
      u[g] = _mm512_shuffle_ps(t[g], t[g + 2], 0x44);
      u[g + 1] = _mm512_shuffle_ps(t[g], t[g + 2], 0xEE);
      u[g + 2] = _mm512_shuffle_ps(t[g + 1], t[g + 3], 0x44);
      u[g + 3] = _mm512_shuffle_ps(t[g + 1], t[g + 3], 0xEE);
    }
    // Column 4l + c gathers lane l of u[c], u[4 + c], u[8 + c], u[12 + c].
    for (int c = 0; c < 4; ++c) {
      const __m512 lo0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x88);
      const __m512 lo1 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xDD);
      const __m512 hi0 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x88);
      const __m512 hi1 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xDD);
      r[c].v = _mm512_shuffle_f32x4(lo0, hi0, 0x88);
      r[8 + c].v = _mm512_shuffle_f32x4(lo0, hi0, 0xDD);
      r[4 + c].v = _mm512_shuffle_f32x4(lo1, hi1, 0x88);
      r[12 + c].v = _mm512_shuffle_f32x4(lo1, hi1, 0xDD);
    }
  }
  float reduce_add() const { return _mm512_reduce_add_ps(v); }
  float reduce_max() const { return _mm512_reduce_max_ps(v); }
  float reduce_min() const { return _mm512_reduce_min_ps(v); }
};

}  // namespace
}  // namespace bertcpu

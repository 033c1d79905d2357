// 4 x fp32 in a NEON q register: the vector type kernels_simd.h is instantiated with for aarch64's
// Advanced SIMD (present on every aarch64 CPU). Include only from a *_neon.cpp / *_dotprod.cpp /
// *_i8mm.cpp / *_bf16.cpp translation unit.
#pragma once

#include <arm_neon.h>
#include <cstddef>  // ptrdiff_t, which immintrin.h brings on x86 (types only)

namespace bertcpu {
namespace {

struct VecNeon {
  static constexpr int width = 4;
  float32x4_t v;

  static VecNeon zero() { return {vdupq_n_f32(0.0f)}; }
  static VecNeon set1(float x) { return {vdupq_n_f32(x)}; }
  static VecNeon load(const float* p) { return {vld1q_f32(p)}; }
  void store(float* p) const { vst1q_f32(p, v); }
  // Loads the first n (< width) floats; the other lanes are `fill`. NEON has no masked loads: the
  // n floats go through a small buffer, so nothing past p + n is read.
  static VecNeon load_partial(const float* p, int n, float fill) {
    float lanes[4] = {fill, fill, fill, fill};
    for (int i = 0; i < n; ++i) lanes[i] = p[i];
    return {vld1q_f32(lanes)};
  }
  void store_partial(float* p, int n) const {
    float lanes[4];
    vst1q_f32(lanes, v);
    for (int i = 0; i < n; ++i) p[i] = lanes[i];
  }

  friend VecNeon operator+(VecNeon a, VecNeon b) { return {vaddq_f32(a.v, b.v)}; }
  friend VecNeon operator-(VecNeon a, VecNeon b) { return {vsubq_f32(a.v, b.v)}; }
  friend VecNeon operator*(VecNeon a, VecNeon b) { return {vmulq_f32(a.v, b.v)}; }
  friend VecNeon operator/(VecNeon a, VecNeon b) { return {vdivq_f32(a.v, b.v)}; }
  // a * b + c
  static VecNeon fmadd(VecNeon a, VecNeon b, VecNeon c) { return {vfmaq_f32(c.v, a.v, b.v)}; }
  // c - a * b
  static VecNeon fnmadd(VecNeon a, VecNeon b, VecNeon c) { return {vfmsq_f32(c.v, a.v, b.v)}; }
  static VecNeon max(VecNeon a, VecNeon b) { return {vmaxq_f32(a.v, b.v)}; }
  static VecNeon min(VecNeon a, VecNeon b) { return {vminq_f32(a.v, b.v)}; }
  static VecNeon abs(VecNeon a) { return {vabsq_f32(a.v)}; }
  // |a| with the sign of s
  static VecNeon copysign(VecNeon a, VecNeon s) {
    return {vbslq_f32(vdupq_n_u32(0x80000000u), s.v, a.v)};
  }
  // To nearest, ties to even (frintn), like _MM_FROUND_TO_NEAREST_INT.
  static VecNeon round(VecNeon a) { return {vrndnq_f32(a.v)}; }
  // 2^n for integral n in [-126, 127]
  static VecNeon pow2(VecNeon n) {
    return {vreinterpretq_f32_s32(
        vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n.v), vdupq_n_s32(127)), 23))};
  }
  // p * 2^n for integral n in [-126, 127].
  static VecNeon ldexp(VecNeon p, VecNeon n) { return p * pow2(n); }
  // r[i] lane j <-> r[j] lane i: a 4 x 4 block transposed in registers.
  static void transpose(VecNeon* r) {
    const float32x4_t t0 = vtrn1q_f32(r[0].v, r[1].v), t1 = vtrn2q_f32(r[0].v, r[1].v);
    const float32x4_t t2 = vtrn1q_f32(r[2].v, r[3].v), t3 = vtrn2q_f32(r[2].v, r[3].v);
    r[0].v = vreinterpretq_f32_f64(
        vtrn1q_f64(vreinterpretq_f64_f32(t0), vreinterpretq_f64_f32(t2)));
    r[2].v = vreinterpretq_f32_f64(
        vtrn2q_f64(vreinterpretq_f64_f32(t0), vreinterpretq_f64_f32(t2)));
    r[1].v = vreinterpretq_f32_f64(
        vtrn1q_f64(vreinterpretq_f64_f32(t1), vreinterpretq_f64_f32(t3)));
    r[3].v = vreinterpretq_f32_f64(
        vtrn2q_f64(vreinterpretq_f64_f32(t1), vreinterpretq_f64_f32(t3)));
  }
  float reduce_add() const { return vaddvq_f32(v); }
  float reduce_max() const { return vmaxvq_f32(v); }
  float reduce_min() const { return vminvq_f32(v); }
};

}  // namespace
}  // namespace bertcpu

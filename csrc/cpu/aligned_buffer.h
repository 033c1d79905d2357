// A growable, 64-byte aligned float buffer: weight panels and scratch memory.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <new>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace bertcpu {

// Buffers of kHugeMinBytes or more (weight panels, large scratch) start on a 2 MiB boundary and
// ask Linux for transparent huge pages (THP is commonly in "madvise" mode, where nothing else gets
// them): a batch-1 forward streams every weight from DRAM, and with 4 KiB pages each 4 KiB of it
// also costs a TLB miss.
class AlignedBuffer {
 public:
  static constexpr size_t kHugePage = size_t(2) << 20;
  static constexpr size_t kHugeMinBytes = size_t(4) << 20;

  AlignedBuffer() = default;
  explicit AlignedBuffer(size_t n) { resize(n); }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  AlignedBuffer(AlignedBuffer&& o) noexcept : data_(o.data_), size_(o.size_) {
    o.data_ = nullptr;
    o.size_ = 0;
  }
  AlignedBuffer& operator=(AlignedBuffer&& o) noexcept {
    if (this != &o) {
      std::free(data_);
      data_ = o.data_;
      size_ = o.size_;
      o.data_ = nullptr;
      o.size_ = 0;
    }
    return *this;
  }
  ~AlignedBuffer() { std::free(data_); }

  // Discards the contents when it has to grow; never shrinks.
  void reserve(size_t n) {
    if (n > size_) resize(n);
  }
  // Exactly n floats, zero-filled.
  void resize(size_t n) {
    std::free(data_);
    data_ = nullptr;
    size_ = 0;
    if (n == 0) return;
    const size_t bytes = ((n * sizeof(float) + 63) / 64) * 64;
    const bool huge = bytes >= kHugeMinBytes;
    void* p = nullptr;
    if (posix_memalign(&p, huge ? kHugePage : 64, bytes) != 0) throw std::bad_alloc();
    data_ = static_cast<float*>(p);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    // Before the first touch, so that the zero-fill below already faults in huge pages.
    if (huge) madvise(p, bytes, MADV_HUGEPAGE);
#endif
    std::memset(data_, 0, bytes);
    size_ = n;
  }

  float* data() { return data_; }
  const float* data() const { return data_; }
  size_t size() const { return size_; }
  size_t bytes() const { return size_ * sizeof(float); }

 private:
  float* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace bertcpu

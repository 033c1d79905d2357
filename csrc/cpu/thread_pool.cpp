#include "cpu/thread_pool.h"

#include <pthread.h>
#if defined(__linux__)
#include <sched.h>
#endif

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <new>
#include <stdexcept>
#include <thread>
#include <vector>

#if defined(BERTCPU_X86)
#include <immintrin.h>
#define BERTCPU_PAUSE() _mm_pause()
#elif defined(__aarch64__)
#define BERTCPU_PAUSE() __asm__ volatile("yield")
#else
#define BERTCPU_PAUSE() ((void)0)
#endif

namespace bertcpu {

namespace {

// How long a worker keeps polling for the next region before it sleeps when no BusyScope is open:
// short enough that nothing spins for long after a forward pass returns.
constexpr auto kSpinTime = std::chrono::microseconds(200);

thread_local bool t_inside_region = false;
thread_local int t_worker = 0;  // 0: the calling thread; i + 1: pool worker i

class Pool {
 public:
  void set_threads(int n) { requested_.store(n); }

  void begin_busy() {
    if (busy_.fetch_add(1) > 0) return;
    place_workers();
    // Taking the lock orders the count before any sleeping worker's next look at it.
    { std::lock_guard<std::mutex> lock(wake_mutex_); }
    wake_cv_.notify_all();
  }
  void end_busy() { busy_.fetch_sub(1); }
  int threads() const { return requested_.load(); }

  void run(int n_tasks, const std::function<void(int)>& fn, int max_threads) {
    if (n_tasks <= 0) return;
    const int want = std::min(max_threads > 0 ? max_threads : requested_.load(), n_tasks);
    if (want <= 1 || t_inside_region) {
      for (int i = 0; i < n_tasks; ++i) fn(i);
      return;
    }
    std::lock_guard<std::mutex> region(region_mutex_);
    // A forward pass placed its workers when it began; new workers and a region outside a
    // forward pass are placed here.
    if (ensure_workers(want - 1) || busy_.load(std::memory_order_relaxed) == 0) place_workers();

    fn_ = &fn;
    n_tasks_ = n_tasks;
    next_task_.store(0);
    error_ = nullptr;
    active_workers_ = want - 1;
    const unsigned long generation = generation_.load() + 1;
    region_.store(static_cast<uint64_t>(static_cast<uint32_t>(generation)) << 32);
    {
      std::lock_guard<std::mutex> lock(wake_mutex_);
      generation_.store(generation, std::memory_order_release);
    }
    wake_cv_.notify_all();

    t_inside_region = true;
    t_worker = 0;
    work();
    t_inside_region = false;

    // No task is left: close the region to late workers (on a busy machine a worker may not get
    // a core until long after the caller has done all the work alone), then wait only for the
    // workers that joined, so fn stays alive while used.
    region_.fetch_or(kClosed, std::memory_order_acq_rel);
    auto joined = [&] { return (region_.load(std::memory_order_acquire) & kJoinedMask) != 0; };
    auto spin_until = std::chrono::steady_clock::now() + kSpinTime;
    while (joined()) {
      if (std::chrono::steady_clock::now() < spin_until) {
        BERTCPU_PAUSE();
      } else {
        std::unique_lock<std::mutex> lock(done_mutex_);
        done_cv_.wait(lock, [&] { return !joined(); });
      }
    }
    fn_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

  // fork() support: the parent holds the region lock across fork so no region is mid-flight; the
  // child forgets the parent's workers (they do not exist there) and starts new ones on demand.
  void before_fork() { region_mutex_.lock(); }
  void after_fork_parent() { region_mutex_.unlock(); }
  void after_fork_child() {
    new (&region_mutex_) std::mutex();
    new (&wake_mutex_) std::mutex();
    new (&done_mutex_) std::mutex();
    new (&error_mutex_) std::mutex();
    new (&workers_mutex_) std::mutex();
    new (&wake_cv_) std::condition_variable();
    new (&done_cv_) std::condition_variable();
    workers_ = new std::vector<std::thread>();  // the old threads are gone; their handles leak
    generation_.store(0);
    region_.store(0);
    busy_.store(0);  // the forwards that held them ran on threads the child does not have
    placed_cpu_ = -1;
  }

 private:
  // Keeps the workers off the CPU the calling thread is on. Linux wakes a sleeping thread on the
  // waker's CPU when it takes the other CPUs for busy: on a VM, that is any idle vCPU whose host
  // thread was descheduled. The woken worker then time-slices with the caller while another CPU
  // idles, until the load balancer moves one of them milliseconds later. Measured on this 2-vCPU
  // VM (sched_wakeup target_cpu = the caller's), MiniLM-size 1x16 after 20 ms idle: 5.25 ms, the
  // one-thread time; 3.28 ms with the workers kept off (`bench/compare_builds.py --model minilm
  // --shapes 1x16 --pause-ms 20`; 2.5 ms back to back).
  // The mask is the caller's own CPUs less the one it runs on (all of them if that leaves none),
  // set again only when the caller's CPU or CPU set changed.
  void place_workers() {
#if defined(__linux__)
    const int cpu = sched_getcpu();
    cpu_set_t allowed;
    if (cpu < 0 || sched_getaffinity(0, sizeof allowed, &allowed) != 0) return;
    std::lock_guard<std::mutex> lock(workers_mutex_);
    if (cpu == placed_cpu_ && CPU_EQUAL(&allowed, &placed_allowed_)) return;
    cpu_set_t others = allowed;
    CPU_CLR(cpu, &others);
    const cpu_set_t& mask = CPU_COUNT(&others) > 0 ? others : allowed;
    // Failure (a CPU set the cgroup forbids) leaves a worker where it was: only slower.
    for (std::thread& t : *workers_) pthread_setaffinity_np(t.native_handle(), sizeof mask, &mask);
    placed_cpu_ = cpu;
    placed_allowed_ = allowed;
#endif
  }

  // Starts workers up to n; returns whether it started any (they are not placed yet).
  bool ensure_workers(int n) {
    std::lock_guard<std::mutex> lock(workers_mutex_);
    if (static_cast<int>(workers_->size()) >= n) return false;
    placed_cpu_ = -1;
    while (static_cast<int>(workers_->size()) < n) {
      const int index = static_cast<int>(workers_->size());
      // The worker must see the region about to be published as new, however late it starts.
      const unsigned long seen = generation_.load();
      workers_->emplace_back([this, index, seen] { worker_loop(index, seen); });
#if defined(__linux__)
      pthread_setname_np(workers_->back().native_handle(), "bertcpu-worker");  // top, perf, /proc
#endif
    }
    return true;
  }

  void worker_loop(int index, unsigned long seen) {
    t_worker = index + 1;
    for (;;) {
      wait_for_region(seen);
      seen = generation_.load(std::memory_order_acquire);
      if (index >= active_workers_ || !join(seen)) continue;
      t_inside_region = true;
      work();
      t_inside_region = false;
      const uint64_t before = region_.fetch_sub(1, std::memory_order_acq_rel);
      if ((before & kJoinedMask) == 1 && (before & kClosed)) {
        std::lock_guard<std::mutex> lock(done_mutex_);
        done_cv_.notify_one();
      }
    }
  }

  // Returns once a region newer than `seen` is published. Polls while a BusyScope is open and for
  // kSpinTime after that, then sleeps until the next region or BusyScope.
  void wait_for_region(unsigned long seen) {
    auto spin_until = std::chrono::steady_clock::now() + kSpinTime;
    for (int polls = 0; generation_.load(std::memory_order_acquire) == seen; ++polls) {
      if (busy_.load(std::memory_order_relaxed) > 0) {
        // Give the CPU to other runnable threads now and then: with more threads than CPUs a
        // polling worker would otherwise hold up the caller's serial work.
        if (polls % 1024 == 1023) std::this_thread::yield();
        spin_until = std::chrono::steady_clock::now() + kSpinTime;
      } else if (std::chrono::steady_clock::now() >= spin_until) {
        std::unique_lock<std::mutex> lock(wake_mutex_);
        wake_cv_.wait(lock, [&] {
          return generation_.load(std::memory_order_acquire) != seen || busy_.load() > 0;
        });
        spin_until = std::chrono::steady_clock::now() + kSpinTime;
      }
      BERTCPU_PAUSE();
    }
  }

  // Enters region `generation` unless it is already closed (or over).
  bool join(unsigned long generation) {
    const uint64_t id = static_cast<uint64_t>(static_cast<uint32_t>(generation)) << 32;
    uint64_t state = region_.load(std::memory_order_acquire);
    while ((state & ~(kClosed | kJoinedMask)) == id && !(state & kClosed)) {
      if (region_.compare_exchange_weak(state, state + 1, std::memory_order_acq_rel)) return true;
    }
    return false;
  }

  void work() {
    for (;;) {
      const int i = next_task_.fetch_add(1, std::memory_order_relaxed);
      if (i >= n_tasks_) return;
      try {
        (*fn_)(i);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex_);
        if (!error_) error_ = std::current_exception();
        next_task_.store(n_tasks_);  // stop handing out tasks
      }
    }
  }

  std::atomic<int> requested_{1};
  std::mutex region_mutex_;
  std::vector<std::thread>* workers_ = new std::vector<std::thread>();  // lives for the process
  // Guards workers_ against place_workers() from a BusyScope opened on another thread, and the
  // placement below.
  std::mutex workers_mutex_;
  int placed_cpu_ = -1;  // the caller CPU the workers were last kept off (-1: not placed)
#if defined(__linux__)
  cpu_set_t placed_allowed_;
#endif

  // Region state, written by the caller before the generation bump that publishes it.
  const std::function<void(int)>* fn_ = nullptr;
  int n_tasks_ = 0;
  std::atomic<int> active_workers_{0};  // read by late workers while the next region is set up
  std::atomic<int> next_task_{0};
  // The open region: its generation (high 32 bits), a closed flag, and how many workers joined.
  static constexpr uint64_t kClosed = uint64_t(1) << 31;
  static constexpr uint64_t kJoinedMask = kClosed - 1;
  std::atomic<uint64_t> region_{0};
  std::exception_ptr error_;
  std::mutex error_mutex_;

  std::atomic<unsigned long> generation_{0};
  std::atomic<int> busy_{0};  // open BusyScopes
  std::mutex wake_mutex_;
  std::condition_variable wake_cv_;
  std::mutex done_mutex_;
  std::condition_variable done_cv_;
};

// Never destroyed: workers may still be parked on its condition variables at interpreter exit.
Pool& pool() {
  static Pool* instance = [] {
    Pool* p = new Pool();
    pthread_atfork([] { pool().before_fork(); }, [] { pool().after_fork_parent(); },
                   [] { pool().after_fork_child(); });
    return p;
  }();
  return *instance;
}

}  // namespace

void set_num_threads(int n) {
  if (n < 1) throw std::invalid_argument("number of threads must be at least 1");
  pool().set_threads(n);
}

int get_num_threads() { return pool().threads(); }

void parallel_for(int n_tasks, const std::function<void(int)>& fn, int max_threads) {
  pool().run(n_tasks, fn, max_threads);
}

BusyScope::BusyScope() : active_(pool().threads() > 1) {
  if (active_) pool().begin_busy();
}

BusyScope::~BusyScope() {
  if (active_) pool().end_busy();
}

int current_worker() { return t_inside_region ? t_worker : 0; }

}  // namespace bertcpu

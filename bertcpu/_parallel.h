// Parallel loop for the tokenizer's batches.
//
// Plain threads, started for the call and joined before it returns, instead of OpenMP: GNU
// OpenMP's pool stays behind after a region (its idle threads spin, stealing CPU from the
// engine), and a process that forks after using it hangs in the child's next parallel region
// (multiprocessing, gunicorn --preload, DataLoader workers). Starting a thread costs tens of
// microseconds, which the caller avoids for small batches by asking for one thread.
#pragma once

#include <atomic>
#include <cstddef>
#include <thread>
#include <vector>

typedef void (*bertcpu_task)(void* context, std::ptrdiff_t item, int worker);

// Runs task(context, i, worker) for every i in [0, n_items) on up to n_threads threads, the
// caller being worker 0. Items are handed out in chunks of `chunk` from a shared counter, so
// uneven items balance. worker < n_threads always (it indexes per-thread scratch memory). If the
// system refuses to start a thread, the threads already started do all the work.
static inline void bertcpu_parallel_for(std::ptrdiff_t n_items, int n_threads, std::ptrdiff_t chunk,
                                        bertcpu_task task, void* context) noexcept {
    std::atomic<std::ptrdiff_t> next{0};
    auto work = [&](int worker) {
        for (;;) {
            std::ptrdiff_t start = next.fetch_add(chunk, std::memory_order_relaxed);
            if (start >= n_items) return;
            std::ptrdiff_t end = start + chunk < n_items ? start + chunk : n_items;
            for (std::ptrdiff_t i = start; i < end; ++i) task(context, i, worker);
        }
    };
    std::vector<std::thread> helpers;
    try {
        helpers.reserve(n_threads > 1 ? n_threads - 1 : 0);
        for (int worker = 1; worker < n_threads; ++worker) helpers.emplace_back(work, worker);
    } catch (...) {
        // Out of threads or memory: carry on with those that started.
    }
    work(0);
    for (auto& helper : helpers) helper.join();
}

// The engine's thread pool: one per process, shared by every model.
//
// Why not OpenMP: GNU OpenMP keeps idle threads spinning after a region and its pool does not
// survive fork() (children hang). This pool spins only briefly between the back-to-back regions of
// one forward pass, then sleeps; after fork() the child starts a fresh pool on first use.
#pragma once

#include <functional>

namespace bertcpu {

// Sets the number of threads (the caller counts as one) used by later parallel regions.
void set_num_threads(int n);
int get_num_threads();

// Runs fn(i) for every i in [0, n_tasks) on up to max_threads threads (the caller included; 0
// means get_num_threads()) and returns when all are done. Tasks are handed out dynamically.
// Safe to call from several threads: regions are serialized. A call from inside a task runs
// serially on that thread. The first exception thrown by a task is rethrown in the caller.
void parallel_for(int n_tasks, const std::function<void(int)>& fn, int max_threads = 0);

// Inside a task: which of the region's threads runs it, in [0, max_threads). Lets a caller give
// each thread its own scratch memory.
int current_worker();

}  // namespace bertcpu

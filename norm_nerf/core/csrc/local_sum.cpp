// The sum of a small tensor over the processes of one machine, through a shared memory region
// (norm_nerf/core/local_sum.py): the synchronised statistics' all-reduce between local ranks without gloo's sockets.
#include <sched.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "cpu_kernels.h"

namespace {

// REGION: [world lines of 64 bytes: the rank's flag, pid and start time (int64)][slot 0: world x capacity bytes]
// [slot 1: the same]. Call number `generation` (1, 2, ... on every rank alike) uses slot generation % 2: a rank copies
// its tensor into its row, publishes the generation in its flag (release), waits until every flag has reached it
// (acquire), then adds the rows up in rank order, so every rank gets the same bits. Two slots suffice: a rank can only
// start call g + 2 after every rank has published g + 1, which each does after reading call g.
constexpr int64_t kLine = 64;

int64_t* line(void* base, int64_t rank) {
  return reinterpret_cast<int64_t*>(static_cast<uint8_t*>(base) + rank * kLine);
}

// A process's start time (clock ticks after boot, field 22 of /proc/<pid>/stat), or -1 when it is gone, a zombie, or
// not visible from here (another PID namespace).
int64_t start_time(int64_t pid) {
  const std::string path = "/proc/" + std::to_string(pid) + "/stat";
  FILE* f = std::fopen(path.c_str(), "r");
  if (f == nullptr) return -1;
  char buf[1024];
  const size_t got = std::fread(buf, 1, sizeof(buf) - 1, f);
  std::fclose(f);
  buf[got] = 0;
  const char* p = std::strrchr(buf, ')');  // the command name before it may hold spaces and parentheses
  if (p == nullptr || p[1] != ' ' || p[2] == 'Z' || p[2] == 'X' || p[2] == 0) return -1;
  p += 2;  // field 3, the state
  for (int field = 3; field < 22; ++field) {
    p = std::strchr(p, ' ');
    if (p == nullptr) return -1;
    ++p;
  }
  return std::strtoll(p, nullptr, 10);
}

// Whether rank q's process, as it registered, still runs.
bool alive(void* base, int64_t q) {
  const int64_t* l = line(base, q);
  return l[1] > 0 && start_time(l[1]) == l[2];
}

void relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Wait for `flag` to reach `generation`: spin briefly (the ranks usually arrive within microseconds of each other),
// then yield the core, then sleep, 20 us at first and longer the longer the wait (a twentieth of it, at most 1 ms),
// so a late rank does not starve a process sharing the core and a rank waiting out rank 0's evaluation costs nothing.
// Every 20 ms of waiting it checks that the rank's process still runs (gloo notices a closed socket at once).
void wait_for(void* base, int64_t generation, int64_t rank, double timeout_s) {
  const int64_t* flag = line(base, rank);
  const auto start = std::chrono::steady_clock::now();
  double checked = 0.0;
  for (int64_t tries = 0; __atomic_load_n(flag, __ATOMIC_ACQUIRE) < generation; ++tries) {
    if (tries < 2000) {
      relax();
    } else if (tries < 4000) {
      sched_yield();
    } else {
      const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      TORCH_CHECK(waited < timeout_s, "norm-nerf sum over ranks: rank ", rank, " did not reach call ", generation,
                  " within ", timeout_s, " s (timed out; did that process stop?)");
      if (waited - checked > 0.02) {
        checked = waited;
        TORCH_CHECK(alive(base, rank), "norm-nerf sum over ranks lost its peer: rank ", rank, " (pid ",
                    line(base, rank)[1], ") exited before call ", generation);
      }
      const long nanoseconds = long(std::min(std::max(waited / 20.0, 20e-6), 1e-3) * 1e9);
      const timespec pause{0, nanoseconds};
      nanosleep(&pause, nullptr);
    }
  }
}

template <typename T>
void add_rows(T* out, const uint8_t* slot, int64_t world, int64_t capacity, int64_t n) {
  std::memcpy(out, slot, n * sizeof(T));
  for (int64_t q = 1; q < world; ++q) {
    const T* row = reinterpret_cast<const T*>(slot + q * capacity);
    for (int64_t i = 0; i < n; ++i) out[i] += row[i];
  }
}

}  // namespace

int64_t local_sum_region_bytes(int64_t world, int64_t capacity) { return world * kLine + 2 * world * capacity; }

// Write this process's pid and start time into rank `rank`'s line (before the first call).
void local_sum_register(torch::Tensor region, int64_t rank) {
  int64_t* l = line(region.data_ptr(), rank);
  l[1] = int64_t(getpid());
  l[2] = start_time(l[1]);
}

// Whether every rank's registered process runs and is visible from this one (the same machine and PID namespace).
bool local_sum_peers_alive(torch::Tensor region, int64_t world) {
  for (int64_t q = 0; q < world; ++q)
    if (!alive(region.data_ptr(), q)) return false;
  return true;
}

// Replace the contiguous float32/float64 CPU tensor `t` by its sum over the `world` ranks (see REGION).
void local_sum_(torch::Tensor t, torch::Tensor region, int64_t rank, int64_t world, int64_t capacity,
                int64_t generation, double timeout_s) {
  TORCH_CHECK(t.device().is_cpu() && t.is_contiguous(), "local_sum_: a contiguous CPU tensor is needed");
  TORCH_CHECK(t.scalar_type() == torch::kFloat64 || t.scalar_type() == torch::kFloat32,
              "local_sum_: float32 or float64 is needed, not ", t.scalar_type());
  const int64_t bytes = t.numel() * int64_t(t.element_size());
  TORCH_CHECK(bytes <= capacity, "local_sum_: ", bytes, " bytes exceed the region's ", capacity, " per rank");
  TORCH_CHECK(region.numel() * int64_t(region.element_size()) >= local_sum_region_bytes(world, capacity),
              "local_sum_: the region is smaller than ", world, " ranks need");
  TORCH_CHECK(generation > 0 && rank >= 0 && rank < world, "local_sum_: bad rank or call number");
  auto* base = static_cast<uint8_t*>(region.data_ptr());
  uint8_t* slot = base + world * kLine + (generation % 2) * world * capacity;
  std::memcpy(slot + rank * capacity, t.data_ptr(), bytes);
  __atomic_store_n(line(base, rank), generation, __ATOMIC_RELEASE);
  for (int64_t q = 0; q < world; ++q) wait_for(base, generation, q, timeout_s);
  if (t.scalar_type() == torch::kFloat64)
    add_rows(t.data_ptr<double>(), slot, world, capacity, t.numel());
  else
    add_rows(t.data_ptr<float>(), slot, world, capacity, t.numel());
}

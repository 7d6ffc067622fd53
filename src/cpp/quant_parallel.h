// Row-parallel helper shared by the quantized matvecs (quant.cpp, ternary.cpp): splits [0, rows) into n_threads
// contiguous ranges (each a multiple of `granule` rows except the last) and runs fn(begin, end) on each, the
// first range on the calling thread. std::thread per call, no pool: no state outlives the call. An exception
// thrown by fn on any thread is rethrown on the calling thread after all have joined; so is a failure to start
// a thread (std::system_error). More threads than granules are capped at one granule each.
#pragma once

#include <algorithm>
#include <cstddef>
#include <exception>
#include <thread>
#include <vector>

namespace edgellm::cpu {

template <class Fn>
void parallel_rows(std::size_t rows, int n_threads, std::size_t granule, Fn&& fn) {
  const std::size_t granules = (rows + granule - 1) / granule;
  const std::size_t n = std::max<std::size_t>(1, std::min<std::size_t>(n_threads < 1 ? 1 : n_threads, granules));
  if (n == 1) {
    fn(std::size_t{0}, rows);
    return;
  }
  std::vector<std::exception_ptr> errors(n);
  std::vector<std::thread> threads;
  threads.reserve(n - 1);
  auto range = [&](std::size_t t, std::size_t& begin, std::size_t& end) {
    begin = std::min(rows, (granules * t / n) * granule);
    end = std::min(rows, (granules * (t + 1) / n) * granule);
  };
  try {
    for (std::size_t t = 1; t < n; ++t) {
      threads.emplace_back([&, t]() {
        std::size_t begin, end;
        range(t, begin, end);
        try {
          fn(begin, end);
        } catch (...) {
          errors[t] = std::current_exception();
        }
      });
    }
  } catch (...) {  // the system refused a thread: let the started ones finish, then report
    for (std::thread& th : threads) th.join();
    throw;
  }
  std::size_t begin, end;
  range(0, begin, end);
  try {
    fn(begin, end);
  } catch (...) {
    errors[0] = std::current_exception();
  }
  for (std::thread& th : threads) th.join();
  for (const std::exception_ptr& e : errors) {
    if (e) std::rethrow_exception(e);
  }
}

}  // namespace edgellm::cpu

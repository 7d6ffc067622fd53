// edgellm_cpp_tests: exit status 0 when every family passes; prints the paths it ran and each failure.
#include <cstdio>

#include "test_main.h"

int main() {
  std::printf("edgellm_cpp_tests: paths");
  for (edgellm::SimdPath p : edgellm_test::runnable_paths()) std::printf(" %s", edgellm::simd_path_name(p));
  std::printf("\n");
  struct Family {
    const char* name;
    int (*run)();
  };
  const Family families[] = {
      {"basic_kernels", test_basic_kernels},
      {"activations", test_activations},
      {"kv_cache_arena", test_kv_cache},
      {"quant", test_quant},
      {"ternary", test_ternary},
      {"engine", test_engine},
  };
  int families_failed = 0;
  int families_passed = 0;
  for (const Family& f : families) {
    const int n = f.run();
    std::printf("%-20s %s (%d failed checks)\n", f.name, n == 0 ? "ok" : "FAILED", n);
    (n == 0 ? families_passed : families_failed) += 1;
  }
  std::printf("edgellm_cpp_tests: %d families passed, %d failed\n", families_passed, families_failed);
  return families_failed == 0 ? 0 : 1;
}

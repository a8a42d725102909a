// main() of the simulated GPU tests: GoogleTest, plus a non-zero exit when the
// CUDA simulator reported a problem (race, out-of-bounds access, barrier
// divergence, ...) during the run, even where the test did not check the
// launch that caused it.
#include <gtest/gtest.h>

#include <cstdio>

#include "cuda_sim.h"

namespace {

// Names the test during which the simulator reported something.
class ReportListener : public testing::EmptyTestEventListener {
  uint64_t before_ = 0;
  void OnTestStart(const testing::TestInfo&) override { before_ = kdsim::report_count(); }
  void OnTestEnd(const testing::TestInfo& info) override {
    if (kdsim::report_count() > before_)
      std::fprintf(stderr, "[kdsim] %llu problem(s) reported during %s.%s\n",
                   static_cast<unsigned long long>(kdsim::report_count() - before_), info.test_suite_name(),
                   info.name());
  }
};

}  // namespace

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  testing::UnitTest::GetInstance()->listeners().Append(new ReportListener);
  const int status = RUN_ALL_TESTS();
  if (kdsim::report_count() > 0) {
    std::fprintf(stderr, "[kdsim] FAILED: the CUDA simulator reported %llu problem(s); see the [kdsim] lines above\n",
                 static_cast<unsigned long long>(kdsim::report_count()));
    return 1;
  }
  return status;
}

// CPU reference argmax and correct count against hand-chosen rows, ties included.
#include <gtest/gtest.h>

#include <vector>

#include "kd/reference.h"

namespace kd::ref {
namespace {

// x: (4, 3)
const std::vector<float> kLogits = {
    0.1f,   0.7f,   0.2f,  // max at 1
    5,      5,      1,     // tie between 0 and 1: the first wins
    -3,     -2,     -2,    // tie between 1 and 2: the first wins
    -1e30f, -1e30f, 0,     // max at 2
};

TEST(ArgmaxRows, FirstMaximumWins) {
  std::vector<int32_t> out(4, -1);
  argmax_rows(kLogits.data(), out.data(), 4, 3);
  EXPECT_EQ(out, std::vector<int32_t>({1, 0, 1, 2}));
}

TEST(ArgmaxRows, AllEqualAndSingleColumn) {
  const std::vector<float> equal = {2, 2, 2, 2};
  int32_t out = -1;
  argmax_rows(equal.data(), &out, 1, 4);
  EXPECT_EQ(out, 0);
  std::vector<int32_t> column(4, -1);
  argmax_rows(kLogits.data(), column.data(), 4, 1);  // c = 1: every row's argmax is 0
  EXPECT_EQ(column, std::vector<int32_t>({0, 0, 0, 0}));
}

TEST(CountCorrect, CountsRowsWhoseArgmaxMatches) {
  EXPECT_EQ(count_correct(kLogits.data(), std::vector<int32_t>({1, 0, 1, 2}).data(), 4, 3), 4);
  EXPECT_EQ(count_correct(kLogits.data(), std::vector<int32_t>({1, 1, 2, 2}).data(), 4, 3),
            2);  // ties resolve to the first
  EXPECT_EQ(count_correct(kLogits.data(), std::vector<int32_t>({0, 2, 0, 0}).data(), 4, 3), 0);
  EXPECT_EQ(count_correct(kLogits.data(), std::vector<int32_t>({1, 0, 0, 0}).data(), 2, 3), 2);  // only b rows are read
}

}  // namespace
}  // namespace kd::ref

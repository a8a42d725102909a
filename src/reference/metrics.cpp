// CPU reference evaluation metrics: per-row argmax and the correct count.
#include <cstddef>

#include "kd/reference.h"

namespace kd::ref {
namespace {

// row: (c) -> index of the first maximum. A NaN never compares greater, so it
// only wins when it sits in column 0.
int32_t row_argmax(const float* row, int c) {
  int32_t best = 0;
  for (int j = 1; j < c; ++j)
    if (row[j] > row[best]) best = j;
  return best;
}

}  // namespace

// x: (b, c) -> out: (b)
void argmax_rows(const float* x, int32_t* out, int b, int c) {
  for (int i = 0; i < b; ++i) out[i] = row_argmax(x + size_t(i) * c, c);
}

// x: (b, c), labels: (b) -> number of rows with argmax == label
int64_t count_correct(const float* x, const int32_t* labels, int b, int c) {
  int64_t correct = 0;
  for (int i = 0; i < b; ++i) correct += row_argmax(x + size_t(i) * c, c) == labels[i];
  return correct;
}

}  // namespace kd::ref

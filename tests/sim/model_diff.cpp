// model_diff A.safetensors B.safetensors MAX_REL: compares two model files of
// the same architecture tensor by tensor and fails (exit 1, one line) when any
// tensor's ||a - b|| / ||b|| exceeds MAX_REL. Used by kdtrain_sim_test.sh to
// compare what `--device cuda` (simulated) and `--device reference` trained.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>

#include "kd/error.h"
#include "kd/model_io.h"
#include "kd/params.h"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: model_diff A.safetensors B.safetensors MAX_REL\n");
    return 2;
  }
  try {
    const kd::ModelFile a = kd::load_model_file(argv[1]), b = kd::load_model_file(argv[2]);
    const double max_rel = std::atof(argv[3]);
    if (a.arch.text != b.arch.text) kd::fail("architectures differ: " + a.arch.text + " vs " + b.arch.text);
    double worst = 0;
    for (const kd::ParamTensor& t : kd::param_tensors(a.arch)) {
      double num = 0, den = 0;
      for (int64_t i = t.offset; i < t.offset + t.count; ++i) {
        const double d = double(a.params[size_t(i)]) - b.params[size_t(i)];
        num += d * d;
        den += double(b.params[size_t(i)]) * b.params[size_t(i)];
      }
      const double rel = std::isfinite(num) && den > 0 ? std::sqrt(num / den) : INFINITY;
      if (rel > worst) worst = rel;
      if (!(rel <= max_rel)) kd::fail(t.name + ": ||a - b|| / ||b|| = " + std::to_string(rel) + " > " + argv[3]);
    }
    std::printf("model_diff: %s vs %s: largest tensor ||a - b|| / ||b|| = %.3g\n", argv[1], argv[2], worst);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "model_diff: %s\n", e.what());
    return 1;
  }
}

// Phases: names, files, shuffles, and the metrics rows of their epochs (kd/phase.h).
#include "kd/phase.h"

#include <cstdio>
#include <numeric>
#include <random>
#include <sstream>

#include "kd/error.h"
#include "kd/seed.h"

namespace kd {

Phase parse_phase(const std::string& name, const std::string& where) {
  for (const Named<Phase>& p : kPhases)
    if (name == p.name) return p.value;
  fail(where + ": unknown phase '" + name + "' (teacher, student or scratch)");
}

std::string phase_file(Phase p) {
  return p == Phase::Scratch ? "student_scratch.safetensors" : std::string(phase_name(p)) + ".safetensors";
}

namespace {
// The shuffle salt of each phase (independent of the init salts above).
uint64_t shuffle_salt(Phase p) {
  switch (p) {
    case Phase::Teacher: return 10;
    case Phase::Student: return 20;
    case Phase::Scratch: return 30;
  }
  return 30;
}
}  // namespace

std::vector<int32_t> epoch_order(int64_t n, uint64_t seed, Phase phase, int epoch) {
  std::vector<int32_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(mix_seed(seed, shuffle_salt(phase) * 100000 + uint64_t(epoch)));
  for (int64_t i = n - 1; i > 0; --i) std::swap(order[size_t(i)], order[size_t(rng() % uint64_t(i + 1))]);
  return order;
}

std::string metrics_csv_row(const EpochRecord& e) {
  // %.9g: every value reads back to the float it was computed as.
  char buf[256];
  std::snprintf(buf, sizeof buf, "%s,%d,%.9g,%.9g,%.9g,%.9g,%.9g,%.9g\n", phase_name(e.phase), e.epoch, e.train_loss,
                e.train_kl, e.val_loss, e.val_acc, e.seconds, e.samples_per_s);
  return buf;
}

std::vector<EpochRecord> parse_metrics_csv_rows(const std::string& rows) {
  std::vector<EpochRecord> out;
  std::istringstream in(rows);
  std::string line;
  while (std::getline(in, line)) {
    EpochRecord e;
    char phase[32] = {0};
    if (std::sscanf(line.c_str(), "%31[^,],%d,%lf,%lf,%lf,%lf,%lf,%lf", phase, &e.epoch, &e.train_loss, &e.train_kl,
                    &e.val_loss, &e.val_acc, &e.seconds, &e.samples_per_s) != 8)
      fail("metrics row '" + line + "' is malformed");
    e.phase = parse_phase(phase, "metrics row '" + line + "'");
    out.push_back(e);
  }
  return out;
}

}  // namespace kd

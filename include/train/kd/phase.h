// kd/phase.h: the training phases of a run, what tells them apart (their
// seeds, shuffles and files) and what each epoch records.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kd/config.h"  // Named, name_of

namespace kd {

// In the order a run trains them; a resumed run skips the phases before its checkpoint's.
enum class Phase { Teacher, Student, Scratch };  // Student: distilled; Scratch: the baseline on hard labels
inline constexpr Named<Phase> kPhases[] = {
    {"teacher", Phase::Teacher}, {"student", Phase::Student}, {"scratch", Phase::Scratch}};
inline const char* phase_name(Phase p) { return name_of(kPhases, p); }
// The phase named `name`; throws naming `where` when there is none.
Phase parse_phase(const std::string& name, const std::string& where);
// The file a finished phase's model is saved as in the output directory.
std::string phase_file(Phase p);

// Salts that make every phase draw its own init from the run's seed. The
// scratch baseline shares the distilled student's init so that the two
// differ only in their loss.
constexpr uint64_t kTeacherSalt = 1, kStudentSalt = 2;

// A fresh permutation of [0, n) for (seed, phase, epoch): Fisher-Yates over
// mt19937_64, written out so the order does not depend on the standard library.
std::vector<int32_t> epoch_order(int64_t n, uint64_t seed, Phase phase, int epoch);

struct EpochRecord {
  Phase phase = Phase::Teacher;
  int epoch = 0;          // 1-based
  double train_loss = 0;  // mean over the epoch's batches of the training loss
  double train_kl = 0;    // mean KL term (distillation only; 0 otherwise)
  double val_loss = 0;    // mean cross-entropy on the validation split
  double val_acc = 0;     // fraction in [0, 1]
  double seconds = 0;     // wall time of the epoch's training steps
  double samples_per_s = 0;
};

// One metrics.csv row (newline-terminated), and the inverse for a block of
// rows without the header (training checkpoints keep their history this way).
std::string metrics_csv_row(const EpochRecord& e);
std::vector<EpochRecord> parse_metrics_csv_rows(const std::string& rows);

}  // namespace kd

// Learning-rate schedules (kd/lr_schedule.h): argument checks around the
// shared lr_factor, and the names the CLI and the report use.
#include "kd/lr_schedule.h"

#include <cmath>
#include <cstdio>
#include <string>

#include "kd/error.h"

namespace kd {

const char* lr_schedule_name(LrScheduleKind kind) {
  switch (kind) {
    case LrScheduleKind::Constant: return "constant";
    case LrScheduleKind::Cosine: return "cosine";
  }
  return "?";
}

LrScheduleKind parse_lr_schedule(const std::string& text, const char* flag) {
  for (const LrScheduleKind kind : {LrScheduleKind::Constant, LrScheduleKind::Cosine}) {
    if (text == lr_schedule_name(kind)) return kind;
  }
  fail(std::string(flag) + ": unknown learning-rate schedule '" + text + "'; use constant or cosine");
}

double lr_at(int64_t step, int64_t steps_per_epoch, int total_epochs, double base_lr, double warmup_epochs,
             LrScheduleKind kind) {
  const std::string who = "lr_at: ";
  if (steps_per_epoch < 1) fail(who + "steps_per_epoch must be >= 1, got " + std::to_string(steps_per_epoch));
  if (total_epochs < 1) fail(who + "total_epochs must be >= 1, got " + std::to_string(total_epochs));
  if (!(std::isfinite(base_lr) && base_lr > 0)) {
    fail(who + "base_lr must be finite and > 0, got " + std::to_string(base_lr));
  }
  if (!(warmup_epochs >= 0 && warmup_epochs <= total_epochs)) {
    fail(who + "warmup_epochs must be in [0, total_epochs = " + std::to_string(total_epochs) + "], got " +
         std::to_string(warmup_epochs));
  }
  const int64_t total = steps_per_epoch * total_epochs;
  if (step < 1 || step > total) {
    fail(who + "step must be in [1, " + std::to_string(total) + "] (1-based, " + std::to_string(steps_per_epoch) +
         " per epoch for " + std::to_string(total_epochs) + " epochs), got " + std::to_string(step));
  }
  // <= total, as warmup_epochs <= total_epochs.
  const int64_t warmup = std::llround(warmup_epochs * double(steps_per_epoch));
  return base_lr * lr_factor(step, warmup, total, kind);
}

LrSchedule make_lr_schedule(LrScheduleKind kind, double warmup_epochs, int64_t steps_per_epoch, int epochs,
                            const char* epochs_flag) {
  if (steps_per_epoch < 1)
    fail("make_lr_schedule: steps_per_epoch must be >= 1, got " + std::to_string(steps_per_epoch));
  char warmup[32];
  std::snprintf(warmup, sizeof warmup, "%g", warmup_epochs);
  if (!(warmup_epochs >= 0)) fail(std::string("--warmup-epochs: must be >= 0, got ") + warmup);
  if (warmup_epochs > epochs) {
    fail(std::string("--warmup-epochs ") + warmup + " is longer than " + epochs_flag + " " + std::to_string(epochs) +
         "; lower --warmup-epochs or raise " + epochs_flag);
  }
  const int64_t total = steps_per_epoch * epochs;
  return LrSchedule{kind, std::llround(warmup_epochs * double(steps_per_epoch)), total};
}

}  // namespace kd

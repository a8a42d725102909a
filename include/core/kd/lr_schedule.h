// kd/lr_schedule.h: the learning rate of every optimiser update as a pure
// function of the update's number (SPEC section 2, --recipe patient: cosine
// decay with warm-up), the same on every engine.
//
// With u the 1-based number of the update (the `step` that adam_step and
// sgd_momentum_step take), T = steps_per_epoch * total_epochs updates in all and
// W = round(warmup_epochs * steps_per_epoch) warm-up updates (halves away from 0):
//   u <= W:  lr = base_lr * u / W                                    (linear warm-up)
//   u >  W:  constant:  lr = base_lr
//            cosine:    lr = base_lr * (1 + cos(pi * (u - W) / (T - W))) / 2
//                           = base_lr * cos(pi/2 * (u - W) / (T - W))^2   (as computed)
// The warm-up starts at base_lr / W (~0), not at 0, so no update is wasted; it
// reaches base_lr at u = W, where the cosine starts, continuously, and the cosine
// reaches 0 at the final update u = T (~4e-33 base_lr: pi/2 is rounded). W = 0: no warm-up (constant is then
// base_lr at every update, bit for bit).
//
// In PyTorch this is LambdaLR(optimizer, lambda k: lr_at(k + 1, ...) / base_lr)
// with scheduler.step() after every optimizer.step(): LambdaLR evaluates its
// lambda at k = the number of scheduler steps taken so far, 0 for the first update.
#pragma once

#include <cstdint>
#include <string>

#include "kd/exact_math.h"
#include "kd/host_device.h"

namespace kd {

enum class LrScheduleKind { Constant, Cosine };

// "constant" / "cosine".
const char* lr_schedule_name(LrScheduleKind kind);
// The kind named `text`; kd::Error naming `flag` and the accepted names otherwise.
LrScheduleKind parse_lr_schedule(const std::string& text, const char* flag);

// The learning rate of update `step` (1-based, 1 <= step <= steps_per_epoch *
// total_epochs), by the formula above. steps_per_epoch counts every update of an
// epoch, the last partial batch included (ceil(train size / batch)).
// Throws kd::Error naming the argument for steps_per_epoch < 1, total_epochs < 1,
// base_lr not finite and > 0, warmup_epochs outside [0, total_epochs], or step
// out of range.
double lr_at(int64_t step, int64_t steps_per_epoch, int total_epochs, double base_lr, double warmup_epochs,
             LrScheduleKind kind);

// The factor lr / base_lr of update `step` for W = warmup_steps and T =
// total_steps (0 <= W <= T, 1 <= step <= T: unchecked; lr_at checks). Host and
// device compute the same bits (kd/exact_math.h's cos, IEEE division), so a
// CUDA kernel can derive the rate from its device step counter inside a
// replayed graph and agree with the CPU engines exactly.
KD_HOST_DEVICE double lr_factor(int64_t step, int64_t warmup_steps, int64_t total_steps, LrScheduleKind kind) {
  if (step <= warmup_steps) return double(step) / double(warmup_steps);
  if (kind == LrScheduleKind::Constant) return 1.0;
  // (1 + cos(pi p)) / 2 evaluated as cos(pi p / 2)^2: never negative, and the
  // series works on [0, pi/2], where its truncation error is ~1e-19 (at pi it
  // is 1e-12, enough to make the final rate slightly negative).
  constexpr double kHalfPi = 3.14159265358979323846 / 2;
  const double progress = double(step - warmup_steps) / double(total_steps - warmup_steps);  // (0, 1]
  double sin_x, cos_x;
  exact::sin_cos(exact::mul_rn(kHalfPi, progress), sin_x, cos_x);
  return exact::mul_rn(cos_x, cos_x);
}

// One training phase's schedule in updates, fixed when its model is created
// (kd/engine.h TrainSettings::lr_schedule). total_steps = 0: no schedule (the
// default; every update at the base rate, as before schedules existed).
struct LrSchedule {
  LrScheduleKind kind = LrScheduleKind::Constant;
  int64_t warmup_steps = 0;  // W
  int64_t total_steps = 0;   // T
};

// The schedule of a phase of `epochs` epochs of `steps_per_epoch` updates with
// `warmup_epochs` of warm-up (W rounded as lr_at rounds it). Throws kd::Error
// naming --warmup-epochs and `epochs_flag` when the warm-up is longer than the
// phase, and naming the argument for steps_per_epoch < 1 or warmup_epochs < 0.
LrSchedule make_lr_schedule(LrScheduleKind kind, double warmup_epochs, int64_t steps_per_epoch, int epochs,
                            const char* epochs_flag);

// The rate of update `step` (1-based) for a base rate `base_lr`:
// float(base_lr * lr_factor) in double, so no schedule (or constant without
// warm-up) gives base_lr bit for bit. Every engine's optimiser takes its rate
// from here (the CUDA kernels from the device step counter), so the rate is a
// pure function of the checkpointed step and a resumed run gets the same bits.
// Steps past T (a phase trained beyond its schedule) keep the rate of T.
KD_HOST_DEVICE float scheduled_lr(float base_lr, int64_t step, const LrSchedule& s) {
  if (s.total_steps == 0) return base_lr;
  const int64_t u = step < s.total_steps ? step : s.total_steps;
  return float(exact::mul_rn(double(base_lr), lr_factor(u, s.warmup_steps, s.total_steps, s.kind)));
}

}  // namespace kd

// Learning-rate schedules (kd/lr_schedule.h) against values computed by hand
// from the header's formula, its edges (warm-up start and end, the final
// update), monotonicity, and the argument checks.
#include <gtest/gtest.h>

#include <string>

#include "kd/error.h"
#include "kd/lr_schedule.h"

namespace kd {
namespace {

// Hand values are written to 8 significant digits; the computation is double
// with a cosine accurate to ~1e-15 (kd/exact_math.h), so 1e-8 relative to base_lr
// (1e-11 absolute at base_lr 1e-3) is the precision of the decimals, not of the code.
constexpr double kBase = 1e-3, kTol = 1e-11;

// 10 updates per epoch, 5 epochs (T = 50), 1 warm-up epoch (W = 10).
double cosine(int64_t step) { return lr_at(step, 10, 5, kBase, 1.0, LrScheduleKind::Cosine); }
double constant(int64_t step) { return lr_at(step, 10, 5, kBase, 1.0, LrScheduleKind::Constant); }

TEST(LrSchedule, CosineWithWarmupByHand) {
  EXPECT_NEAR(cosine(1), 1e-4, kTol);  // u / W = 1/10: starts near 0, not at 0
  EXPECT_NEAR(cosine(5), 5e-4, kTol);
  EXPECT_EQ(cosine(10), kBase);  // u = W: 10/10 = 1 exactly, the peak
  // u = 11: (1 + cos(pi * 1/40)) / 2 = (1 + 0.99691733) / 2 = 0.99845867
  EXPECT_NEAR(cosine(11), 9.9845867e-4, kTol);
  // u = 30: progress 20/40 = 1/2, cos(pi/2) = 0 -> half the base rate
  EXPECT_NEAR(cosine(30), 5e-4, kTol);
  // u = 40: progress 3/4, (1 + cos(3 pi / 4)) / 2 = (1 - 0.70710678) / 2 = 0.14644661
  EXPECT_NEAR(cosine(40), 1.4644661e-4, kTol);
  // u = T = 50: cos(pi) = -1 -> 0 at the final update; computed as cos(pi/2)^2 with pi/2
  // rounded to double, (6.1e-17)^2 = 3.7e-33 of base_lr, never below 0.
  EXPECT_GE(cosine(50), 0.0);
  EXPECT_LT(cosine(50), 1e-35);
}

TEST(LrSchedule, ConstantWithAndWithoutWarmup) {
  EXPECT_NEAR(constant(3), 3e-4, kTol);  // the same linear warm-up
  EXPECT_EQ(constant(10), kBase);
  EXPECT_EQ(constant(11), kBase);
  EXPECT_EQ(constant(50), kBase);
  // No warm-up: every update gets base_lr bit for bit (today's behaviour).
  for (int64_t step = 1; step <= 50; ++step) {
    EXPECT_EQ(lr_at(step, 10, 5, kBase, 0.0, LrScheduleKind::Constant), kBase) << step;
  }
}

TEST(LrSchedule, CosineWithoutWarmupAndFractionalWarmup) {
  // W = 0: u = 1 is already on the cosine, (1 + cos(pi/50)) / 2 = (1 + 0.99802673) / 2 = 0.99901336.
  EXPECT_NEAR(lr_at(1, 10, 5, kBase, 0.0, LrScheduleKind::Cosine), 9.9901336e-4, kTol);
  // 0.25 epochs of 10 updates is 2.5 -> W = 3 (halves round away from zero).
  EXPECT_NEAR(lr_at(1, 10, 5, kBase, 0.25, LrScheduleKind::Cosine), kBase / 3, kTol);
  EXPECT_EQ(lr_at(3, 10, 5, kBase, 0.25, LrScheduleKind::Cosine), kBase);
  // u = 4: progress 1/47, (1 + cos(pi/47)) / 2 = 0.99888343
  EXPECT_NEAR(lr_at(4, 10, 5, kBase, 0.25, LrScheduleKind::Cosine), 9.9888343e-4, kTol);
  // The whole run as warm-up (W = T): linear to the end, no cosine.
  EXPECT_NEAR(lr_at(25, 10, 5, kBase, 5.0, LrScheduleKind::Cosine), 5e-4, kTol);
  EXPECT_EQ(lr_at(50, 10, 5, kBase, 5.0, LrScheduleKind::Cosine), kBase);
}

TEST(LrSchedule, RisesThroughWarmupThenFallsToZeroOnTheRecipeShape) {
  // 55,000 training images at batch 64: 860 updates per epoch (the last one partial),
  // 20 epochs, 1 warm-up epoch.
  const int64_t per_epoch = 860, total = per_epoch * 20;
  double previous = 0;
  for (int64_t step = 1; step <= total; ++step) {
    const double lr = lr_at(step, per_epoch, 20, kBase, 1.0, LrScheduleKind::Cosine);
    if (step <= per_epoch) {
      ASSERT_GT(lr, previous) << step;
    } else {
      ASSERT_LE(lr, previous) << step;  // non-increasing; equal only where the cosine is flat
    }
    ASSERT_GE(lr, 0.0) << step;
    ASSERT_LE(lr, kBase) << step;
    previous = lr;
  }
  EXPECT_LT(previous, 1e-35);
}

TEST(LrSchedule, FactorIsTheRateOverTheBase) {
  // lr_factor is what a device kernel would evaluate; lr_at is base_lr times it.
  for (const int64_t step : {1, 9, 10, 11, 27, 50}) {
    EXPECT_EQ(lr_at(step, 10, 5, 0.5, 1.0, LrScheduleKind::Cosine),
              0.5 * lr_factor(step, 10, 50, LrScheduleKind::Cosine));
  }
}

TEST(LrSchedule, NamesRoundTripAndBadArgumentsAreNamed) {
  for (const LrScheduleKind kind : {LrScheduleKind::Constant, LrScheduleKind::Cosine}) {
    EXPECT_EQ(parse_lr_schedule(lr_schedule_name(kind), "--lr-schedule"), kind);
  }
  const auto message = [](auto call) {
    try {
      call();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(message([] { parse_lr_schedule("linear", "--lr-schedule"); }),
            "--lr-schedule: unknown learning-rate schedule 'linear'; use constant or cosine");
  const auto has = [](const std::string& text, const char* part) { return text.find(part) != std::string::npos; };
  EXPECT_TRUE(has(message([] { lr_at(0, 10, 5, kBase, 1, LrScheduleKind::Cosine); }), "step must be in [1, 50]"));
  EXPECT_TRUE(has(message([] { lr_at(51, 10, 5, kBase, 1, LrScheduleKind::Cosine); }), "step must be in [1, 50]"));
  EXPECT_TRUE(has(message([] { lr_at(1, 0, 5, kBase, 1, LrScheduleKind::Cosine); }), "steps_per_epoch"));
  EXPECT_TRUE(has(message([] { lr_at(1, 10, 0, kBase, 0, LrScheduleKind::Cosine); }), "total_epochs"));
  EXPECT_TRUE(has(message([] { lr_at(1, 10, 5, 0.0, 1, LrScheduleKind::Cosine); }), "base_lr"));
  EXPECT_TRUE(has(message([] { lr_at(1, 10, 5, kBase, 6, LrScheduleKind::Cosine); }), "warmup_epochs"));
  EXPECT_TRUE(has(message([] { lr_at(1, 10, 5, kBase, -1, LrScheduleKind::Cosine); }), "warmup_epochs"));
}

}  // namespace
}  // namespace kd

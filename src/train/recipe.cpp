// Named recipes (kd/config.h): the values --recipe sets where no flag did,
// and the resolved recipe as one line for the report.
#include <cstdio>
#include <string>

#include "kd/config.h"

namespace kd {
namespace {

// The patient recipe (SPEC section 2; issue #21, after Beyer et al. 2022: a
// patient, consistent teacher). Its epoch budget keeps a whole run near 30
// minutes on a 2-core AVX-512 CPU, where an online-target student epoch costs
// a teacher forward per step (bench/RESULTS.md has the measured run). The
// weight decay is torch.optim.AdamW's default; one warm-up epoch steadies
// Adam's first moments before the cosine.
Options patient() {
  Options p;
  p.epochs_teacher = 20;
  p.epochs_student = 40;
  p.lr_schedule = LrScheduleKind::Cosine;
  p.warmup_epochs = 1;
  p.weight_decay = 0.01;
  p.augment = true;
  p.soft_targets = SoftTargets::Online;
  return p;
}

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

}  // namespace

void apply_recipe(Options& o, const std::function<bool(const char* flag)>& given) {
  const Options r = o.recipe == Recipe::Patient ? patient() : Options{};
  const auto take = [&](const char* flag, auto& field, const auto& value) {
    if (!given(flag)) field = value;
  };
  take("--epochs-teacher", o.epochs_teacher, r.epochs_teacher);
  take("--epochs-student", o.epochs_student, r.epochs_student);
  take("--lr-schedule", o.lr_schedule, r.lr_schedule);
  take("--warmup-epochs", o.warmup_epochs, r.warmup_epochs);
  take("--weight-decay", o.weight_decay, r.weight_decay);
  take("--augment", o.augment, r.augment);
  take("--soft-targets", o.soft_targets, r.soft_targets);
}

std::string recipe_text(const Options& o, bool students) {
  std::string augment = "off";
  if (o.augment)
    augment = "shift " + number(o.shift) + " px, rotate " + number(o.rotate) + " deg, scale " + number(o.scale.lo) +
              "-" + number(o.scale.hi);
  const auto epochs = [](double n) { return number(n) + (n == 1 ? " epoch" : " epochs"); };
  return std::string("recipe ") + name_of(kRecipes, o.recipe) + ": teacher " + epochs(o.epochs_teacher) +
         (students ? ", student and baseline " + epochs(o.epochs_student) : std::string()) + "; " +
         name_of(kOptimizers, o.optimizer) + " lr " + number(o.lr) + ", " + name_of(kLrSchedules, o.lr_schedule) +
         " schedule, " + epochs(o.warmup_epochs) + " of warm-up, weight decay " + number(o.weight_decay) +
         "; augmentation " + augment +
         (students ? std::string("; soft targets ") + name_of(kSoftTargets, o.soft_targets) + ", mixup " +
                         (o.mixup > 0 ? number(o.mixup) : std::string("off")) + "; hint " +
                         (o.hint == HintKind::Off ? std::string("off")
                                                  : name_of(kHintKinds, o.hint) + (" weight " + number(o.hint_weight)))
                   : std::string());
}

}  // namespace kd

// summary.json (kd/report.h): the configuration, the data, every model's
// curve, test result and latencies, and the comparisons between the models.
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "kd/json_text.h"
#include "kd/report.h"
#include "report_parts.h"

namespace kd {
namespace {

// Every Options field under the name of the flag that sets it.
json config_json(const Options& o) {
  return json{
      {"command", command_name(o.command)},
      {"recipe", name_of(kRecipes, o.recipe)},
      {"resolved-recipe", recipe_text(o, o.command != Command::TrainTeacher)},
      {"data", o.data_dir},
      {"device", device_name(o.device)},
      {"out", o.out_dir},
      {"seed", o.seed},
      {"batch-size", o.batch_size},
      {"epochs-teacher", o.epochs_teacher},
      {"epochs-student", o.epochs_student},
      {"lr", json_number(o.lr)},
      {"optimizer", name_of(kOptimizers, o.optimizer)},
      {"momentum", json_number(o.momentum)},
      {"lr-schedule", name_of(kLrSchedules, o.lr_schedule)},
      {"warmup-epochs", json_number(o.warmup_epochs)},
      {"weight-decay", json_number(o.weight_decay)},
      {"augment", o.augment},
      {"shift", json_number(o.shift)},
      {"rotate", json_number(o.rotate)},
      {"scale", json{json_number(o.scale.lo), json_number(o.scale.hi)}},
      {"soft-targets", name_of(kSoftTargets, o.soft_targets)},
      {"hint", name_of(kHintKinds, o.hint)},
      {"hint-weight", json_number(o.hint_weight)},
      {"mixup", json_number(o.mixup)},
      {"temperature", json_number(o.temperature)},
      {"alpha", json_number(o.alpha)},
      {"teacher-arch", o.teacher_arch},
      {"student-arch", o.student_arch},
      {"normalize", o.normalize},
      {"channels-last", o.channels_last},
      {"image-size", o.image_size.h ? std::to_string(o.image_size.h) + "x" + std::to_string(o.image_size.w) : ""},
      {"val-size", o.val_size},
      {"train-limit", o.train_limit},
      {"test-limit", o.test_limit},
      {"no-baseline", o.no_baseline},
      {"deterministic", o.deterministic},
      {"quiet", o.quiet},
      {"dense-impl", name_of(kDenseImpls, o.dense_impl)},
      {"select", select_rule_name(o.select)},
      {"teacher", o.teacher_path},
      {"model", o.model_path},
      {"onnx", o.onnx_path},
      {"no-ort", o.no_ort},
      {"resume", o.resume_dir},
      {"eval-batch-size", o.eval_batch_size},
      {"latency-batches", o.latency_batches}};
}

json epoch_json(const EpochRecord& e) {
  return json{{"phase", e.phase},
              {"epoch", e.epoch},
              {"train_loss", json_number(e.train_loss)},
              {"train_kl", json_number(e.train_kl)},
              {"val_loss", json_number(e.val_loss)},
              {"val_acc", json_number(e.val_acc)},
              {"seconds", json_number(e.seconds)},
              {"samples_per_s", json_number(e.samples_per_s)}};
}

json latency_json(const LatencyRecord& l) {
  return json{{"batch", l.batch},
              {"median_ms", json_number(l.median_ms)},
              {"p90_ms", json_number(l.p90_ms)},
              {"repeats", l.repeats},
              {"samples_per_s", json_number(l.samples_per_s)}};
}

// The exported model under ONNX Runtime: null when not asked (--no-ort), the
// reason when it could not be measured, else version, threads and timings,
// each with "vs_kdtrain": its median over kdtrain's at that batch (above 1:
// kdtrain is faster; null where kdtrain was not timed at it).
json ort_json(const OrtLatency& o, const std::vector<LatencyRecord>& kdtrain) {
  if (!o.measured) return o.note.empty() ? json(nullptr) : json{{"note", o.note}};
  json latency = json::array();
  for (const LatencyRecord& l : o.latency) {
    json entry = latency_json(l);
    const LatencyRecord* k = latency_at(kdtrain, l.batch);
    entry["vs_kdtrain"] = k && k->median_ms > 0 ? json_number(l.median_ms / k->median_ms) : json(nullptr);
    latency.push_back(entry);
  }
  return json{{"version", o.version}, {"device", "CPU"}, {"threads", o.threads}, {"via", o.via}, {"latency", latency}};
}

json model_json(const ModelReport& m) {
  json curve = json::array(), latency = json::array();
  for (const EpochRecord& e : m.curve) curve.push_back(epoch_json(e));
  for (const LatencyRecord& l : m.latency) latency.push_back(latency_json(l));
  return json{{"role", phase_name(m.role)},
              {"arch", m.arch},
              {"params", m.params},
              {"bytes", m.bytes},
              {"selection", m.selection.empty() ? json(nullptr) : json(m.selection)},
              {"selected_epoch", m.selected_epoch > 0 ? json(m.selected_epoch) : json(nullptr)},
              {"test_acc", json_number(m.test_acc)},
              {"test_errors", m.test_errors},
              {"test_loss", json_number(m.test_loss)},
              {"last_epoch_test_acc", json_number(m.last_epoch_test_acc)},
              {"train_seconds", json_number(m.train_seconds)},
              {"curve", curve},
              {"latency", latency},
              {"onnxruntime", ort_json(m.ort, m.latency)}};
}

json comparisons_json(const Comparisons& c) {
  json out = json::object();
  if (c.student_vs_teacher) {
    const auto speedups_json = [](const std::vector<Comparisons::Speedup>& list) {
      json out = json::array();
      for (const Comparisons::Speedup& s : list)
        out.push_back(json{{"batch", s.batch},
                           {"teacher_median_ms", json_number(s.teacher_ms)},
                           {"student_median_ms", json_number(s.student_ms)},
                           {"speedup", json_number(s.speedup)}});
      return out;
    };
    out["student_vs_teacher"] = json{{"speedup", speedups_json(c.speedups)},
                                     {"speedup_onnxruntime", speedups_json(c.ort_speedups)},
                                     {"size_ratio", json_number(c.size_ratio)},
                                     {"accuracy_gap", json_number(c.accuracy_gap)}};
  }
  if (c.student_vs_scratch) out["distillation_gain"] = json_number(c.distillation_gain);
  return out;
}

}  // namespace

std::string summary_json(const RunReport& r) {
  json models = json::array(), phases = json::array();
  for (const ModelReport& m : r.models) models.push_back(model_json(m));
  for (const PhaseTime& p : r.phases) phases.push_back(json{{"phase", p.phase}, {"seconds", json_number(p.seconds)}});
  const json summary{{"started_at", r.started_at},
                     {"total_seconds", json_number(r.total_seconds)},
                     {"config", config_json(r.options)},
                     {"device", r.device},
                     {"versions", r.versions},
                     {"batch_sizes_used", json{{"batch-size", r.batch_size_used},
                                               {"eval-batch-size", r.eval_batch_size_used},
                                               {"latency-batches", r.latency_batches_used}}},
                     {"data", json{{"dir", r.data_dir},
                                   {"format", r.data_format},
                                   {"input", r.input},
                                   {"class_names", r.class_names},
                                   {"normalize", r.normalization},
                                   {"train", r.train_n},
                                   {"val", r.val_n},
                                   {"test", r.test_n},
                                   {"classes", r.num_classes}}},
                     {"selection", selection_rule(r)},
                     {"models", models},
                     {"comparisons", comparisons_json(compare_models(r))},
                     {"phases", phases}};
  // replace: a path or device string with invalid UTF-8 must not make the report unwritable.
  return summary.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

}  // namespace kd

// kdtrain sweep's grid, aggregation, Pareto front, recommendation, resume
// state and output files (see kd/sweep.h).
#include "kd/sweep.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "kd/safetensors.h"
#include "kd/error.h"
#include "kd/json_text.h"

namespace fs = std::filesystem;

namespace kd {
namespace {

// An untimed latency (0) is null, as a non-finite number is (json_number).
json measured(double v) { return v > 0 && std::isfinite(v) ? json(v) : json(nullptr); }

bool distilled(RunKind kind) { return kind == RunKind::Distilled; }

// The shortest text that reads back as exactly `v` ("0.9", not "0.90000000000000002").
std::string shortest_text(double v) {
  for (int digits = 6; digits < 17; ++digits) {
    const std::string text = format(("%." + std::to_string(digits) + "g").c_str(), v);
    if (std::strtod(text.c_str(), nullptr) == v) return text;
  }
  return format("%.17g", v);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n == 0 ? 0 : n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// "MLP 256-128" for a flatten/dense/relu stack (its hidden widths), "linear"
// for a single dense layer, else the arch string itself.
std::string arch_label(const std::string& arch) {
  std::vector<std::string> widths;
  size_t start = 0;
  bool mlp = true;
  for (;;) {
    const size_t comma = arch.find(',', start);
    const std::string token = arch.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (token.rfind("dense:", 0) == 0) widths.push_back(token.substr(6));
    else if (token != "flatten" && token != "relu") mlp = false;
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  if (!mlp || widths.empty()) return arch;
  if (widths.size() == 1) return "linear";
  std::string label = "MLP ";
  for (size_t i = 0; i + 1 < widths.size(); ++i) label += (i ? "-" : "") + widths[i];
  return label;
}

std::string config_label(const SweepConfig& c) {
  return arch_label(c.arch) +
         (distilled(c.kind) ? format(" T%g", c.temperature) + format(" a%g", c.alpha) : " scratch");
}

// The bulk latency batch of the sweep (1024 capped at the test split), or 0.
int bulk_batch(const SweepResult& r) {
  for (const SweepConfig& c : r.configs)
    if (c.large_batch > 0) return c.large_batch;
  return 0;
}

// The teacher's median latency at `batch` in microseconds, on the run's
// device or (ort) under ONNX Runtime; 0 when not measured.
double teacher_latency_us(const SweepResult& r, int batch, bool ort = false) {
  if (r.run.models.empty() || batch <= 0) return 0;
  const ModelReport& t = r.run.models.front();
  for (const LatencyRecord& l : ort ? t.ort.latency : t.latency)
    if (l.batch == batch) return 1000 * l.median_ms;
  return 0;
}

bool any_ort(const SweepResult& r) {
  for (const SweepConfig& c : r.configs)
    if (c.ort_b1_us > 0) return true;
  return teacher_latency_us(r, 1, true) > 0;
}

json run_json(const SweepRun& r) {
  return json{{"kind", run_kind_name(r.kind)},
              {"arch", r.arch},
              {"temperature", json_number(r.temperature)},
              {"alpha", json_number(r.alpha)},
              {"seed_index", r.seed_index},
              {"seed", r.seed},
              {"params", r.params},
              {"bytes", r.bytes},
              {"selected_epoch", r.selected_epoch},
              {"val_acc", json_number(r.val_acc)},
              {"test_acc", json_number(r.test_acc)},
              {"train_seconds", json_number(r.train_seconds)},
              {"latency_b1_ms", measured(r.latency_b1_ms)},
              {"latency_bulk_ms", measured(r.latency_large_ms)},
              {"bulk_batch", r.large_batch},
              {"ort_latency_b1_ms", measured(r.ort_b1_ms)},
              {"ort_latency_bulk_ms", measured(r.ort_large_ms)},
              {"model_file", r.model_file}};
}

SweepRun run_from_json(const json& j) {
  SweepRun r;
  const std::string kind = j.at("kind").get<std::string>();
  bool known = false;
  for (const Named<RunKind>& k : kRunKinds)
    if (kind == k.name) r.kind = k.value, known = true;
  if (!known) throw std::runtime_error("unknown kind '" + kind + "'");
  r.arch = j.at("arch").get<std::string>();
  r.temperature = j.at("temperature").get<double>();
  r.alpha = j.at("alpha").get<double>();
  r.seed_index = j.at("seed_index").get<int>();
  r.seed = j.at("seed").get<uint64_t>();
  r.params = j.at("params").get<int64_t>();
  r.bytes = j.at("bytes").get<int64_t>();
  r.selected_epoch = j.at("selected_epoch").get<int>();
  r.val_acc = j.at("val_acc").get<double>();
  r.test_acc = j.at("test_acc").get<double>();
  r.train_seconds = j.at("train_seconds").get<double>();
  const auto ms = [&](const char* key) { return j.at(key).is_null() ? 0.0 : j.at(key).get<double>(); };
  r.latency_b1_ms = ms("latency_b1_ms");
  r.latency_large_ms = ms("latency_bulk_ms");
  r.large_batch = j.at("bulk_batch").get<int>();
  r.ort_b1_ms = ms("ort_latency_b1_ms");
  r.ort_large_ms = ms("ort_latency_bulk_ms");
  r.model_file = j.at("model_file").get<std::string>();
  return r;
}

// ------------------------------------------------------------ pareto.png
// pareto.dat: one row per student configuration and the teacher:
// group (0 distilled, 1 scratch, 2 teacher), batch-1 latency (us), accuracy
// (%), marker size (by parameters). pareto_front.dat: the front in latency
// order with a label per point.
std::string pareto_data(const SweepResult& r, std::string& front) {
  int64_t min_params = INT64_MAX;
  for (const SweepConfig& c : r.configs) min_params = std::min(min_params, c.params);
  auto size = [&](int64_t params) {
    return 0.8 + 1.0 * std::log10(double(params) / double(std::max<int64_t>(min_params, 1)));
  };
  std::string out = "# group(0 distilled, 1 scratch, 2 teacher) latency_b1_us accuracy_percent point_size\n";
  std::vector<const SweepConfig*> on_front;
  for (const SweepConfig& c : r.configs) {
    if (!(c.latency_b1_us > 0)) continue;
    out += std::string(distilled(c.kind) ? "0" : "1") + format(" %.9g", c.latency_b1_us) +
           format(" %.9g", 100 * c.acc_mean) + format(" %.3f\n", size(c.params));
    if (c.pareto) on_front.push_back(&c);
  }
  const double teacher_us = teacher_latency_us(r, 1);
  if (teacher_us > 0)
    out += "2" + format(" %.9g", teacher_us) + format(" %.9g", 100 * r.run.models.front().test_acc) + " 2.5\n";
  std::sort(on_front.begin(), on_front.end(), [](const SweepConfig* a, const SweepConfig* b) {
    return a->latency_b1_us < b->latency_b1_us || (a->latency_b1_us == b->latency_b1_us && a->acc_mean < b->acc_mean);
  });
  front = "# latency_b1_us accuracy_percent label\n";
  for (const SweepConfig* c : on_front) {
    std::string label = config_label(*c);
    std::replace(label.begin(), label.end(), '"', '\'');
    front += format("%.9g", c->latency_b1_us) + format(" %.9g", 100 * c->acc_mean) + " \"" + label + "\"\n";
  }
  return out;
}

std::string pareto_script(const SweepResult& r) {
  const std::string title = "kdtrain sweep: test accuracy vs batch-1 latency (" + r.run.device + ")";
  return "# Written by kdtrain sweep; redraw with: gnuplot pareto.gp (in this directory)\n"
         "if (!exists('pareto_png')) pareto_png = 'pareto.png'\n"
         "term = strstrt(GPVAL_TERMINALS, 'pngcairo') > 0 ? 'pngcairo' : 'png'\n"
         "set terminal @term size 1100,720 noenhanced\n"
         "set output pareto_png\n"
         "set title " +
         gnuplot_string(title) +
         "\n"
         "set logscale x\nset grid\nset key bottom right box opaque\n"
         "set offsets graph 0.05, graph 0.05, graph 0.05, graph 0.05\n"
         "set xlabel 'batch-1 forward latency (microseconds, log scale)'\n"
         "set ylabel 'test accuracy (%), mean over seeds'\n"
         "plot 'pareto.dat' using ($1 == 0 ? $2 : NaN):3:4 with points pt 7 ps variable lc rgb '#1f77b4' "
         "title 'distilled (marker size: parameters)', \\\n"
         "  'pareto.dat' using ($1 == 1 ? $2 : NaN):3:4 with points pt 7 ps variable lc rgb '#ff7f0e' "
         "title 'from scratch', \\\n"
         "  'pareto_front.dat' using 1:2 with steps lw 2 lc rgb '#333333' title 'Pareto front', \\\n"
         "  'pareto_front.dat' using 1:2 with points pt 6 ps 2.2 lw 1.5 lc rgb '#333333' notitle, \\\n"
         "  'pareto_front.dat' using 1:2:3 with labels left offset 1,-0.6 font ',9' notitle, \\\n"
         "  'pareto.dat' using ($1 == 2 ? $2 : NaN):3 with points pt 5 ps 2.5 lc rgb '#d62728' title 'teacher'\n"
         "set output\n";
}

}  // namespace

std::vector<std::string> default_sweep_archs(int num_classes) {
  const std::string out = "dense:" + std::to_string(num_classes);
  return {"flatten,dense:32,relu," + out, "flatten,dense:128,relu," + out,
          "flatten,dense:256,relu,dense:128,relu," + out, "flatten,dense:800,relu," + out,
          "flatten,dense:800,relu,dense:800,relu," + out};
}

std::string sweep_run_text(const SweepRun& r) { return run_json(r).dump(); }

SweepRun parse_sweep_run(const std::string& text) { return run_from_json(json::parse(text)); }

std::string sweep_run_key(const SweepRun& r) {
  return std::string(run_kind_name(r.kind)) + " " + r.arch + " T=" + shortest_text(r.temperature) +
         " alpha=" + shortest_text(r.alpha) + " seed=" + std::to_string(r.seed_index);
}

std::vector<SweepRun> sweep_plan(const std::vector<std::string>& archs, const std::vector<double>& temperatures,
                                 const std::vector<double>& alphas, int seeds, bool no_scratch) {
  std::vector<SweepRun> plan;
  auto add = [&](RunKind kind, const std::string& arch, double t, double a) {
    for (int s = 0; s < seeds; ++s) {
      SweepRun r;
      r.kind = kind, r.arch = arch, r.temperature = t, r.alpha = a, r.seed_index = s;
      plan.push_back(r);
    }
  };
  for (const std::string& arch : archs) {
    for (double t : temperatures)
      for (double a : alphas) add(RunKind::Distilled, arch, t, a);
    if (!no_scratch) add(RunKind::Scratch, arch, 1.0, 0.0);
  }
  return plan;
}

std::vector<bool> pareto_optimal(const std::vector<ParetoPoint>& points) {
  auto timed = [](const ParetoPoint& p) {
    return p.latency > 0 && std::isfinite(p.latency) && std::isfinite(p.accuracy);
  };
  std::vector<bool> optimal(points.size(), false);
  for (size_t i = 0; i < points.size(); ++i) {
    if (!timed(points[i])) continue;
    bool dominated = false;
    for (size_t j = 0; j < points.size() && !dominated; ++j) {
      const ParetoPoint &p = points[i], &q = points[j];
      dominated = j != i && timed(q) && q.accuracy >= p.accuracy && q.latency <= p.latency &&
                  (q.accuracy > p.accuracy || q.latency < p.latency);
    }
    optimal[i] = !dominated;
  }
  return optimal;
}

std::vector<SweepConfig> aggregate_sweep(const std::vector<SweepRun>& runs) {
  // The architecture's latency: the median over all its runs that measured it.
  std::map<std::string, std::vector<double>> b1, bulk, ort_b1, ort_bulk;
  const auto add = [](std::vector<double>& to, double ms) {
    if (ms > 0) to.push_back(1000 * ms);
  };
  for (const SweepRun& r : runs) {
    add(b1[r.arch], r.latency_b1_ms);
    add(bulk[r.arch], r.latency_large_ms);
    add(ort_b1[r.arch], r.ort_b1_ms);
    add(ort_bulk[r.arch], r.ort_large_ms);
  }
  std::vector<SweepConfig> configs;
  std::vector<std::vector<const SweepRun*>> members;
  for (const SweepRun& r : runs) {
    size_t i = 0;
    while (i < configs.size() && !(configs[i].kind == r.kind && configs[i].arch == r.arch &&
                                   configs[i].temperature == r.temperature && configs[i].alpha == r.alpha))
      ++i;
    if (i == configs.size()) {
      SweepConfig c;
      c.kind = r.kind, c.arch = r.arch, c.temperature = r.temperature, c.alpha = r.alpha;
      c.params = r.params, c.bytes = r.bytes;
      c.latency_b1_us = median(b1[r.arch]);
      c.latency_large_us = median(bulk[r.arch]);
      c.large_batch = c.latency_large_us > 0 ? r.large_batch : 0;
      c.ort_b1_us = median(ort_b1[r.arch]);
      c.ort_large_us = median(ort_bulk[r.arch]);
      configs.push_back(c);
      members.emplace_back();
    }
    members[i].push_back(&r);
  }
  std::vector<ParetoPoint> points;
  for (size_t i = 0; i < configs.size(); ++i) {
    SweepConfig& c = configs[i];
    const auto& m = members[i];
    c.seeds = int(m.size());
    double sum = 0, seconds = 0;
    for (const SweepRun* r : m) sum += r->test_acc, seconds += r->train_seconds;
    c.acc_mean = sum / double(m.size());
    c.train_seconds = seconds / double(m.size());
    double squares = 0;
    for (const SweepRun* r : m) squares += (r->test_acc - c.acc_mean) * (r->test_acc - c.acc_mean);
    c.acc_std = m.size() > 1 ? std::sqrt(squares / double(m.size() - 1)) : 0;
    const SweepRun* keep = m.front();
    for (const SweepRun* r : m)
      if (r->val_acc > keep->val_acc || (r->val_acc == keep->val_acc && r->seed_index < keep->seed_index)) keep = r;
    c.model_file = keep->model_file;
    points.push_back({c.acc_mean, c.latency_b1_us});
  }
  const std::vector<bool> optimal = pareto_optimal(points);
  for (size_t i = 0; i < configs.size(); ++i) configs[i].pareto = optimal[i];
  return configs;
}

int recommend_student(const std::vector<SweepConfig>& configs, const SweepConstraints& c, std::string& why_none) {
  int best = -1, meet_latency = 0, meet_params = 0, meet_accuracy = 0;
  for (size_t i = 0; i < configs.size(); ++i) {
    const SweepConfig& s = configs[i];
    const bool latency_ok = !c.max_latency_us || (s.latency_b1_us > 0 && s.latency_b1_us <= *c.max_latency_us);
    const bool params_ok = !c.max_params || s.params <= *c.max_params;
    const bool accuracy_ok = !c.min_accuracy || 100 * s.acc_mean >= *c.min_accuracy;
    meet_latency += latency_ok, meet_params += params_ok, meet_accuracy += accuracy_ok;
    if (!(latency_ok && params_ok && accuracy_ok)) continue;
    if (best < 0) {
      best = int(i);
      continue;
    }
    const SweepConfig& b = configs[size_t(best)];
    if (s.acc_mean > b.acc_mean ||
        (s.acc_mean == b.acc_mean &&
         (s.latency_b1_us < b.latency_b1_us || (s.latency_b1_us == b.latency_b1_us && s.params < b.params))))
      best = int(i);
  }
  why_none.clear();
  if (best >= 0) return best;
  const std::string of = " of " + std::to_string(configs.size()) + " do)";
  std::string parts;
  auto part = [&](bool given, const std::string& text, int meet) {
    if (given) parts += (parts.empty() ? "" : ", ") + text + " (" + std::to_string(meet) + of;
  };
  part(bool(c.max_latency_us), "--max-latency-us " + format("%g", c.max_latency_us.value_or(0)), meet_latency);
  part(bool(c.max_params), "--max-params " + std::to_string(c.max_params.value_or(0)), meet_params);
  part(bool(c.min_accuracy), "--min-accuracy " + format("%g", c.min_accuracy.value_or(0)), meet_accuracy);
  why_none = configs.empty() ? "the sweep has no students" : "no student meets all of " + parts;
  return -1;
}

// ------------------------------------------------------------ files and table
std::string sweep_csv(const SweepResult& r) {
  std::string out =
      "kind,arch,temperature,alpha,seeds,test_acc_mean,test_acc_std,params,bytes,train_seconds,latency_b1_us,"
      "latency_bulk_us,bulk_batch,ort_latency_b1_us,ort_latency_bulk_us,pareto,recommended\n";
  const int bulk = bulk_batch(r);
  auto us = [](double v) { return v > 0 ? format("%.6g", v) : std::string(); };
  if (!r.run.models.empty()) {
    const ModelReport& t = r.run.models.front();
    out += "teacher,\"" + t.arch + "\",,,1," + format("%.6f", t.test_acc) + ",," + std::to_string(t.params) + "," +
           std::to_string(t.bytes) + "," + format("%.3f", t.train_seconds) + "," + us(teacher_latency_us(r, 1)) + "," +
           us(teacher_latency_us(r, bulk)) + "," + (bulk ? std::to_string(bulk) : "") + "," +
           us(teacher_latency_us(r, 1, true)) + "," + us(teacher_latency_us(r, bulk, true)) + ",,\n";
  }
  for (size_t i = 0; i < r.configs.size(); ++i) {
    const SweepConfig& c = r.configs[i];
    const bool d = distilled(c.kind);
    out += std::string(run_kind_name(c.kind)) + ",\"" + c.arch + "\"," + (d ? format("%g", c.temperature) : "") + "," +
           (d ? format("%g", c.alpha) : "") + "," + std::to_string(c.seeds) + "," + format("%.6f", c.acc_mean) + "," +
           format("%.6f", c.acc_std) + "," + std::to_string(c.params) + "," + std::to_string(c.bytes) + "," +
           format("%.3f", c.train_seconds) + "," + us(c.latency_b1_us) + "," + us(c.latency_large_us) + "," +
           (c.large_batch ? std::to_string(c.large_batch) : "") + "," + us(c.ort_b1_us) + "," + us(c.ort_large_us) +
           "," + (c.pareto ? "1" : "0") + "," + (int(i) == r.recommended ? "1" : "0") + "\n";
  }
  return out;
}

std::string sweep_json(const SweepResult& r) {
  const Options& o = r.run.options;
  json configs = json::array(), runs = json::array();
  for (size_t i = 0; i < r.configs.size(); ++i) {
    const SweepConfig& c = r.configs[i];
    const bool d = distilled(c.kind);
    configs.push_back(json{{"kind", run_kind_name(c.kind)},
                           {"arch", c.arch},
                           {"temperature", d ? json_number(c.temperature) : json(nullptr)},
                           {"alpha", d ? json_number(c.alpha) : json(nullptr)},
                           {"seeds", c.seeds},
                           {"test_acc_mean", json_number(c.acc_mean)},
                           {"test_acc_std", json_number(c.acc_std)},
                           {"params", c.params},
                           {"bytes", c.bytes},
                           {"train_seconds", json_number(c.train_seconds)},
                           {"latency_b1_us", measured(c.latency_b1_us)},
                           {"latency_bulk_us", measured(c.latency_large_us)},
                           {"bulk_batch", c.large_batch},
                           {"ort_latency_b1_us", measured(c.ort_b1_us)},
                           {"ort_latency_bulk_us", measured(c.ort_large_us)},
                           {"pareto", c.pareto},
                           {"recommended", int(i) == r.recommended},
                           {"model_file", c.model_file}});
  }
  for (const SweepRun& run : r.runs) runs.push_back(run_json(run));
  json teacher = nullptr;
  if (!r.run.models.empty()) {
    const ModelReport& t = r.run.models.front();
    teacher = json{{"arch", t.arch},
                   {"source", o.teacher_path.empty() ? "trained in this sweep (teacher.safetensors)" : o.teacher_path},
                   {"params", t.params},
                   {"bytes", t.bytes},
                   {"test_acc", json_number(t.test_acc)},
                   {"train_seconds", json_number(t.train_seconds)},
                   {"latency_b1_us", measured(teacher_latency_us(r, 1))},
                   {"latency_bulk_us", measured(teacher_latency_us(r, bulk_batch(r)))},
                   {"ort_latency_b1_us", measured(teacher_latency_us(r, 1, true))},
                   {"ort_latency_bulk_us", measured(teacher_latency_us(r, bulk_batch(r), true))}};
  }
  auto optional_json = [](const auto& v) { return v ? json(*v) : json(nullptr); };
  const json out{
      {"started_at", r.run.started_at},
      {"total_seconds", json_number(r.run.total_seconds)},
      {"device", r.run.device},
      {"versions", r.run.versions},
      {"onnx_runtime",
       r.ort_note.empty() ? json("ONNX Runtime latencies: CPU, the exported model timed from node") : json(r.ort_note)},
      {"data", json{{"dir", r.run.data_dir},
                    {"train", r.run.train_n},
                    {"val", r.run.val_n},
                    {"test", r.run.test_n},
                    {"classes", r.run.num_classes}}},
      {"config", json{{"seed", o.seed},
                      {"seeds", o.seeds},
                      {"epochs-teacher", o.epochs_teacher},
                      {"epochs-student", o.epochs_student},
                      {"batch-size", o.batch_size},
                      {"lr", json_number(o.lr)},
                      {"select", select_rule_name(o.select)},
                      {"teacher-arch", o.teacher_arch},
                      {"max-latency-us", optional_json(r.constraints.max_latency_us)},
                      {"max-params", optional_json(r.constraints.max_params)},
                      {"min-accuracy", optional_json(r.constraints.min_accuracy)}}},
      {"pareto_definition",
       "a student is Pareto-optimal when no other student has at least its mean test accuracy and at most its "
       "batch-1 latency while being strictly better in one; latencies are per architecture (median over its runs)"},
      {"teacher", teacher},
      {"recommended", r.recommended >= 0 ? json(r.recommended) : json(nullptr)},
      {"why_none", r.why_none.empty() ? json(nullptr) : json(r.why_none)},
      {"configs", configs},
      {"runs", runs}};
  return out.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

std::string sweep_table(const SweepResult& r) {
  const int bulk = bulk_batch(r);
  const std::string bulk_head = bulk ? "b" + std::to_string(bulk) + " us" : "bulk us";
  auto us = [](double v) { return v > 0 ? format(v < 100 ? "%.1f" : "%.0f", v) : std::string("-"); };
  std::vector<std::vector<std::string>> rows;
  const bool ort = any_ort(r);
  rows.push_back({"  student", "kind", "T", "alpha", "test acc", "params", "size", "train", "b1 us", bulk_head});
  if (ort) rows.back().insert(rows.back().end(), {"ORT b1 us", "ORT " + bulk_head});
  if (!r.run.models.empty()) {
    const ModelReport& t = r.run.models.front();
    rows.push_back({"  teacher", "teacher", "", "", format("%.2f%%", 100 * t.test_acc), thousands(t.params),
                    byte_size(t.bytes), format("%.1fs", t.train_seconds), us(teacher_latency_us(r, 1)),
                    us(teacher_latency_us(r, bulk))});
    if (ort)
      rows.back().insert(rows.back().end(),
                         {us(teacher_latency_us(r, 1, true)), us(teacher_latency_us(r, bulk, true))});
  }
  for (size_t i = 0; i < r.configs.size(); ++i) {
    const SweepConfig& c = r.configs[i];
    const bool d = distilled(c.kind);
    std::string acc = format("%.2f", 100 * c.acc_mean);
    if (c.seeds > 1) acc += format(" ± %.2f", 100 * c.acc_std);
    rows.push_back({std::string(c.pareto ? "* " : "  ") + arch_label(c.arch), run_kind_name(c.kind),
                    d ? format("%g", c.temperature) : "", d ? format("%g", c.alpha) : "", acc + "%",
                    thousands(c.params), byte_size(c.bytes), format("%.1fs", c.train_seconds), us(c.latency_b1_us),
                    us(c.latency_large_us)});
    if (ort) rows.back().insert(rows.back().end(), {us(c.ort_b1_us), us(c.ort_large_us)});
    if (int(i) == r.recommended) rows.back()[0] += "  <- recommended";
  }
  int seeds = 0;
  for (const SweepConfig& c : r.configs) seeds = std::max(seeds, c.seeds);
  std::string out = "sweep: " + std::to_string(r.configs.size()) + " configurations, " + std::to_string(r.runs.size()) +
                    " runs (" + std::to_string(seeds) + (seeds == 1 ? " seed" : " seeds, accuracy mean ± std") +
                    "), on " + r.run.device + "\n" + aligned(rows);
  out +=
      "* Pareto-optimal: no other student is at least as accurate and at least as fast at batch 1, and strictly "
      "better in one.\n  Latencies are the architecture's: the median over all its runs" +
      std::string(ort ? "; ORT: ONNX Runtime on the CPU, the exported model timed from node, once per "
                        "architecture.\n"
                      : ".\n");
  if (!r.ort_note.empty()) out += "  " + r.ort_note + "\n";
  return out;
}

std::string write_sweep_files(const SweepResult& r, const std::string& out_dir) {
  write_file_atomic(out_dir + "/sweep.csv", sweep_csv(r));
  write_file_atomic(out_dir + "/sweep.json", sweep_json(r));
  const bool timed =
      std::any_of(r.configs.begin(), r.configs.end(), [](const SweepConfig& c) { return c.latency_b1_us > 0; });
  if (!timed) return "";  // no latency axis: nothing to draw
  std::string front;
  const std::string points = pareto_data(r, front);
  write_file_atomic(out_dir + "/pareto.dat", points);
  write_file_atomic(out_dir + "/pareto_front.dat", front);
  return render_plots(out_dir, "pareto.gp", pareto_script(r), {{"pareto_png", "pareto.png"}});
}

std::string sweep_state_json(const SweepState& s) {
  json runs = json::array();
  for (const SweepRun& r : s.runs) runs.push_back(run_json(r));
  return json{{"format", "kdtrain sweep state 1"},
              {"fingerprint", s.fingerprint},
              {"teacher_done", s.teacher_done},
              {"teacher_history_csv", s.teacher_history_csv},
              {"teacher_train_seconds", s.teacher_train_seconds},
              {"runs", runs}}
             .dump(2, ' ', false, json::error_handler_t::replace) +
         "\n";
}

SweepState parse_sweep_state(const std::string& text, const std::string& path) {
  SweepState s;
  try {
    const json j = json::parse(text);
    if (j.at("format").get<std::string>() != "kdtrain sweep state 1") throw std::runtime_error("unknown format");
    s.fingerprint = j.at("fingerprint").get<std::string>();
    s.teacher_done = j.at("teacher_done").get<bool>();
    s.teacher_history_csv = j.at("teacher_history_csv").get<std::string>();
    s.teacher_train_seconds = j.at("teacher_train_seconds").get<double>();
    for (const json& r : j.at("runs")) s.runs.push_back(run_from_json(r));
  } catch (const std::exception& e) {
    fail(path + ": not a kdtrain sweep state (" + std::string(e.what()) + ")");
  }
  return s;
}

}  // namespace kd

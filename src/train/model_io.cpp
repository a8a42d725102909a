// Model files and training checkpoints as safetensors (see kd/model_io.h).
#include "kd/model_io.h"

#include <algorithm>
#include <cstdio>
#include <functional>
#include <optional>
#include <sstream>

#include "kd/safetensors.h"
#include "kd/data.h"
#include "kd/error.h"
#include "kd/params.h"

namespace kd {
namespace {

std::string shape_text(const Shape& s) {
  return std::to_string(s.c) + "x" + std::to_string(s.h) + "x" + std::to_string(s.w);
}

Shape parse_shape_text(const std::string& text, const std::string& path) {
  Shape s;
  char x1 = 0, x2 = 0;
  std::istringstream in(text);
  if (!(in >> s.c >> x1 >> s.h >> x2 >> s.w) || x1 != 'x' || x2 != 'x' || s.c < 1 || s.h < 1 || s.w < 1)
    fail(path + ": metadata 'input' is '" + text + "', expected CxHxW such as 1x28x28");
  return s;
}

const std::string& require_meta(const SafeTensors& st, const std::string& key, const std::string& path) {
  auto it = st.metadata.find(key);
  if (it == st.metadata.end())
    fail(path + ": metadata has no '" + key + "' (not a kdtrain file, or written by another version)");
  return it->second;
}

int parse_int_meta(const SafeTensors& st, const std::string& key, const std::string& path) {
  const std::string& text = require_meta(st, key, path);
  try {
    size_t used = 0;
    const long long v = std::stoll(text, &used);
    if (used != text.size()) throw std::invalid_argument(text);
    return int(v);
  } catch (const std::exception&) {
    fail(path + ": metadata '" + key + "' is '" + text + "', expected an integer");
  }
}

double parse_double_meta(const SafeTensors& st, const std::string& key, const std::string& path) {
  const std::string& text = require_meta(st, key, path);
  try {
    size_t used = 0;
    const double v = std::stod(text, &used);
    if (used != text.size()) throw std::invalid_argument(text);
    return v;
  } catch (const std::exception&) {
    fail(path + ": metadata '" + key + "' is '" + text + "', expected a number");
  }
}

// %.17g: reads back to the same double.
std::string exact_text(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

Arch arch_from_metadata(const SafeTensors& st, const std::string& path) {
  const Shape input = parse_shape_text(require_meta(st, "input", path), path);
  const int classes = parse_int_meta(st, "classes", path);
  return parse_arch(require_meta(st, "arch", path), input, classes, path + " metadata 'arch'");
}

void put_arch_metadata(SafeTensors& st, const Arch& arch) {
  st.metadata["format"] = "kdtrain";
  st.metadata["arch"] = arch.text;
  st.metadata["input"] = shape_text(arch.input);
  st.metadata["classes"] = std::to_string(arch.output.size());
}

TensorData flat_tensor(const std::string& name, const std::vector<float>& v) {
  return TensorData::from_f32(name, {int64_t(v.size())}, v.data());
}

std::vector<float> read_flat(const SafeTensors& st, const std::string& name, size_t expected, const std::string& path) {
  const TensorData& t = st.get(name);
  if (t.dtype != DType::F32 || t.shape.size() != 1 || size_t(t.shape[0]) != expected)
    fail(path + ": tensor '" + name + "' must be F32 [" + std::to_string(expected) + "]");
  return t.to_f32();
}

}  // namespace

std::optional<Normalization> saved_normalization(const std::map<std::string, std::string>& metadata,
                                                 const std::string& path) {
  const auto it = metadata.find(kNormalizeKey);
  if (it != metadata.end()) return parse_normalization(it->second, path + ": metadata '" + kNormalizeKey + "'");
  // Foreign as load_model_file defines it: neither kdtrain key.
  if (metadata.count("format") == 0 && metadata.count("arch") == 0) return std::nullopt;
  return Normalization{};
}

std::map<std::string, std::string> normalization_metadata(const Normalization& n) {
  const std::string text = normalization_text(n);
  return {{kNormalizeKey, text}, {"normalisation", "x = (pixel / 255 - mean[c]) / std[c], mean/std " + text}};
}

void save_model_file(const std::string& path, const Arch& arch, const std::vector<float>& params,
                     const std::map<std::string, std::string>& facts) {
  SafeTensors st;
  st.metadata = facts;
  put_arch_metadata(st, arch);
  for (const ParamTensor& p : param_tensors(arch))
    st.tensors.push_back(TensorData::from_f32(p.name, p.shape, params.data() + p.offset));
  save_safetensors(path, st);
}

ModelFile load_model_file(const std::string& path, const std::function<Arch()>& fallback) {
  const SafeTensors st = load_safetensors(path);
  ModelFile m;
  // A file with no kdtrain metadata at all, as safetensors.torch.save_file
  // writes a state_dict, is read as `fallback`; its errors name that arch.
  const bool foreign = fallback && st.metadata.count("format") == 0 && st.metadata.count("arch") == 0;
  m.arch = foreign ? fallback() : arch_from_metadata(st, path);
  const std::string where = foreign ? path + " (no kdtrain metadata, read as '" + m.arch.text + "')" : path;
  m.metadata = st.metadata;
  m.params.assign(size_t(m.arch.param_count), 0.0f);
  const std::vector<ParamTensor> expected = param_tensors(m.arch);
  for (const ParamTensor& p : expected) {
    const TensorData* t = st.find(p.name);
    if (!t) fail(where + ": tensor '" + p.name + "' is missing (the arch needs it)");
    if (t->dtype != DType::F32) fail(where + ": tensor '" + p.name + "' is " + dtype_name(t->dtype) + ", expected F32");
    if (t->shape != p.shape) {
      std::string want, got;
      for (int64_t d : p.shape) want += (want.empty() ? "" : ",") + std::to_string(d);
      for (int64_t d : t->shape) got += (got.empty() ? "" : ",") + std::to_string(d);
      fail(where + ": tensor '" + p.name + "' has shape [" + got + "], the arch needs [" + want + "]");
    }
    const std::vector<float> values = t->to_f32();
    std::copy(values.begin(), values.end(), m.params.begin() + p.offset);
  }
  for (const TensorData& t : st.tensors) {
    const auto named = [&](const ParamTensor& p) { return p.name == t.name; };
    if (std::none_of(expected.begin(), expected.end(), named))
      fail(where + ": tensor '" + t.name + "' is not a parameter of the arch (its " + std::to_string(expected.size()) +
           " tensors are " + expected.front().name + " ... " + expected.back().name + ")");
  }
  return m;
}

void save_training_checkpoint(const std::string& path, const TrainingCheckpoint& ck) {
  SafeTensors st;
  put_arch_metadata(st, ck.arch);
  st.metadata["kind"] = "training-checkpoint";
  st.metadata["phase"] = phase_name(ck.phase);
  st.metadata["epochs_done"] = std::to_string(ck.epochs_done);
  st.metadata["seed"] = std::to_string(ck.seed);
  st.metadata["optim_step"] = std::to_string(ck.optim.step);
  st.metadata["history_csv"] = ck.history_csv;
  st.metadata["epoch_loss_sum"] = exact_text(ck.epoch_loss_sum);
  st.metadata["epoch_kl_sum"] = exact_text(ck.epoch_kl_sum);
  st.metadata["epoch_steps"] = std::to_string(ck.epoch_steps);
  st.metadata["best_epoch"] = std::to_string(ck.best_epoch);
  st.metadata["options"] = ck.options_fingerprint;
  st.tensors.push_back(flat_tensor("params", ck.params));
  st.tensors.push_back(flat_tensor("optim.m", ck.optim.m));
  st.tensors.push_back(flat_tensor("optim.v", ck.optim.v));
  st.tensors.push_back(flat_tensor("best", ck.best_params));
  if (!ck.hint_map.params.empty()) {  // absent without a hint, so such checkpoints read as before
    st.metadata["epoch_hint_sum"] = exact_text(ck.epoch_hint_sum);
    st.tensors.push_back(flat_tensor("hint.params", ck.hint_map.params));
    st.tensors.push_back(flat_tensor("hint.m", ck.hint_map.m));
    st.tensors.push_back(flat_tensor("hint.v", ck.hint_map.v));
  }
  save_safetensors(path, st);
}

TrainingCheckpoint load_training_checkpoint(const std::string& path) {
  const SafeTensors st = load_safetensors(path);
  if (require_meta(st, "kind", path) != "training-checkpoint") fail(path + ": not a training checkpoint");
  TrainingCheckpoint ck;
  ck.arch = arch_from_metadata(st, path);
  ck.phase = parse_phase(require_meta(st, "phase", path), path);
  ck.epochs_done = parse_int_meta(st, "epochs_done", path);
  ck.seed = std::stoull(require_meta(st, "seed", path));
  ck.optim.step = parse_int_meta(st, "optim_step", path);
  ck.history_csv = require_meta(st, "history_csv", path);
  ck.epoch_loss_sum = parse_double_meta(st, "epoch_loss_sum", path);
  ck.epoch_kl_sum = parse_double_meta(st, "epoch_kl_sum", path);
  ck.epoch_steps = parse_int_meta(st, "epoch_steps", path);
  ck.best_epoch = parse_int_meta(st, "best_epoch", path);
  if (ck.best_epoch < 0 || ck.best_epoch > ck.epochs_done)
    fail(path + ": metadata 'best_epoch' is " + std::to_string(ck.best_epoch) +
         ", outside [0, epochs_done = " + std::to_string(ck.epochs_done) + "]");
  ck.options_fingerprint = require_meta(st, "options", path);
  const size_t n = size_t(ck.arch.param_count);
  ck.params = read_flat(st, "params", n, path);
  ck.optim.m = read_flat(st, "optim.m", n, path);
  const TensorData& v = st.get("optim.v");
  ck.optim.v = read_flat(st, "optim.v", v.numel() == 0 ? 0 : n, path);
  ck.best_params = read_flat(st, "best", ck.best_epoch > 0 ? n : 0, path);
  if (st.find("hint.params") != nullptr) {  // the map's size is checked where the model takes it
    const size_t map = size_t(st.get("hint.params").numel());
    ck.hint_map.params = read_flat(st, "hint.params", map, path);
    ck.hint_map.m = read_flat(st, "hint.m", map, path);
    ck.hint_map.v = read_flat(st, "hint.v", st.get("hint.v").numel() == 0 ? 0 : map, path);
    ck.epoch_hint_sum = parse_double_meta(st, "epoch_hint_sum", path);
  }
  return ck;
}

}  // namespace kd

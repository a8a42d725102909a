// Architecture strings -> checked layer lists (grammar in kd/arch.h).
//
// parse_arch walks the tokens once, carrying the per-sample shape forward, so
// every error can name the token that caused it and the shape it met. What
// each kind accepts and how it changes the shape is its row of the layer
// table (kd/layers.h).
#include "kd/arch.h"

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>

#include "kd/error.h"
#include "token_parser.h"

namespace kd {

int64_t Layer::fan_in() const {
  const LayerKindInfo& info = layer_info(kind);
  if (!info.weight_shape) return 0;
  int64_t n = 1;
  const std::vector<int64_t> shape = info.weight_shape(*this);
  for (size_t d = 1; d < shape.size(); ++d) n *= shape[d];  // every weight dimension but the outputs
  return n;
}

bool Arch::has_conv() const {
  for (const Layer& l : layers)
    if (l.kind == LayerKind::Conv) return true;
  return false;
}

bool Arch::has_dropout() const {
  for (const Layer& l : layers)
    if (l.kind == LayerKind::Dropout) return true;
  return false;
}

namespace {

std::string without_whitespace(const std::string& s) {
  std::string out;
  for (char ch : s)
    if (!std::isspace(static_cast<unsigned char>(ch))) out += ch;
  return out;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (;;) {
    const size_t end = s.find(sep, start);
    parts.push_back(s.substr(start, end == std::string::npos ? std::string::npos : end - start));
    if (end == std::string::npos) return parts;
    start = end + 1;
  }
}

// conv1, conv2, ... / fc1, fc2, ... in order, as the equivalent nn.Module would name them.
void assign_parameters(Arch& arch) {
  std::vector<std::pair<std::string, int>> counters;  // per parameter prefix
  int64_t offset = 0;
  for (Layer& l : arch.layers) {
    const LayerKindInfo& info = layer_info(l.kind);
    if (!info.param_prefix) continue;
    int index = 1;
    for (auto& [prefix, count] : counters)
      if (prefix == info.param_prefix) index = ++count;
    if (index == 1) counters.emplace_back(info.param_prefix, 1);
    l.name = info.param_prefix + std::to_string(index);
    l.weight_count = 1;
    for (int64_t d : info.weight_shape(l)) l.weight_count *= d;
    l.bias_count = l.out;
    l.param_offset = offset;
    offset += l.param_count();
  }
  arch.param_count = offset;
}

}  // namespace

std::string shape_text(const Shape& s) {
  if (s.flat) return std::to_string(s.c) + " features";
  return std::to_string(s.c) + "x" + std::to_string(s.h) + "x" + std::to_string(s.w);
}

std::string float_text(float v) {
  char buf[32];
  for (int digits = 1; digits <= 9; ++digits) {
    std::snprintf(buf, sizeof buf, "%.*g", digits, double(v));
    if (std::strtof(buf, nullptr) == v) break;
  }
  return buf;
}

TokenParser::TokenParser(const std::string& flag, int index, std::string token)
    : flag_(flag), index_(index), token_(std::move(token)), fields_(split(token_, ':')) {}

void TokenParser::reject(const std::string& why) const {
  fail(flag_ + ": token " + std::to_string(index_) + " '" + token_ + "': " + why);
}

void TokenParser::expect_args(int min_args, int max_args, const char* usage) const {
  if (arg_count() < min_args || arg_count() > max_args)
    reject(std::string("expected ") + usage + ", got " + std::to_string(arg_count()) + " argument" +
           (arg_count() == 1 ? "" : "s"));
}

int TokenParser::integer_arg(int i, const char* what, int min_value, int fallback) const {
  if (i > arg_count()) return fallback;
  const std::string& text = fields_[size_t(i)];
  bool digits_only = !text.empty();
  for (char ch : text) digits_only = digits_only && std::isdigit(static_cast<unsigned char>(ch));
  const char* bound = min_value > 0 ? "a positive integer" : "a non-negative integer";
  if (!digits_only) reject(std::string(what) + " must be " + bound + ", got '" + text + "'");
  errno = 0;
  const long long v = std::strtoll(text.c_str(), nullptr, 10);
  if (errno == ERANGE || v > std::numeric_limits<int>::max()) reject(std::string(what) + " " + text + " is too large");
  if (v < min_value) reject(std::string(what) + " must be " + bound + ", got '" + text + "'");
  return int(v);
}

float TokenParser::probability_arg(int i) const {
  const std::string& text = fields_[size_t(i)];
  char* end = nullptr;
  const double p = text.empty() ? std::nan("") : std::strtod(text.c_str(), &end);
  if (text.empty() || end != text.c_str() + text.size())
    reject("drop probability must be a number in [0, 1), got '" + text + "'");
  if (!(p >= 0.0 && p < 1.0)) reject("drop probability must be in [0, 1), got " + text);
  return float(p);
}

Arch parse_arch(const std::string& text, Shape input, int num_classes, const std::string& flag_name) {
  if (input.c < 1 || input.h < 1 || input.w < 1)
    fail(flag_name + ": the input shape " + shape_text(input) + " has an empty dimension");
  if (num_classes < 1) fail(flag_name + ": the data has " + std::to_string(num_classes) + " classes");

  Arch arch;
  arch.input = input;
  Shape shape = input;
  int last_param_index = -1;  // index into `tokens` of the last conv/dense layer
  const std::vector<std::string> raw_tokens = split(text, ',');
  std::vector<TokenParser> tokens;
  for (size_t i = 0; i < raw_tokens.size(); ++i) {
    tokens.emplace_back(flag_name, int(i) + 1, without_whitespace(raw_tokens[i]));
    const TokenParser& tp = tokens.back();
    Layer layer;
    layer.token = tp.token();
    const LayerKindInfo* info = find_layer_kind(tp.name());
    if (!info) {
      if (tp.token().empty()) tp.reject("empty layer (stray comma?); layers are " + layer_token_list());
      tp.reject("unknown layer '" + tp.name() + "'; layers are " + layer_token_list());
    }
    layer.kind = info->kind;
    const std::string normalised = info->parse(tp, layer);
    layer.in = shape;
    layer.out_shape = info->infer_shape(tp, layer);
    shape = layer.out_shape;
    if (info->param_prefix) last_param_index = int(i);
    arch.text += (i ? "," : "") + normalised;
    arch.layers.push_back(layer);
  }

  const std::string expected_last = "dense:" + std::to_string(num_classes);
  if (last_param_index < 0)
    tokens.back().reject("no layer with parameters; an architecture must end in " + expected_last);
  const Layer& last = arch.layers[size_t(last_param_index)];
  const TokenParser& last_tp = tokens[size_t(last_param_index)];
  if (last.kind != LayerKind::Dense)
    last_tp.reject("the last layer with parameters must be " + expected_last + " (one output per class)");
  if (last.out != num_classes)
    last_tp.reject("output width " + std::to_string(last.out) + " != " + std::to_string(num_classes) +
                   " classes; use " + expected_last);

  assign_parameters(arch);
  arch.output = arch.layers.back().out_shape;
  return arch;
}

std::string adapt_default_arch(const std::string& text, Shape input, int num_classes) {
  const bool teacher = text == kDefaultTeacherArch;
  if (!teacher && text != kDefaultStudentArch) return text;
  const std::string ten_classes = "dense:10";
  std::string out = text.substr(0, text.size() - ten_classes.size()) + "dense:" + std::to_string(num_classes);
  if (teacher) {
    constexpr int64_t kMnistFeatures = 64 * 12 * 12;
    // After conv 3x3, conv 3x3 (no padding) and the first maxpool:2.
    int h = (input.h - 4) / 2, w = (input.w - 4) / 2;
    const std::string pool = "maxpool:2,";
    const size_t after_pool = out.find(pool) + pool.size();
    while (int64_t(64) * h * w > kMnistFeatures && h >= 2 && w >= 2) {
      out.insert(after_pool, pool);
      h /= 2, w /= 2;
    }
  }
  return out;
}

}  // namespace kd

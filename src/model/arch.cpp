// Architecture strings -> checked layer lists (grammar in kd/arch.h).
//
// parse_arch walks the tokens once, carrying the per-sample shape forward, so
// every error can name the token that caused it and the shape it met.
#include "kd/arch.h"

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>

#include "kd/error.h"

namespace kd {

const char* layer_kind_name(LayerKind kind) {
  switch (kind) {
    case LayerKind::Conv: return "conv";
    case LayerKind::Relu: return "relu";
    case LayerKind::MaxPool: return "maxpool";
    case LayerKind::Dropout: return "dropout";
    case LayerKind::Flatten: return "flatten";
    case LayerKind::Dense: return "dense";
  }
  return "?";
}

int64_t Layer::fan_in() const {
  if (kind == LayerKind::Conv) return int64_t(in.c) * kernel * kernel;
  if (kind == LayerKind::Dense) return in.c;
  return 0;
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

constexpr const char* kLayerNames = "conv, relu, maxpool, dropout, flatten, dense";

std::string shape_text(const Shape& s) {
  if (s.flat) return std::to_string(s.c) + " features";
  return std::to_string(s.c) + "x" + std::to_string(s.h) + "x" + std::to_string(s.w);
}

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

// Shortest decimal text that reads back as the same float, so normalised
// strings keep "0.25" rather than "0.25000000".
std::string float_text(float v) {
  char buf[32];
  for (int digits = 1; digits <= 9; ++digits) {
    std::snprintf(buf, sizeof buf, "%.*g", digits, double(v));
    if (std::strtof(buf, nullptr) == v) break;
  }
  return buf;
}

// One token being parsed: knows its index and text so every failure names them.
class TokenParser {
 public:
  TokenParser(const std::string& flag, int index, std::string token)
      : flag_(flag), index_(index), token_(std::move(token)), fields_(split(token_, ':')) {}

  [[noreturn]] void reject(const std::string& why) const {
    fail(flag_ + ": token " + std::to_string(index_) + " '" + token_ + "': " + why);
  }

  const std::string& token() const { return token_; }
  const std::string& name() const { return fields_[0]; }
  int arg_count() const { return int(fields_.size()) - 1; }

  void expect_args(int min_args, int max_args, const char* usage) const {
    if (arg_count() < min_args || arg_count() > max_args)
      reject(std::string("expected ") + usage + ", got " + std::to_string(arg_count()) + " argument" +
             (arg_count() == 1 ? "" : "s"));
  }

  // Argument `i` (1-based) as a decimal integer >= min_value, or `fallback` when absent.
  int integer_arg(int i, const char* what, int min_value, int fallback) const {
    if (i > arg_count()) return fallback;
    const std::string& text = fields_[size_t(i)];
    bool digits_only = !text.empty();
    for (char ch : text) digits_only = digits_only && std::isdigit(static_cast<unsigned char>(ch));
    const char* bound = min_value > 0 ? "a positive integer" : "a non-negative integer";
    if (!digits_only) reject(std::string(what) + " must be " + bound + ", got '" + text + "'");
    errno = 0;
    const long long v = std::strtoll(text.c_str(), nullptr, 10);
    if (errno == ERANGE || v > std::numeric_limits<int>::max())
      reject(std::string(what) + " " + text + " is too large");
    if (v < min_value) reject(std::string(what) + " must be " + bound + ", got '" + text + "'");
    return int(v);
  }

  float probability_arg(int i) const {
    const std::string& text = fields_[size_t(i)];
    char* end = nullptr;
    const double p = text.empty() ? std::nan("") : std::strtod(text.c_str(), &end);
    if (text.empty() || end != text.c_str() + text.size())
      reject("drop probability must be a number in [0, 1), got '" + text + "'");
    if (!(p >= 0.0 && p < 1.0)) reject("drop probability must be in [0, 1), got " + text);
    return float(p);
  }

 private:
  const std::string& flag_;
  int index_;
  std::string token_;
  std::vector<std::string> fields_;
};

// Fills layer.out_shape from layer.in, rejecting shapes the layer cannot take.
void infer_shape(const TokenParser& tp, Layer& layer) {
  const Shape in = layer.in;
  Shape out = in;
  switch (layer.kind) {
    case LayerKind::Conv: {
      if (in.flat) tp.reject("conv needs a CxHxW input but the input is already flat (conv after flatten)");
      const auto extent = [&](int size) -> int64_t {
        const int64_t padded = int64_t(size) + 2 * int64_t(layer.pad);
        if (padded < layer.kernel) return 0;
        return (padded - layer.kernel) / layer.stride + 1;
      };
      const int64_t h = extent(in.h), w = extent(in.w);
      if (h < 1 || w < 1)
        tp.reject("spatial size shrinks below 1 (input " + shape_text(in) + ", kernel " +
                  std::to_string(layer.kernel) + ", stride " + std::to_string(layer.stride) + ", padding " +
                  std::to_string(layer.pad) + "); use padding, a smaller kernel or fewer layers");
      if (h > std::numeric_limits<int>::max() || w > std::numeric_limits<int>::max())
        tp.reject("padding makes the output too large");
      out = Shape{layer.out, int(h), int(w), false};
      break;
    }
    case LayerKind::MaxPool:
      if (in.flat) tp.reject("maxpool needs a CxHxW input but the input is already flat (maxpool after flatten)");
      if (in.h / layer.kernel < 1 || in.w / layer.kernel < 1)
        tp.reject("spatial size shrinks below 1 (input " + shape_text(in) + ", window " +
                  std::to_string(layer.kernel) + "); use fewer pooling layers");
      out = Shape{in.c, in.h / layer.kernel, in.w / layer.kernel, false};
      break;
    case LayerKind::Flatten: {
      if (in.flat) tp.reject("the input is already flat (a second flatten)");
      const int64_t features = in.size();
      if (features > std::numeric_limits<int>::max())
        tp.reject(std::to_string(features) + " features after flatten is too many");
      out = Shape{int(features), 1, 1, true};
      break;
    }
    case LayerKind::Dense:
      if (!in.flat) tp.reject("dense needs a flatten before it (input is " + shape_text(in) + ")");
      out = Shape{layer.out, 1, 1, true};
      break;
    case LayerKind::Relu:
    case LayerKind::Dropout:
      break;
  }
  layer.out_shape = out;
}

// Parses one token's name and arguments; returns its normalised text.
std::string parse_token(const TokenParser& tp, Layer& layer) {
  const std::string& name = tp.name();
  if (name == "conv") {
    layer.kind = LayerKind::Conv;
    tp.expect_args(1, 4, "conv:OUT[:K[:STRIDE[:PAD]]]");
    layer.out = tp.integer_arg(1, "conv output channels", 1, 0);
    layer.kernel = tp.integer_arg(2, "conv kernel size", 1, 3);
    layer.stride = tp.integer_arg(3, "conv stride", 1, 1);
    layer.pad = tp.integer_arg(4, "conv padding", 0, 0);
    std::string text = "conv:" + std::to_string(layer.out) + ":" + std::to_string(layer.kernel);
    if (layer.stride != 1 || layer.pad != 0) text += ":" + std::to_string(layer.stride);
    if (layer.pad != 0) text += ":" + std::to_string(layer.pad);
    return text;
  }
  if (name == "maxpool") {
    layer.kind = LayerKind::MaxPool;
    tp.expect_args(0, 1, "maxpool or maxpool:2");
    layer.kernel = tp.integer_arg(1, "maxpool window", 1, 2);
    layer.stride = layer.kernel;
    if (layer.kernel != 2) tp.reject("only maxpool:2 is supported");
    return "maxpool:" + std::to_string(layer.kernel);
  }
  if (name == "dropout") {
    layer.kind = LayerKind::Dropout;
    tp.expect_args(1, 1, "dropout:P");
    layer.drop = tp.probability_arg(1);
    return "dropout:" + float_text(layer.drop);
  }
  if (name == "dense") {
    layer.kind = LayerKind::Dense;
    tp.expect_args(1, 1, "dense:OUT");
    layer.out = tp.integer_arg(1, "dense width", 1, 0);
    return "dense:" + std::to_string(layer.out);
  }
  if (name == "relu" || name == "flatten") {
    layer.kind = name == "relu" ? LayerKind::Relu : LayerKind::Flatten;
    tp.expect_args(0, 0, name == "relu" ? "relu with no arguments" : "flatten with no arguments");
    return name;
  }
  if (tp.token().empty()) tp.reject(std::string("empty layer (stray comma?); layers are ") + kLayerNames);
  tp.reject("unknown layer '" + name + "'; layers are " + kLayerNames);
}

// conv1, conv2, ... / fc1, fc2, ... in order, as the equivalent nn.Module would name them.
void assign_parameters(Arch& arch) {
  int convs = 0, denses = 0;
  int64_t offset = 0;
  for (Layer& l : arch.layers) {
    if (l.kind == LayerKind::Conv) {
      l.name = "conv" + std::to_string(++convs);
      l.weight_count = int64_t(l.out) * l.in.c * l.kernel * l.kernel;
    } else if (l.kind == LayerKind::Dense) {
      l.name = "fc" + std::to_string(++denses);
      l.weight_count = int64_t(l.out) * l.in.c;
    } else {
      continue;
    }
    l.bias_count = l.out;
    l.param_offset = offset;
    offset += l.param_count();
  }
  arch.param_count = offset;
}

}  // namespace

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
    const std::string normalised = parse_token(tp, layer);
    layer.in = shape;
    infer_shape(tp, layer);
    shape = layer.out_shape;
    if (layer.kind == LayerKind::Conv || layer.kind == LayerKind::Dense) last_param_index = int(i);
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

}  // namespace kd

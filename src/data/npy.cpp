// NumPy .npy reading and writing (see kd/npy.h for the format and the rules).
#include "kd/npy.h"

#include <algorithm>
#include <cctype>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "kd/safetensors.h"
#include "kd/error.h"

namespace fs = std::filesystem;

namespace kd {
namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicSize = 6;

// What the header says: dtype, shape, and where the elements start. The
// elements fill the rest of the file exactly.
struct NpyHeader {
  std::string descr;  // as written, e.g. "<f4"
  char kind = 0;      // 'u', 'i', 'f' (others are refused on parsing)
  int itemsize = 0;   // bytes per element: 1, 2, 4 or 8
  std::vector<int64_t> shape;
  size_t data_offset = 0;
};

// Python's spelling of a shape, as in the header: "(3, 28, 28)", "(5,)".
std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

// Header text made safe for a one-line error: the padding and final '\n'
// dropped, other control bytes shown as '?', long headers cut.
std::string printable(const std::string& text) {
  constexpr size_t kMax = 160;
  size_t end = text.size();
  while (end > 0 && (text[end - 1] == ' ' || text[end - 1] == '\n')) --end;
  std::string s;
  for (size_t i = 0; i < end && i < kMax; ++i) s += (text[i] >= 0x20 && text[i] < 0x7f) ? text[i] : '?';
  return end > kMax ? s + "..." : s;
}

// A recursive-descent reader for the one dict numpy writes: string keys,
// values that are strings, True/False, or tuples of non-negative integers.
class HeaderDict {
 public:
  HeaderDict(const std::string& text, const std::string& what) : text_(text), what_(what) {}

  // Fills descr, fortran_order and shape; every one of the three keys must
  // appear once and no other key may.
  void parse(std::string& descr, bool& fortran_order, std::vector<int64_t>& shape) {
    bool seen_descr = false, seen_fortran = false, seen_shape = false;
    skip_space();
    expect('{');
    for (;;) {
      skip_space();
      if (eat('}')) break;
      const std::string key = string_literal();
      skip_space();
      expect(':');
      skip_space();
      if (key == "descr" && !seen_descr) {
        if (peek() == '[') reject("structured dtypes (a list of fields in 'descr') are not supported");
        descr = string_literal();
        seen_descr = true;
      } else if (key == "fortran_order" && !seen_fortran) {
        fortran_order = boolean();
        seen_fortran = true;
      } else if (key == "shape" && !seen_shape) {
        shape = tuple();
        seen_shape = true;
      } else {
        reject("unexpected or repeated key '" + key + "'");
      }
      skip_space();
      if (!eat(',')) {
        skip_space();
        expect('}');
        break;
      }
    }
    skip_space();
    if (pos_ != text_.size()) reject("text after the closing '}'");
    if (!seen_descr || !seen_fortran || !seen_shape)
      reject(std::string("missing key '") + (!seen_descr ? "descr" : !seen_fortran ? "fortran_order" : "shape") + "'");
  }

 private:
  [[noreturn]] void reject(const std::string& why) {
    fail(what_ + ": bad .npy header: " + why + " at byte " + std::to_string(pos_) + " of \"" + printable(text_) +
         "\"; was it written by numpy.save?");
  }
  char peek() const { return pos_ < text_.size() ? text_[pos_] : '\0'; }
  bool eat(char c) {
    if (peek() != c || pos_ >= text_.size()) return false;
    ++pos_;
    return true;
  }
  void expect(char c) {
    if (!eat(c)) reject(std::string("expected '") + c + "'");
  }
  void skip_space() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t' || text_[pos_] == '\n')) ++pos_;
  }
  std::string string_literal() {
    const char quote = peek();
    if (quote != '\'' && quote != '"') reject("expected a quoted string");
    const size_t end = text_.find(quote, ++pos_);
    if (end == std::string::npos) reject("unterminated string");
    std::string s = text_.substr(pos_, end - pos_);
    if (s.find('\\') != std::string::npos) reject("escape sequence in a string");
    pos_ = end + 1;
    return s;
  }
  bool boolean() {
    if (text_.compare(pos_, 4, "True") == 0) return pos_ += 4, true;
    if (text_.compare(pos_, 5, "False") == 0) return pos_ += 5, false;
    reject("expected True or False");
  }
  std::vector<int64_t> tuple() {
    std::vector<int64_t> dims;
    expect('(');
    for (;;) {
      skip_space();
      if (eat(')')) return dims;
      if (!std::isdigit(static_cast<unsigned char>(peek()))) reject("expected a dimension (a non-negative integer)");
      int64_t v = 0;
      while (std::isdigit(static_cast<unsigned char>(peek()))) {
        if (__builtin_mul_overflow(v, int64_t(10), &v) || __builtin_add_overflow(v, int64_t(text_[pos_] - '0'), &v))
          reject("dimension too large");
        ++pos_;
      }
      eat('L');  // Python 2's long suffix, written by old numpy versions
      dims.push_back(v);
      skip_space();
      if (!eat(',')) {
        skip_space();
        expect(')');
        return dims;
      }
    }
  }

  const std::string& text_;
  const std::string& what_;
  size_t pos_ = 0;
};

// Checks the magic, version, header and total size; `bytes` holds exactly the
// header's elements after data_offset.
NpyHeader parse_npy_header(const std::vector<uint8_t>& bytes, const std::string& what) {
  if (bytes.size() < kMagicSize + 2 || std::memcmp(bytes.data(), kMagic, kMagicSize) != 0)
    fail(what + ": not a .npy file: it does not start with the magic \"\\x93NUMPY\" (" + std::to_string(bytes.size()) +
         " bytes); save it with numpy.save");
  const int major = bytes[6], minor = bytes[7];
  if (major < 1 || major > 3 || minor != 0)
    fail(what + ": unsupported .npy format version " + std::to_string(major) + "." + std::to_string(minor) +
         " (kdtrain reads 1.0, 2.0 and 3.0)");
  // 1.0 has a u16 header length, 2.0 and 3.0 a u32 (3.0 allows UTF-8 in it).
  const size_t length_bytes = major == 1 ? 2 : 4;
  const size_t prelude = kMagicSize + 2 + length_bytes;
  if (bytes.size() < prelude)
    fail(what + ": truncated .npy header: the file is " + std::to_string(bytes.size()) + " bytes, its version " +
         std::to_string(major) + ".0 prelude needs " + std::to_string(prelude));
  size_t header_length = 0;
  for (size_t i = 0; i < length_bytes; ++i) header_length |= size_t(bytes[8 + i]) << (8 * i);
  if (header_length > bytes.size() - prelude)
    fail(what + ": truncated .npy header: it claims " + std::to_string(header_length) + " bytes but only " +
         std::to_string(bytes.size() - prelude) + " follow the " + std::to_string(prelude) + "-byte prelude");

  NpyHeader h;
  h.data_offset = prelude + header_length;
  const std::string text(bytes.begin() + prelude, bytes.begin() + h.data_offset);
  bool fortran_order = false;
  HeaderDict(text, what).parse(h.descr, fortran_order, h.shape);

  // descr: byte order ('<' little, '>' big, '|' not applicable, '=' native), kind, size.
  // (Compared as strings: strchr would also "find" a NUL byte in the header.)
  const std::string type = h.descr.size() == 3 ? h.descr.substr(1) : "";
  const bool known_descr = h.descr.size() == 3 && std::string("<>|=").find(h.descr[0]) != std::string::npos &&
                           (type == "u1" || type == "i1" || type == "u2" || type == "i2" || type == "u4" ||
                            type == "i4" || type == "u8" || type == "i8" || type == "f4");
  if (!known_descr)
    fail(what + ": unsupported dtype '" + printable(h.descr) +
         "'; kdtrain reads uint8 or float32 images and integer labels: convert with arr.astype('u1') "
         "(values 0-255), arr.astype('<f4') (values in [0, 1]) or, for labels, arr.astype('<i8')");
  h.kind = h.descr[1];
  h.itemsize = h.descr[2] - '0';
  if (h.descr[0] == '>' && h.itemsize > 1)
    fail(what + ": big-endian dtype '" + h.descr + "' is not supported; save it little-endian: numpy.save(path, " +
         "arr.astype('<" + h.descr.substr(1) + "'))");
  if (fortran_order)
    fail(what +
         ": Fortran-order array (fortran_order: True) is not supported; save it in C order: "
         "numpy.save(path, numpy.ascontiguousarray(arr))");

  uint64_t data_bytes = uint64_t(h.itemsize);
  for (int64_t d : h.shape)
    if (__builtin_mul_overflow(data_bytes, uint64_t(d), &data_bytes))
      fail(what + ": shape " + shape_text(h.shape) + " overflows: too large to address");
  const uint64_t held = bytes.size() - h.data_offset;
  if (held != data_bytes)
    fail(what + ": size mismatch: shape " + shape_text(h.shape) + " of '" + h.descr + "' needs " +
         std::to_string(data_bytes) + " data bytes after the " + std::to_string(h.data_offset) +
         "-byte header, but the file holds " + std::to_string(held) +
         (held < data_bytes ? " (truncated?)" : " (trailing data?)"));
  return h;
}

// Element i of a little-endian integer array as a signed 64-bit value
// (u8 values above INT64_MAX come out negative, which the range check refuses).
int64_t integer_at(const uint8_t* data, const NpyHeader& h, size_t i) {
  uint64_t v = 0;
  for (int b = 0; b < h.itemsize; ++b) v |= uint64_t(data[i * h.itemsize + b]) << (8 * b);
  const int bits = 8 * h.itemsize;
  if (h.kind == 'i' && bits < 64 && (v >> (bits - 1)) & 1) v |= ~uint64_t(0) << bits;  // sign-extend
  return int64_t(v);
}

}  // namespace

Dataset parse_npy_images(const std::vector<uint8_t>& bytes, bool channels_last, const std::string& what) {
  const NpyHeader h = parse_npy_header(bytes, what);
  const std::string got = "shape " + shape_text(h.shape) + " of '" + h.descr + "'";
  if (h.descr.substr(1) != "u1" && h.descr.substr(1) != "f4")
    fail(what + ": images of dtype '" + h.descr +
         "' are not supported; kdtrain accepts uint8 (0-255) or float32 in "
         "[0, 1]: convert with arr.astype('u1') or (arr / 255).astype('<f4')");
  const size_t rank = h.shape.size();
  if (rank != 3 && rank != 4)
    fail(what + ": " + got + ": images must be (N, H, W), (N, C, H, W) or, with channels last, (N, H, W, C)");
  if (h.shape[0] == 0) fail(what + ": zero images: " + got);
  if (std::find(h.shape.begin(), h.shape.end(), 0) != h.shape.end()) fail(what + ": zero dimension in " + got);

  const bool nhwc = rank == 4 && channels_last;
  Dataset d;
  d.n = h.shape[0];
  const int64_t c = rank == 3 ? 1 : nhwc ? h.shape[3] : h.shape[1];
  const int64_t height = nhwc || rank == 3 ? h.shape[1] : h.shape[2];
  const int64_t width = nhwc || rank == 3 ? h.shape[2] : h.shape[3];
  if (c != 1 && c != 3)
    fail(what + ": " + got + " has " + std::to_string(c) + " channels; kdtrain takes 1 or 3" +
         (nhwc || rank == 3 ? "" : " (is the array (N, H, W, C)? then load it with channels last)"));
  if (height > INT_MAX || width > INT_MAX) fail(what + ": " + got + " overflows: images too large");
  d.c = int(c);
  d.h = int(height);
  d.w = int(width);

  const uint8_t* data = bytes.data() + h.data_offset;
  const size_t count = bytes.size() - h.data_offset;
  std::vector<uint8_t> values;
  if (h.kind == 'u') {
    values.assign(data, data + count);
  } else {
    values.resize(count / 4);
    for (size_t i = 0; i < values.size(); ++i) {
      float v;
      std::memcpy(&v, data + 4 * i, 4);
      if (!(v >= 0.0f && v <= 1.0f)) {  // also catches NaN
        char shown[32];
        std::snprintf(shown, sizeof shown, "%g", double(v));
        fail(what + ": value " + shown + " at element " + std::to_string(i) + " (image " +
             std::to_string(int64_t(i) / d.values_per_image()) + ") is outside [0, 1]; kdtrain accepts uint8 " +
             "images (0-255) or float32 images in [0, 1]: rescale, e.g. (arr / 255).astype('<f4')");
      }
      values[i] = uint8_t(std::lround(double(v) * 255.0));
    }
  }
  if (!nhwc) {
    d.images = std::move(values);
    return d;
  }
  // (N, H, W, C) -> (N, C, H, W)
  d.images.resize(values.size());
  const int64_t plane = d.pixels();
  for (int64_t i = 0; i < d.n; ++i)
    for (int64_t p = 0; p < plane; ++p)
      for (int64_t k = 0; k < c; ++k)
        d.images[size_t((i * c + k) * plane + p)] = values[size_t((i * plane + p) * c + k)];
  return d;
}

std::vector<uint8_t> parse_npy_labels(const std::vector<uint8_t>& bytes, const std::string& what) {
  const NpyHeader h = parse_npy_header(bytes, what);
  const std::string got = "shape " + shape_text(h.shape) + " of '" + h.descr + "'";
  if (h.kind != 'u' && h.kind != 'i')
    fail(what + ": labels of dtype '" + h.descr + "' are not integers; save class indices, e.g. arr.astype('<i8')");
  if (h.shape.size() != 1)
    fail(what + ": " + got + ": labels must be one-dimensional (N)" +
         (h.shape.size() == 2 && (h.shape[0] == 1 || h.shape[1] == 1) ? "; flatten with arr.ravel()" : ""));
  if (h.shape[0] == 0) fail(what + ": zero labels: " + got);
  const uint8_t* data = bytes.data() + h.data_offset;
  std::vector<uint8_t> labels(size_t(h.shape[0]));
  for (size_t i = 0; i < labels.size(); ++i) {
    const int64_t v = integer_at(data, h, i);
    // An unsigned u8 above INT64_MAX reads as negative: say it as written.
    if (v < 0 || v > 255)
      fail(what + ": label " + (h.kind == 'u' && v < 0 ? std::to_string(uint64_t(v)) : std::to_string(v)) +
           " at index " + std::to_string(i) +
           " is outside 0..255; labels are class indices 0, 1, ... (at most 256 classes)");
    labels[i] = uint8_t(v);
  }
  return labels;
}

Dataset load_npy_pair(const std::string& images_path, const std::string& labels_path, bool channels_last) {
  Dataset d = parse_npy_images(read_file_maybe_gzip(images_path), channels_last, images_path);
  attach_labels(d, parse_npy_labels(read_file_maybe_gzip(labels_path), labels_path), images_path, labels_path);
  return d;
}

TrainTest load_npy_dir(const std::string& dir, bool channels_last) {
  TrainTest t;
  t.train_images = (fs::path(dir) / kNpyTrainImages).string();
  t.train_labels = (fs::path(dir) / kNpyTrainLabels).string();
  t.test_images = (fs::path(dir) / kNpyTestImages).string();
  t.test_labels = (fs::path(dir) / kNpyTestLabels).string();
  t.train = load_npy_pair(t.train_images, t.train_labels, channels_last);
  t.test = load_npy_pair(t.test_images, t.test_labels, channels_last);
  t.train.num_classes = t.test.num_classes = std::max(t.train.num_classes, t.test.num_classes);
  return t;
}

std::vector<uint8_t> npy_bytes_u8(const std::vector<int64_t>& shape, const std::vector<uint8_t>& values) {
  std::string header = "{'descr': '|u1', 'fortran_order': False, 'shape': " + shape_text(shape) + ", }";
  // numpy pads the header with spaces so the data starts 64-byte aligned.
  const size_t prelude = kMagicSize + 2 + 2;
  header.append(63 - (prelude + header.size()) % 64, ' ');
  header += '\n';
  // magic, version 1.0, u16 little-endian header length
  const std::string prelude_bytes =
      std::string(kMagic, kMagicSize) + '\x01' + '\x00' + char(header.size() & 0xff) + char(header.size() >> 8);
  std::vector<uint8_t> out(prelude_bytes.begin(), prelude_bytes.end());
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), values.begin(), values.end());
  return out;
}

void save_npy_dir(const std::string& dir, const TrainTest& data) {
  auto save = [&](const char* name, const std::vector<int64_t>& shape, const std::vector<uint8_t>& values) {
    const std::vector<uint8_t> bytes = npy_bytes_u8(shape, values);
    write_file_atomic((fs::path(dir) / name).string(), std::string(bytes.begin(), bytes.end()));
  };
  for (const bool train : {true, false}) {
    const Dataset& d = train ? data.train : data.test;
    save(train ? kNpyTrainImages : kNpyTestImages, {d.n, d.c, d.h, d.w}, d.images);
    save(train ? kNpyTrainLabels : kNpyTestLabels, {d.n}, d.labels);
  }
}

}  // namespace kd

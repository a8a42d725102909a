// safetensors reading, validation and atomic writing (see kd/checkpoint.h).
//
// File layout: an 8-byte little-endian u64 N, then N bytes of UTF-8 JSON (an
// object: tensor name -> {"dtype", "shape", "data_offsets": [begin, end]},
// plus an optional "__metadata__": {string: string}), then the data section.
// Offsets are relative to the start of the data section, and the tensors must
// tile it exactly: no overlaps, no gaps, no trailing bytes (what the reference
// Rust reader enforces, so a file we accept loads in PyTorch too).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "kd/safetensors.h"
#include "kd/error.h"

// Tensor bytes are copied to and from memory as they are, and safetensors is
// little-endian by definition; a big-endian build would write wrong files.
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "kdtrain's safetensors I/O assumes a little-endian host (safetensors data is little-endian)"
#endif

namespace fs = std::filesystem;

namespace kd {
namespace {

// ordered: the writer keeps the tensors in the caller's order, the reader
// keeps header order as the tie-break between zero-size tensors.
using json = nlohmann::ordered_json;

constexpr uint64_t kMaxHeaderBytes = 100'000'000;  // the reference reader's limit
constexpr const char* kMetadataKey = "__metadata__";
constexpr DType kAllDTypes[] = {DType::F32, DType::F64, DType::I32, DType::I64, DType::U8};

bool dtype_from_name(const std::string& name, DType& out) {
  for (DType d : kAllDTypes)
    if (name == dtype_name(d)) {
      out = d;
      return true;
    }
  return false;
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? "," : "") + std::to_string(shape[i]);
  return s + "]";
}

// A name from the file as quoted in an error message: control characters
// (JSON can escape a newline into a key) and excess length would break the
// one-line message.
std::string quote_name(const std::string& name) {
  std::string out = "'";
  for (size_t i = 0; i < name.size() && i < 100; ++i) out += (unsigned char)name[i] < 0x20 ? '?' : name[i];
  return out + (name.size() > 100 ? "...'" : "'");
}

// A JSON value as quoted in an error message: at most one short line.
std::string excerpt(const json& value) {
  std::string text = value.dump(-1, ' ', false, json::error_handler_t::replace);
  return text.size() > 80 ? text.substr(0, 80) + "..." : text;
}

// Bytes of a tensor of `shape` and `dtype`, or false when that does not fit in
// an int64 (the reader must not trust a forged shape).
bool checked_byte_count(const std::vector<int64_t>& shape, DType dtype, uint64_t& bytes) {
  uint64_t n = dtype_size(dtype);
  for (int64_t d : shape)
    if (d < 0 || __builtin_mul_overflow(n, uint64_t(d), &n)) return false;
  bytes = n;
  return n <= uint64_t(INT64_MAX);
}

std::string errno_text() { return std::strerror(errno); }

// Writes all of [data, data + size) to fd, retrying short writes and EINTR.
bool write_all(int fd, const uint8_t* data, size_t size) {
  while (size > 0) {
    const ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data += n;
    size -= size_t(n);
  }
  return true;
}

// Replaces `path` with [data, data + size) so that a reader sees either the
// old file or the whole new one: write <path>.tmp.<pid>, fsync, rename over
// path, fsync the directory so the rename itself survives a crash.
void write_bytes_atomic(const std::string& path, const uint8_t* data, size_t size) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail("cannot write " + path + ": cannot create " + tmp + ": " + errno_text());
  auto abandon = [&](const std::string& step) {
    const std::string reason = errno_text();  // before close and unlink can change errno
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    fail("cannot write " + path + ": " + step + " " + tmp + " failed: " + reason + "; " + path + " is unchanged");
  };
  if (!write_all(fd, data, size)) abandon("writing");
  if (::fsync(fd) != 0) abandon("fsync of");
  const int closed = ::close(fd);
  fd = -1;
  if (closed != 0) abandon("closing");
  if (::rename(tmp.c_str(), path.c_str()) != 0) abandon("renaming");

  std::string dir = fs::path(path).parent_path().string();
  if (dir.empty()) dir = ".";
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) fail("wrote " + path + " but cannot open its directory to fsync it: " + errno_text());
  // Some file systems cannot fsync a directory (EINVAL); the rename is then as
  // durable as that file system makes it, which is not an error of ours.
  const bool synced = ::fsync(dir_fd) == 0 || errno == EINVAL || errno == ENOTSUP;
  const std::string reason = errno_text();
  ::close(dir_fd);
  if (!synced) fail("wrote " + path + " but fsync of its directory " + dir + " failed: " + reason);
}

// Where one tensor's bytes lie in the data section, for the coverage check.
struct Extent {
  uint64_t begin = 0, end = 0;
  size_t tensor = 0;  // index into the parsed tensors
};

// Reads an array of unsigned JSON integers, or returns false.
bool read_unsigned_list(const json& value, std::vector<uint64_t>& out) {
  if (!value.is_array()) return false;
  out.clear();
  for (const json& v : value) {
    if (!v.is_number_unsigned()) return false;
    out.push_back(v.get<uint64_t>());
  }
  return true;
}

// One header entry -> a TensorData with empty bytes, and where its bytes lie.
TensorData parse_tensor_entry(const std::string& name, const json& entry, uint64_t data_size, const std::string& what,
                              Extent& extent) {
  const std::string where = what + ": tensor " + quote_name(name);
  if (!entry.is_object()) fail(where + ": header entry is " + entry.type_name() + ", expected an object");
  for (const char* key : {"dtype", "shape", "data_offsets"})
    if (!entry.contains(key)) fail(where + ": header entry has no '" + key + "'");
  for (const auto& item : entry.items())
    if (item.key() != "dtype" && item.key() != "shape" && item.key() != "data_offsets")
      fail(where + ": unexpected key " + quote_name(item.key()) +
           " in its header entry (expected dtype, shape, data_offsets)");

  TensorData t;
  t.name = name;
  const json& dtype = entry["dtype"];
  if (!dtype.is_string() || !dtype_from_name(dtype.get<std::string>(), t.dtype))
    fail(where + ": unsupported dtype " + excerpt(dtype) + " (kdtrain reads F32, F64, I32, I64, U8)");

  std::vector<uint64_t> dims;
  if (!read_unsigned_list(entry["shape"], dims))
    fail(where + ": shape " + excerpt(entry["shape"]) + " is not a list of non-negative integers");
  for (uint64_t d : dims) {
    if (d > uint64_t(INT64_MAX)) fail(where + ": shape " + excerpt(entry["shape"]) + " overflows an int64");
    t.shape.push_back(int64_t(d));
  }
  uint64_t expected_bytes = 0;
  if (!checked_byte_count(t.shape, t.dtype, expected_bytes))
    fail(where + ": shape " + shape_text(t.shape) + " x " + dtype_name(t.dtype) + " overflows: too many elements");

  std::vector<uint64_t> offsets;
  const json& offsets_json = entry["data_offsets"];
  if (!read_unsigned_list(offsets_json, offsets) || offsets.size() != 2 || offsets[0] > offsets[1])
    fail(where + ": data_offsets " + excerpt(offsets_json) +
         " are not two non-decreasing non-negative integers [begin, end]");
  if (offsets[1] > data_size)
    fail(where + ": data_offsets [" + std::to_string(offsets[0]) + ", " + std::to_string(offsets[1]) +
         "] run past the data section (" + std::to_string(data_size) + " bytes); truncated file?");
  const uint64_t span = offsets[1] - offsets[0];
  if (span != expected_bytes)
    fail(where + ": shape " + shape_text(t.shape) + " x " + dtype_name(t.dtype) + " needs " +
         std::to_string(expected_bytes) + " bytes, but its data_offsets span " + std::to_string(span));
  extent.begin = offsets[0];
  extent.end = offsets[1];
  return t;
}

std::map<std::string, std::string> parse_metadata(const json& value, const std::string& what) {
  if (!value.is_object()) fail(what + ": __metadata__ is " + std::string(value.type_name()) + ", expected an object");
  std::map<std::string, std::string> out;
  for (const auto& item : value.items()) {
    if (!item.value().is_string())
      fail(what + ": __metadata__ value of " + quote_name(item.key()) + " is " + item.value().type_name() +
           ", expected a string");
    out[item.key()] = item.value().get<std::string>();
  }
  return out;
}

// The JSON library's reason without its "[json.exception.X] ... : " prefix. It
// quotes the token being read, which a corrupt file can make arbitrarily
// long, so it is cut to keep the message one readable line.
std::string json_error_reason(const json::exception& e) {
  std::string reason = e.what();  // "[json.exception.parse_error.101] parse error at line 1, column 5: reason"
  const size_t tag_end = reason.find("] ");
  if (tag_end != std::string::npos) reason.erase(0, tag_end + 2);
  const size_t position_end = reason.find(": ");
  if (reason.rfind("parse error", 0) == 0 && position_end != std::string::npos) reason.erase(0, position_end + 2);
  return reason.size() > 200 ? reason.substr(0, 200) + "..." : reason;
}

// Parses the JSON header, reporting the first key that repeats within one
// object (the DOM parser would silently keep only the last value).
json parse_header_json(const uint8_t* begin, const uint8_t* end, const std::string& what) {
  std::vector<std::set<std::string>> keys_per_open_object;
  std::string duplicate;
  auto note_duplicates = [&](int, json::parse_event_t event, json& parsed) {
    using Event = json::parse_event_t;
    if (event == Event::object_start) keys_per_open_object.emplace_back();
    if (event == Event::object_end) keys_per_open_object.pop_back();
    if (event == Event::key && !keys_per_open_object.back().insert(parsed.get<std::string>()).second &&
        duplicate.empty())
      duplicate = parsed.get<std::string>();
    return true;
  };
  json header;
  try {
    header = json::parse(begin, end, note_duplicates);
  } catch (const json::parse_error& e) {
    fail(what + ": malformed JSON header (" + std::to_string(end - begin) + " bytes) at byte " +
         std::to_string(e.byte) + ": " + json_error_reason(e));
  } catch (const json::exception& e) {  // e.g. a number too large for a double
    fail(what + ": malformed JSON header (" + std::to_string(end - begin) + " bytes): " + json_error_reason(e));
  }
  if (!duplicate.empty())
    fail(what + ": key " + quote_name(duplicate) + " appears twice in one object of the JSON header");
  return header;
}

}  // namespace

const char* dtype_name(DType d) {
  switch (d) {
    case DType::F32: return "F32";
    case DType::F64: return "F64";
    case DType::I32: return "I32";
    case DType::I64: return "I64";
    case DType::U8: return "U8";
  }
  return "?";
}

size_t dtype_size(DType d) {
  switch (d) {
    case DType::F32: return 4;
    case DType::F64: return 8;
    case DType::I32: return 4;
    case DType::I64: return 8;
    case DType::U8: return 1;
  }
  return 0;
}

int64_t TensorData::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

TensorData TensorData::from_f32(const std::string& name, std::vector<int64_t> shape, const float* data) {
  TensorData t;
  t.name = name;
  t.dtype = DType::F32;
  t.shape = std::move(shape);
  t.bytes.resize(size_t(t.numel()) * sizeof(float));
  if (!t.bytes.empty()) std::memcpy(t.bytes.data(), data, t.bytes.size());
  return t;
}

std::vector<float> TensorData::to_f32() const {
  if (dtype != DType::F32) fail("tensor " + quote_name(name) + " is " + dtype_name(dtype) + ", expected F32");
  if (bytes.size() != size_t(numel()) * sizeof(float))
    fail("tensor " + quote_name(name) + " holds " + std::to_string(bytes.size()) + " bytes, its shape " +
         shape_text(shape) + " x F32 needs " + std::to_string(size_t(numel()) * sizeof(float)));
  std::vector<float> out(static_cast<size_t>(numel()));
  if (!out.empty()) std::memcpy(out.data(), bytes.data(), bytes.size());
  return out;
}

const TensorData& SafeTensors::get(const std::string& name) const {
  if (const TensorData* t = find(name)) return *t;
  std::string names;
  for (size_t i = 0; i < tensors.size() && i < 8; ++i) names += (i ? ", " : "") + quote_name(tensors[i].name);
  if (tensors.size() > 8) names += ", ... (" + std::to_string(tensors.size()) + " in all)";
  fail("no tensor named " + quote_name(name) + " (the file holds: " + (names.empty() ? "no tensors" : names) + ")");
}

const TensorData* SafeTensors::find(const std::string& name) const {
  for (const TensorData& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

std::vector<uint8_t> serialize_safetensors(const SafeTensors& st) {
  json header = json::object();
  if (!st.metadata.empty()) header[kMetadataKey] = st.metadata;
  uint64_t offset = 0;
  for (const TensorData& t : st.tensors) {
    const std::string where = "serialize_safetensors: tensor " + quote_name(t.name);
    if (t.name == kMetadataKey) fail(where + ": the name is reserved for the metadata");
    if (header.contains(t.name)) fail(where + ": the name appears twice");
    uint64_t expected = 0;
    if (!checked_byte_count(t.shape, t.dtype, expected))
      fail(where + ": shape " + shape_text(t.shape) + " has a negative or overflowing dimension");
    if (t.bytes.size() != expected)
      fail(where + ": holds " + std::to_string(t.bytes.size()) + " bytes, shape " + shape_text(t.shape) + " x " +
           dtype_name(t.dtype) + " needs " + std::to_string(expected));
    header[t.name] = {
        {"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + expected}}};
    offset += expected;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const json::exception& e) {
    fail(std::string("serialize_safetensors: tensor names and metadata must be valid UTF-8: ") + e.what());
  }
  text.append((8 - text.size() % 8) % 8, ' ');

  std::vector<uint8_t> out;
  out.reserve(8 + text.size() + offset);
  const uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) out.push_back(uint8_t(n >> (8 * i)));
  out.insert(out.end(), text.begin(), text.end());
  for (const TensorData& t : st.tensors) out.insert(out.end(), t.bytes.begin(), t.bytes.end());
  return out;
}

SafeTensors parse_safetensors(const uint8_t* data, size_t size, const std::string& what) {
  if (size < 8)
    fail(what + ": file is " + std::to_string(size) +
         " bytes, shorter than the 8-byte header length of a safetensors file (truncated?)");
  uint64_t header_size = 0;
  for (int i = 0; i < 8; ++i) header_size |= uint64_t(data[i]) << (8 * i);
  if (header_size > kMaxHeaderBytes)
    fail(what + ": header length " + std::to_string(header_size) + " bytes is absurd (limit " +
         std::to_string(kMaxHeaderBytes) + "); not a safetensors file, or corrupt");
  if (header_size > size - 8)
    fail(what + ": header length " + std::to_string(header_size) + " bytes runs past the end of the " +
         std::to_string(size) + "-byte file (truncated?)");

  const json header = parse_header_json(data + 8, data + 8 + header_size, what);
  if (!header.is_object()) fail(what + ": JSON header is " + std::string(header.type_name()) + ", expected an object");

  const uint8_t* data_section = data + 8 + header_size;
  const uint64_t data_size = size - 8 - header_size;
  SafeTensors st;
  std::vector<Extent> extents;
  for (const auto& item : header.items()) {
    if (item.key() == kMetadataKey) {
      st.metadata = parse_metadata(item.value(), what);
      continue;
    }
    Extent e;
    e.tensor = st.tensors.size();
    st.tensors.push_back(parse_tensor_entry(item.key(), item.value(), data_size, what, e));
    extents.push_back(e);
  }

  // The tensors, ordered by where their bytes start, must tile the data section.
  std::stable_sort(extents.begin(), extents.end(), [](const Extent& a, const Extent& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t covered = 0;
  std::string previous;
  for (const Extent& e : extents) {
    const std::string name = quote_name(st.tensors[e.tensor].name);
    if (e.begin < covered)
      fail(what + ": tensor " + name + " (bytes " + std::to_string(e.begin) + ".." + std::to_string(e.end) +
           ") overlaps tensor " + previous + " (ending at byte " + std::to_string(covered) + ")");
    if (e.begin > covered)
      fail(what + ": data bytes " + std::to_string(covered) + ".." + std::to_string(e.begin) +
           " belong to no tensor (a gap before tensor " + name + "); safetensors data must be contiguous");
    covered = e.end;
    previous = name;
  }
  if (covered != data_size)
    fail(what + ": the data section has " + std::to_string(data_size) + " bytes but the tensors cover only " +
         std::to_string(covered) + " (trailing bytes or a missing tensor)");

  std::vector<TensorData> ordered;
  ordered.reserve(extents.size());
  for (const Extent& e : extents) {
    TensorData& t = st.tensors[e.tensor];
    t.bytes.assign(data_section + e.begin, data_section + e.end);
    ordered.push_back(std::move(t));
  }
  st.tensors = std::move(ordered);
  return st;
}

void save_safetensors(const std::string& path, const SafeTensors& st) {
  const std::vector<uint8_t> bytes = serialize_safetensors(st);
  write_bytes_atomic(path, bytes.data(), bytes.size());
}

SafeTensors load_safetensors(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(path + ": cannot open safetensors file: " + errno_text());
  struct stat info {};
  const bool stat_ok = ::fstat(fd, &info) == 0;
  if (!stat_ok || !S_ISREG(info.st_mode)) {
    const std::string reason = !stat_ok                ? errno_text()
                               : S_ISDIR(info.st_mode) ? "it is a directory"
                                                       : "not a regular file";
    ::close(fd);
    fail(path + ": cannot read safetensors file: " + reason);
  }
  std::vector<uint8_t> bytes(size_t(info.st_size));
  size_t got = 0;
  while (got < bytes.size()) {
    const ssize_t n = ::read(fd, bytes.data() + got, bytes.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const std::string reason = n < 0 ? errno_text() : "the file shrank while being read";
      ::close(fd);
      fail(path + ": cannot read safetensors file: " + reason);
    }
    got += size_t(n);
  }
  ::close(fd);
  return parse_safetensors(bytes.data(), bytes.size(), path);
}

void write_file_atomic(const std::string& path, const std::string& contents) {
  write_bytes_atomic(path, reinterpret_cast<const uint8_t*>(contents.data()), contents.size());
}

}  // namespace kd

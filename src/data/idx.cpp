// IDX file reading and validation (see kd/data.h).
//
// IDX layout: a 4-byte big-endian magic {0, 0, dtype, rank}, then `rank`
// big-endian u32 dimensions, then the elements in row-major order. kdtrain
// reads dtype 0x08 (u8) only: images are rank 3 (magic 2051, N x H x W),
// labels rank 1 (magic 2049, N).
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <new>

#include "kd/data.h"
#include "kd/error.h"

namespace fs = std::filesystem;

namespace kd {
namespace {

constexpr uint8_t kIdxTypeU8 = 0x08;

// What one kind of IDX file must look like, and what the other kind looks
// like so that a swapped pair gets a hint instead of a bare "wrong rank".
struct IdxKind {
  int rank;
  const char* noun;   // "image", "label"
  const char* shape;  // "N x H x W"
  int other_rank;
  const char* other_noun;
};
constexpr IdxKind kImageKind{3, "image", "N x H x W", 1, "label"};
constexpr IdxKind kLabelKind{1, "label", "N", 3, "image"};

uint32_t magic_for_rank(int rank) { return (uint32_t(kIdxTypeU8) << 8) | uint32_t(rank); }

uint32_t read_be32(const uint8_t* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}

std::string hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08X", v);
  return buf;
}

std::string hex8(uint8_t v) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%02X", v);
  return buf;
}

std::string join_dims(const std::vector<uint32_t>& dims) {
  std::string s;
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? " x " : "") + std::to_string(dims[i]);
  return s;
}

// Checks the magic, header and total size of an IDX file of `kind` and
// returns its dimensions; the elements start at byte 4 + 4 * kind.rank and
// fill the rest of `bytes` exactly.
std::vector<uint32_t> parse_idx_header(const std::vector<uint8_t>& bytes, const std::string& what,
                                       const IdxKind& kind) {
  const uint32_t expected_magic = magic_for_rank(kind.rank);
  const std::string expected = "expected magic " + std::to_string(expected_magic) + " (" + hex32(expected_magic) +
                               ") for an IDX " + kind.noun + " file";
  if (bytes.size() < 4)
    fail(what + ": truncated IDX file: " + std::to_string(bytes.size()) +
         " bytes, shorter than the 4-byte magic number");
  const uint32_t magic = read_be32(bytes.data());
  const uint8_t dtype = bytes[2], rank = bytes[3];
  if (bytes[0] != 0 || bytes[1] != 0)
    fail(what + ": wrong magic number " + std::to_string(magic) + " (" + hex32(magic) + "), " + expected +
         "; is this an IDX file?");
  if (dtype != kIdxTypeU8)
    fail(what + ": element type byte " + hex8(dtype) + " in magic " + hex32(magic) + " is not 0x08 (unsigned byte); " +
         expected + " (kdtrain reads u8 IDX files only)");
  if (rank == kind.other_rank)
    fail(what + ": wrong magic number " + std::to_string(magic) + " (rank " + std::to_string(rank) + ", an IDX " +
         kind.other_noun + " file), " + expected + " (rank " + std::to_string(kind.rank) +
         "); are the image and label files swapped?");
  if (rank != kind.rank)
    fail(what + ": wrong rank " + std::to_string(rank) + " in magic " + hex32(magic) + "; IDX " + kind.noun +
         " files have rank " + std::to_string(kind.rank) + " (" + kind.shape + "), " + expected);

  const size_t header_bytes = 4 + 4 * size_t(kind.rank);
  if (bytes.size() < header_bytes)
    fail(what + ": truncated IDX header: the file is " + std::to_string(bytes.size()) + " bytes, its rank-" +
         std::to_string(kind.rank) + " header needs " + std::to_string(header_bytes));
  std::vector<uint32_t> dims(kind.rank);
  for (int i = 0; i < kind.rank; ++i) dims[i] = read_be32(bytes.data() + 4 + 4 * i);

  if (dims[0] == 0) fail(what + ": zero " + kind.noun + "s: the header count is 0 (" + join_dims(dims) + ")");
  if (std::find(dims.begin(), dims.end(), 0u) != dims.end())
    fail(what + ": zero dimension in the header (" + join_dims(dims) + ", " + kind.shape + ")");
  // Image sides become ints and products of them int64s downstream.
  uint64_t elements = 1;
  for (int i = 0; i < kind.rank; ++i) {
    const bool side_too_large = i > 0 && dims[i] > uint32_t(INT_MAX);
    if (side_too_large || __builtin_mul_overflow(elements, uint64_t(dims[i]), &elements) ||
        elements > uint64_t(INT64_MAX) - header_bytes)
      fail(what + ": header dimensions " + join_dims(dims) + " overflow: too large to address");
  }
  const uint64_t expected_bytes = header_bytes + elements;
  if (uint64_t(bytes.size()) != expected_bytes)
    fail(what + ": size mismatch: the header (" + join_dims(dims) + ") needs " + std::to_string(expected_bytes) +
         " bytes including its " + std::to_string(header_bytes) + "-byte header, but the file holds " +
         std::to_string(bytes.size()) +
         (uint64_t(bytes.size()) < expected_bytes ? " (truncated?)" : " (trailing data?)"));
  return dims;
}

// Inflates a whole gzip file (all members, as gunzip does).
std::vector<uint8_t> gunzip(const std::vector<uint8_t>& in, const std::string& path) {
  z_stream zs{};
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) fail(path + ": cannot initialise zlib to decompress it");
  const std::unique_ptr<z_stream, int (*)(z_stream*)> end_inflate(&zs, inflateEnd);

  // zlib counts in uInt, so feed and drain at most 1 GiB per call.
  constexpr size_t kMaxChunk = size_t(1) << 30;
  std::vector<uint8_t> out;
  size_t in_pos = 0, out_pos = 0;
  try {
    // The trailer's last 4 bytes hold the (last member's) uncompressed size
    // mod 2^32; deflate expands at most ~1032:1, which bounds a forged value.
    const size_t trailer_size = in.size() >= 4 ? size_t(in[in.size() - 4]) | size_t(in[in.size() - 3]) << 8 |
                                                     size_t(in[in.size() - 2]) << 16 | size_t(in[in.size() - 1]) << 24
                                               : 0;
    out.resize(std::max<size_t>(std::min(trailer_size, in.size() * 1032), size_t(1) << 16));
    for (;;) {
      if (zs.avail_in == 0 && in_pos < in.size()) {
        const size_t chunk = std::min(in.size() - in_pos, kMaxChunk);
        zs.next_in = const_cast<Bytef*>(in.data() + in_pos);
        zs.avail_in = uInt(chunk);
        in_pos += chunk;
      }
      if (out_pos == out.size()) out.resize(out.size() * 2);
      const uInt room = uInt(std::min(out.size() - out_pos, kMaxChunk));
      zs.next_out = out.data() + out_pos;
      zs.avail_out = room;
      const int rc = inflate(&zs, Z_NO_FLUSH);
      out_pos += room - zs.avail_out;
      const bool input_exhausted = zs.avail_in == 0 && in_pos == in.size();
      if (rc == Z_STREAM_END) {
        if (input_exhausted) break;
        inflateReset(&zs);  // another gzip member follows
      } else if (rc == Z_BUF_ERROR && input_exhausted) {
        fail(path + ": truncated gzip file: the compressed data ends early (after " + std::to_string(out_pos) +
             " decompressed bytes); fetch it again");
      } else if (rc == Z_MEM_ERROR) {
        fail(path + ": out of memory while decompressing");
      } else if (rc != Z_OK && rc != Z_BUF_ERROR) {
        fail(path + ": corrupt gzip data (zlib: " + (zs.msg ? std::string(zs.msg) : "error " + std::to_string(rc)) +
             "); fetch it again");
      }
    }
  } catch (const std::bad_alloc&) {
    fail(path + ": out of memory while decompressing (" + std::to_string(out_pos) + " bytes so far)");
  }
  out.resize(out_pos);
  return out;
}

}  // namespace

std::vector<uint8_t> read_file_maybe_gzip(const std::string& path) {
  std::error_code ec;
  const fs::file_status status = fs::status(path, ec);
  if (!fs::exists(status)) fail(path + ": missing file: no such file or directory");
  if (fs::is_directory(status)) fail(path + ": is a directory, not a file");

  std::unique_ptr<FILE, int (*)(FILE*)> file(std::fopen(path.c_str(), "rb"), std::fclose);
  if (!file) fail(path + ": cannot open: " + std::strerror(errno));
  std::vector<uint8_t> bytes;
  const uintmax_t size_hint = fs::file_size(path, ec);
  if (!ec) bytes.reserve(size_t(size_hint));
  uint8_t buf[1 << 16];
  size_t got;
  while ((got = std::fread(buf, 1, sizeof buf, file.get())) > 0) bytes.insert(bytes.end(), buf, buf + got);
  if (std::ferror(file.get())) fail(path + ": read error: " + std::strerror(errno));

  const bool gzipped = bytes.size() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b;
  return gzipped ? gunzip(bytes, path) : bytes;
}

Dataset parse_idx_images(const std::vector<uint8_t>& bytes, const std::string& what) {
  const std::vector<uint32_t> dims = parse_idx_header(bytes, what, kImageKind);
  Dataset d;
  d.n = int64_t(dims[0]);
  d.h = int(dims[1]);
  d.w = int(dims[2]);
  d.images.assign(bytes.begin() + 16, bytes.end());
  return d;
}

std::vector<uint8_t> parse_idx_labels(const std::vector<uint8_t>& bytes, const std::string& what) {
  parse_idx_header(bytes, what, kLabelKind);
  return std::vector<uint8_t>(bytes.begin() + 8, bytes.end());
}

void attach_labels(Dataset& d, std::vector<uint8_t> labels, const std::string& images_path,
                   const std::string& labels_path) {
  if (int64_t(labels.size()) != d.n)
    fail("image/label count mismatch: " + images_path + " holds " + std::to_string(d.n) + " images but " + labels_path +
         " holds " + std::to_string(labels.size()) + " labels");
  d.labels = std::move(labels);
  d.num_classes = d.labels.empty() ? 0 : 1 + *std::max_element(d.labels.begin(), d.labels.end());
}

Dataset load_idx_pair(const std::string& images_path, const std::string& labels_path) {
  Dataset d = parse_idx_images(read_file_maybe_gzip(images_path), images_path);
  attach_labels(d, parse_idx_labels(read_file_maybe_gzip(labels_path), labels_path), images_path, labels_path);
  return d;
}

std::string find_idx_file(const std::string& dir, const std::string& base) {
  const std::string plain = (fs::path(dir) / base).string();
  const std::string gz = plain + ".gz";
  std::error_code ec;
  if (fs::exists(plain, ec)) return plain;
  if (fs::exists(gz, ec)) return gz;
  if (!fs::is_directory(dir, ec))
    fail(dir + ": missing data directory (looked for " + base + " in it); run data/fetch.sh or pass --data DIR");
  fail(dir + ": missing file " + base + ": neither " + plain + " nor " + gz +
       " exists; run data/fetch.sh or pass --data DIR with MNIST-format files");
}

}  // namespace kd

// Shared helpers for the data-format tests: IDX and .npy files built byte by
// byte (independently of the readers under test) and a fresh temporary
// directory per test.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <string>
#include <vector>

namespace kd::test {

using Bytes = std::vector<uint8_t>;

inline void put_be32(Bytes& b, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) b.push_back(uint8_t(v >> shift));
}

// An IDX file: magic, big-endian dimensions, payload (not checked against the dimensions).
inline Bytes idx_bytes(uint32_t magic, std::initializer_list<uint32_t> dims, const Bytes& payload) {
  Bytes b;
  put_be32(b, magic);
  for (uint32_t d : dims) put_be32(b, d);
  b.insert(b.end(), payload.begin(), payload.end());
  return b;
}

// n images of h x w whose every pixel of image i is (i * 7 + pixel index) % 256,
// so a row can be recognised after slicing.
inline Bytes image_pixels(uint32_t n, uint32_t h, uint32_t w) {
  Bytes p(size_t(n) * h * w);
  for (size_t i = 0; i < p.size(); ++i) p[i] = uint8_t((i / (h * w)) * 7 + i % (h * w));
  return p;
}

inline Bytes idx_images(uint32_t n, uint32_t h, uint32_t w) {
  return idx_bytes(2051, {n, h, w}, image_pixels(n, h, w));
}
inline Bytes idx_labels(const Bytes& labels) { return idx_bytes(2049, {uint32_t(labels.size())}, labels); }

// A .npy file of format version `major`.0 whose header is `dict` (padded and
// ended with '\n' as numpy does) followed by `data`.
inline Bytes npy_raw(const std::string& dict, const Bytes& data, int major = 1) {
  const size_t length_bytes = major == 1 ? 2 : 4;
  std::string header = dict;
  header.append(63 - (8 + length_bytes + header.size()) % 64, ' ');
  header += '\n';
  Bytes b = {0x93, 'N', 'U', 'M', 'P', 'Y', uint8_t(major), 0};
  for (size_t i = 0; i < length_bytes; ++i) b.push_back(uint8_t(header.size() >> (8 * i)));
  b.insert(b.end(), header.begin(), header.end());
  b.insert(b.end(), data.begin(), data.end());
  return b;
}

// A .npy file as numpy.save writes it; `shape` in Python's spelling, "(2, 3)" or "(5,)".
inline Bytes npy(const std::string& descr, const std::string& shape, const Bytes& data, int major = 1) {
  return npy_raw("{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape + ", }", data, major);
}

// The little-endian bytes of `values` (the tests run on little-endian hosts,
// as kdtrain does).
template <class T>
Bytes le_bytes(const std::vector<T>& values) {
  Bytes b(values.size() * sizeof(T));
  std::memcpy(b.data(), values.data(), b.size());
  return b;
}

// A fresh directory per test, removed afterwards.
class TempDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::path(::testing::TempDir()) / "kd_data_XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Writes `bytes` to <dir_>/<name>, creating folders on the way; returns the path.
  std::string write(const std::string& name, const Bytes& bytes) {
    const std::filesystem::path path = std::filesystem::path(dir_) / name;
    std::filesystem::create_directories(path.parent_path());
    std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    return path.string();
  }

  std::string dir_;
};

}  // namespace kd::test

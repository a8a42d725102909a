// safetensors: byte layout, round trips, every way a file can be wrong, atomic
// writes. Every file is crafted here byte by byte in a fresh temporary directory.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "error_test_util.h"
#include "kd/safetensors.h"
#include "kd/error.h"

namespace fs = std::filesystem;

namespace kd {
namespace {

using Bytes = std::vector<uint8_t>;

// A safetensors file from its parts: little-endian u64 length, header text, data.
Bytes file_bytes(const std::string& header, const Bytes& data, uint64_t declared_length) {
  Bytes b;
  for (int i = 0; i < 8; ++i) b.push_back(uint8_t(declared_length >> (8 * i)));
  b.insert(b.end(), header.begin(), header.end());
  b.insert(b.end(), data.begin(), data.end());
  return b;
}
Bytes file_bytes(const std::string& header, const Bytes& data) { return file_bytes(header, data, header.size()); }

// A TensorData of any dtype whose byte i is (seed + 37 i) mod 256, so a shifted
// or swapped payload is caught.
TensorData patterned(const std::string& name, DType dtype, std::vector<int64_t> shape, uint8_t seed) {
  TensorData t;
  t.name = name;
  t.dtype = dtype;
  t.shape = std::move(shape);
  t.bytes.resize(size_t(t.numel()) * dtype_size(dtype));
  for (size_t i = 0; i < t.bytes.size(); ++i) t.bytes[i] = uint8_t(seed + 37 * i);
  return t;
}

using test::error_of;
using test::expect_mentions;

// The error parse_safetensors gives for `bytes`, which must name the file.
std::string parse_error(const Bytes& bytes) {
  const std::string message = error_of([&] { parse_safetensors(bytes.data(), bytes.size(), "crafted.safetensors"); });
  expect_mentions(message, {"crafted.safetensors: "});
  return message;
}

// One valid F32 [2] tensor "w" at data offsets [0, 8] inside a header object.
const char* kValidEntry = R"("w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
const Bytes kEightBytes(8, 0x11);

std::string header_with(const std::string& entries) { return "{" + entries + "}"; }

// ------------------------------------------------------------ layout and round trips
TEST(SafeTensorsFormat, HeaderLayoutIsLengthThenPaddedJsonThenData) {
  SafeTensors st;
  st.metadata["arch"] = "flatten,dense:10";
  st.tensors.push_back(patterned("a", DType::F32, {2, 3}, 1));  // 24 bytes
  st.tensors.push_back(patterned("b", DType::U8, {5}, 2));      // 5 bytes
  st.tensors.push_back(patterned("c", DType::F64, {1}, 3));     // 8 bytes
  const Bytes bytes = serialize_safetensors(st);

  ASSERT_GE(bytes.size(), 8u);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t(bytes[i]) << (8 * i);
  EXPECT_EQ(n % 8, 0u) << "header is padded to a multiple of 8 so the data starts aligned";
  ASSERT_EQ(bytes.size(), 8 + n + 24 + 5 + 8);

  const std::string header(bytes.begin() + 8, bytes.begin() + 8 + std::ptrdiff_t(n));
  EXPECT_EQ(header.front(), '{');
  const size_t last = header.find_last_not_of(' ');
  EXPECT_EQ(header[last], '}');
  EXPECT_LT(header.size() - last - 1, 8u) << "padding is fewer than 8 spaces";

  const nlohmann::json j = nlohmann::json::parse(header);
  EXPECT_EQ(j["__metadata__"]["arch"], "flatten,dense:10");
  EXPECT_EQ(j["a"]["dtype"], "F32");
  EXPECT_EQ(j["a"]["shape"], nlohmann::json({2, 3}));
  EXPECT_EQ(j["a"]["data_offsets"], nlohmann::json({0, 24}));
  EXPECT_EQ(j["b"]["dtype"], "U8");
  EXPECT_EQ(j["b"]["data_offsets"], nlohmann::json({24, 29}));
  EXPECT_EQ(j["c"]["data_offsets"], nlohmann::json({29, 37}));
  EXPECT_EQ(j.size(), 4u);

  const Bytes data(bytes.begin() + 8 + std::ptrdiff_t(n), bytes.end());
  EXPECT_TRUE(std::equal(st.tensors[0].bytes.begin(), st.tensors[0].bytes.end(), data.begin()));
  EXPECT_TRUE(std::equal(st.tensors[1].bytes.begin(), st.tensors[1].bytes.end(), data.begin() + 24));
  EXPECT_TRUE(std::equal(st.tensors[2].bytes.begin(), st.tensors[2].bytes.end(), data.begin() + 29));
}

TEST(SafeTensorsFormat, FloatsAreStoredLittleEndian) {
  const float one = 1.0f;  // IEEE-754 0x3F800000
  SafeTensors st;
  st.tensors.push_back(TensorData::from_f32("x", {1}, &one));
  const Bytes bytes = serialize_safetensors(st);
  const Bytes tail(bytes.end() - 4, bytes.end());
  EXPECT_EQ(tail, (Bytes{0x00, 0x00, 0x80, 0x3F}));
}

TEST(SafeTensorsFormat, RoundTripKeepsDtypesShapesBytesOrderAndMetadata) {
  SafeTensors st;
  st.metadata = {{"format", "kdtrain"}, {"note", "quotes \" and \\ and unicode \xC3\xA9"}, {"empty", ""}};
  st.tensors.push_back(patterned("z.last.weight", DType::F32, {3, 2}, 10));
  st.tensors.push_back(patterned("a.first", DType::F64, {4}, 20));
  st.tensors.push_back(patterned("empty", DType::F32, {0, 4}, 30));
  st.tensors.push_back(patterned("ints", DType::I32, {2, 2}, 40));
  st.tensors.push_back(patterned("longs", DType::I64, {3}, 50));
  st.tensors.push_back(patterned("also_empty", DType::I64, {0}, 55));
  st.tensors.push_back(patterned("bytes", DType::U8, {7}, 60));
  st.tensors.push_back(patterned("scalar", DType::F64, {}, 70));
  const Bytes bytes = serialize_safetensors(st);
  const SafeTensors back = parse_safetensors(bytes.data(), bytes.size(), "round trip");

  EXPECT_EQ(back.metadata, st.metadata);
  ASSERT_EQ(back.tensors.size(), st.tensors.size());
  for (size_t i = 0; i < st.tensors.size(); ++i) {
    SCOPED_TRACE(st.tensors[i].name);
    EXPECT_EQ(back.tensors[i].name, st.tensors[i].name) << "order is the writer's order";
    EXPECT_EQ(back.tensors[i].dtype, st.tensors[i].dtype);
    EXPECT_EQ(back.tensors[i].shape, st.tensors[i].shape);
    EXPECT_EQ(back.tensors[i].bytes, st.tensors[i].bytes);
  }
  EXPECT_EQ(back.get("scalar").numel(), 1);
  EXPECT_EQ(back.get("empty").numel(), 0);
}

TEST(SafeTensorsFormat, EmptyFileHasOnlyAnObjectHeader) {
  const Bytes bytes = serialize_safetensors(SafeTensors{});
  EXPECT_EQ(bytes.size(), 16u) << "8-byte length + '{}' padded to 8";
  const SafeTensors back = parse_safetensors(bytes.data(), bytes.size(), "empty");
  EXPECT_TRUE(back.tensors.empty());
  EXPECT_TRUE(back.metadata.empty());
}

TEST(SafeTensorsFormat, ReaderOrdersTensorsByDataOffset) {
  // Header order differs from data order; the data order is the file's order.
  const std::string header = header_with(R"("second":{"dtype":"U8","shape":[2],"data_offsets":[2,4]},)"
                                         R"("first":{"dtype":"U8","shape":[2],"data_offsets":[0,2]})");
  const Bytes bytes = file_bytes(header, {1, 2, 3, 4});
  const SafeTensors st = parse_safetensors(bytes.data(), bytes.size(), "x");
  ASSERT_EQ(st.tensors.size(), 2u);
  EXPECT_EQ(st.tensors[0].name, "first");
  EXPECT_EQ(st.tensors[0].bytes, (Bytes{1, 2}));
  EXPECT_EQ(st.tensors[1].name, "second");
  EXPECT_EQ(st.tensors[1].bytes, (Bytes{3, 4}));
}

TEST(SafeTensorsFormat, F32HelpersConvertBothWays) {
  const std::vector<float> values = {1.5f, -2.25f, 0.0f, 3.0e-38f, -INFINITY, 7.0f};
  const TensorData t = TensorData::from_f32("w", {2, 3}, values.data());
  EXPECT_EQ(t.dtype, DType::F32);
  EXPECT_EQ(t.numel(), 6);
  EXPECT_EQ(t.bytes.size(), 24u);
  EXPECT_EQ(t.to_f32(), values);
  expect_mentions(error_of([] { patterned("d", DType::F64, {2}, 0).to_f32(); }), {"'d'", "F64", "F32"});
}

TEST(SafeTensorsFormat, DtypeNamesAndSizes) {
  EXPECT_STREQ(dtype_name(DType::F32), "F32");
  EXPECT_STREQ(dtype_name(DType::F64), "F64");
  EXPECT_STREQ(dtype_name(DType::I32), "I32");
  EXPECT_STREQ(dtype_name(DType::I64), "I64");
  EXPECT_STREQ(dtype_name(DType::U8), "U8");
  EXPECT_EQ(dtype_size(DType::F32), 4u);
  EXPECT_EQ(dtype_size(DType::F64), 8u);
  EXPECT_EQ(dtype_size(DType::I32), 4u);
  EXPECT_EQ(dtype_size(DType::I64), 8u);
  EXPECT_EQ(dtype_size(DType::U8), 1u);
}

TEST(SafeTensorsFormat, GetNamesTheMissingTensorAndFindReturnsNull) {
  SafeTensors st;
  st.tensors.push_back(patterned("fc1.weight", DType::F32, {2}, 0));
  EXPECT_EQ(&st.get("fc1.weight"), &st.tensors[0]);
  EXPECT_EQ(st.find("fc2.weight"), nullptr);
  expect_mentions(error_of([&] { st.get("fc2.weight"); }), {"'fc2.weight'", "fc1.weight"});
}

TEST(SafeTensorsFormat, WriterRejectsInconsistentTensors) {
  SafeTensors wrong_size;
  TensorData t = patterned("w", DType::F32, {3}, 0);
  t.bytes.pop_back();
  wrong_size.tensors.push_back(t);
  expect_mentions(error_of([&] { serialize_safetensors(wrong_size); }), {"'w'", "11 bytes", "needs 12"});

  SafeTensors duplicate;
  duplicate.tensors = {patterned("w", DType::U8, {1}, 0), patterned("w", DType::U8, {1}, 0)};
  expect_mentions(error_of([&] { serialize_safetensors(duplicate); }), {"'w'", "twice"});

  SafeTensors reserved;
  reserved.tensors.push_back(patterned("__metadata__", DType::U8, {1}, 0));
  expect_mentions(error_of([&] { serialize_safetensors(reserved); }), {"reserved"});

  SafeTensors negative;
  TensorData n = patterned("neg", DType::U8, {0}, 0);
  n.shape = {-1};
  negative.tensors.push_back(n);
  expect_mentions(error_of([&] { serialize_safetensors(negative); }), {"'neg'", "negative"});
}

// ------------------------------------------------------------ rejections
TEST(SafeTensorsReject, ShorterThanTheLengthField) {
  expect_mentions(parse_error(Bytes{1, 2, 3}), {"3 bytes", "8-byte"});
  expect_mentions(parse_error(Bytes{}), {"0 bytes"});
}

TEST(SafeTensorsReject, HeaderLengthBeyondTheFileSaysBothSizes) {
  const std::string header = header_with(kValidEntry);
  const Bytes bytes = file_bytes(header, kEightBytes, 1000);
  expect_mentions(parse_error(bytes), {"header length 1000", std::to_string(bytes.size()) + "-byte file"});
}

TEST(SafeTensorsReject, AbsurdHeaderLength) {
  expect_mentions(parse_error(file_bytes("{}", {}, uint64_t(1) << 40)), {"absurd", "100000000"});
  expect_mentions(parse_error(file_bytes("{}", {}, ~uint64_t(0))), {"absurd"});
}

TEST(SafeTensorsReject, MalformedJsonGivesTheBytePosition) {
  // The parser stops at the 'x' of the fourth byte.
  expect_mentions(parse_error(file_bytes(R"({"a"x})", {})), {"malformed JSON", "at byte 5"});
  expect_mentions(parse_error(file_bytes("", {})), {"malformed JSON"});
  expect_mentions(parse_error(file_bytes("{\"w\":1} trailing", {})), {"malformed JSON"});
  expect_mentions(parse_error(file_bytes("{\"\xFF\":{}}", {})), {"malformed JSON"});  // not UTF-8
  // A number beyond double range is rejected by the JSON library as out of range, not as a syntax error.
  expect_mentions(parse_error(file_bytes(R"({"w":{"dtype":"F32","shape":[1e400],"data_offsets":[0,8]}})", kEightBytes)),
                  {"malformed JSON", "number overflow", "1e400"});
}

TEST(SafeTensorsReject, HeaderThatIsNotAnObject) {
  expect_mentions(parse_error(file_bytes("[1,2]   ", {})), {"JSON header is array", "object"});
  expect_mentions(parse_error(file_bytes("\"text\"", {})), {"JSON header is string"});
}

TEST(SafeTensorsReject, EntryThatIsNotAnObject) {
  expect_mentions(parse_error(file_bytes(R"({"w":[1,2]})", {})), {"'w'", "array", "expected an object"});
}

TEST(SafeTensorsReject, MissingKeys) {
  expect_mentions(parse_error(file_bytes(R"({"w":{"shape":[2],"data_offsets":[0,8]}})", kEightBytes)),
                  {"'w'", "no 'dtype'"});
  expect_mentions(parse_error(file_bytes(R"({"w":{"dtype":"F32","data_offsets":[0,8]}})", kEightBytes)),
                  {"'w'", "no 'shape'"});
  expect_mentions(parse_error(file_bytes(R"({"w":{"dtype":"F32","shape":[2]}})", kEightBytes)),
                  {"'w'", "no 'data_offsets'"});
}

TEST(SafeTensorsReject, ExtraKey) {
  const std::string header = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"offset":3}})";
  expect_mentions(parse_error(file_bytes(header, kEightBytes)), {"'w'", "unexpected key 'offset'"});
}

TEST(SafeTensorsReject, UnknownDtype) {
  expect_mentions(parse_error(file_bytes(R"({"w":{"dtype":"BF16","shape":[4],"data_offsets":[0,8]}})", kEightBytes)),
                  {"'w'", "unsupported dtype \"BF16\"", "F32"});
  expect_mentions(parse_error(file_bytes(R"({"w":{"dtype":4,"shape":[2],"data_offsets":[0,8]}})", kEightBytes)),
                  {"unsupported dtype 4"});
}

TEST(SafeTensorsReject, ShapeThatIsNotNonNegativeIntegers) {
  for (const char* shape : {"[-2]", "[2.0]", "2", "[\"2\"]", "[[2]]", "null"}) {
    SCOPED_TRACE(shape);
    const std::string header = std::string(R"({"w":{"dtype":"F32","shape":)") + shape + R"(,"data_offsets":[0,8]}})";
    expect_mentions(parse_error(file_bytes(header, kEightBytes)), {"'w'", "shape", "not a list of non-negative"});
  }
}

TEST(SafeTensorsReject, ElementCountOverflow) {
  // 2^32 * 2^32 elements does not fit in 64 bits.
  const std::string header = R"({"w":{"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,8]}})";
  expect_mentions(parse_error(file_bytes(header, kEightBytes)), {"'w'", "overflows"});
  // 2^62 F32 elements are 2^64 bytes.
  const std::string bytes_overflow = R"({"w":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,8]}})";
  expect_mentions(parse_error(file_bytes(bytes_overflow, kEightBytes)), {"'w'", "overflows"});
}

TEST(SafeTensorsReject, DataOffsetsNotTwoIncreasingIntegers) {
  for (const char* offsets : {"[8,0]", "[0]", "[0,8,9]", "[0,-8]", "[0,8.5]", "\"0-8\"", "{}"}) {
    SCOPED_TRACE(offsets);
    const std::string header = std::string(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":)") + offsets + "}}";
    expect_mentions(parse_error(file_bytes(header, kEightBytes)), {"'w'", "data_offsets", "not two"});
  }
}

TEST(SafeTensorsReject, OffsetsBeyondTheDataSection) {
  const std::string header = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})";
  expect_mentions(parse_error(file_bytes(header, kEightBytes)), {"'w'", "[4, 12]", "past the data section (8 bytes)"});
}

TEST(SafeTensorsReject, TruncatedData) {
  SafeTensors st;
  st.tensors.push_back(patterned("w", DType::F32, {4}, 0));
  Bytes bytes = serialize_safetensors(st);
  bytes.resize(bytes.size() - 1);
  expect_mentions(parse_error(bytes), {"'w'", "past the data section (15 bytes)"});
}

TEST(SafeTensorsReject, OverlappingTensors) {
  const std::string header = header_with(R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                         R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]})");
  expect_mentions(parse_error(file_bytes(header, kEightBytes)), {"'b'", "overlaps tensor 'a'"});
}

TEST(SafeTensorsReject, GapInTheData) {
  const std::string header = header_with(R"("a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
                                         R"("b":{"dtype":"U8","shape":[4],"data_offsets":[4,8]})");
  expect_mentions(parse_error(file_bytes(header, kEightBytes)), {"bytes 2..4", "belong to no tensor", "'b'"});
}

TEST(SafeTensorsReject, DataNotFullyCovered) {
  const std::string header = R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  expect_mentions(parse_error(file_bytes(header, kEightBytes)), {"8 bytes", "cover only 4"});
}

TEST(SafeTensorsReject, ShapeTimesDtypeDisagreesWithByteLength) {
  const std::string header = R"({"w":{"dtype":"F64","shape":[2],"data_offsets":[0,8]}})";
  expect_mentions(parse_error(file_bytes(header, kEightBytes)), {"'w'", "[2] x F64", "needs 16", "span 8"});
}

TEST(SafeTensorsReject, NonStringMetadata) {
  const std::string header = header_with(std::string(R"("__metadata__":{"epochs":5},)") + kValidEntry);
  expect_mentions(parse_error(file_bytes(header, kEightBytes)), {"__metadata__", "'epochs'", "number", "string"});
  const std::string not_object = header_with(std::string(R"("__metadata__":"x",)") + kValidEntry);
  expect_mentions(parse_error(file_bytes(not_object, kEightBytes)), {"__metadata__ is string"});
}

TEST(SafeTensorsReject, DuplicateNames) {
  const std::string header = header_with(std::string(kValidEntry) + "," + kValidEntry);
  expect_mentions(parse_error(file_bytes(header, kEightBytes)), {"'w'", "twice"});
  const std::string duplicate_metadata = R"({"__metadata__":{"k":"1","k":"2"}})";
  expect_mentions(parse_error(file_bytes(duplicate_metadata, {})), {"'k'", "twice"});
}

// ------------------------------------------------------------ files
class SafeTensorsFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::path(::testing::TempDir()) / "kd_checkpoint_XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  std::vector<std::string> entries() const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir_)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }
  static Bytes read(const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }

  fs::path dir_;
};

TEST_F(SafeTensorsFiles, SaveThenLoadRoundTrips) {
  SafeTensors st;
  st.metadata["role"] = "teacher";
  st.tensors.push_back(patterned("conv1.weight", DType::F32, {4, 1, 3, 3}, 9));
  st.tensors.push_back(patterned("conv1.bias", DType::F32, {4}, 8));
  const std::string p = path("model.safetensors");
  save_safetensors(p, st);
  EXPECT_EQ(read(p), serialize_safetensors(st)) << "the file holds exactly the serialised bytes";
  const SafeTensors back = load_safetensors(p);
  EXPECT_EQ(back.metadata, st.metadata);
  ASSERT_EQ(back.tensors.size(), 2u);
  EXPECT_EQ(back.tensors[0].bytes, st.tensors[0].bytes);
  EXPECT_EQ(back.tensors[1].bytes, st.tensors[1].bytes);
  EXPECT_EQ(entries(), std::vector<std::string>{"model.safetensors"}) << "no temporary file is left behind";
}

TEST_F(SafeTensorsFiles, SaveReplacesAnExistingFile) {
  const std::string p = path("model.safetensors");
  { std::ofstream(p) << "an older, longer file that must disappear entirely ..............................."; }
  SafeTensors st;
  st.tensors.push_back(patterned("w", DType::U8, {3}, 5));
  save_safetensors(p, st);
  EXPECT_EQ(read(p), serialize_safetensors(st));
  EXPECT_EQ(entries(), std::vector<std::string>{"model.safetensors"});
}

TEST_F(SafeTensorsFiles, WriteFileAtomicWritesExactContents) {
  const std::string p = path("summary.json");
  const std::string contents = std::string("binary\0bytes\n", 13) + std::string(100000, 'x');
  write_file_atomic(p, contents);
  const Bytes got = read(p);
  EXPECT_EQ(std::string(got.begin(), got.end()), contents);
  write_file_atomic(p, "short");
  const Bytes again = read(p);
  EXPECT_EQ(std::string(again.begin(), again.end()), "short");
  EXPECT_EQ(entries(), std::vector<std::string>{"summary.json"});
}

TEST_F(SafeTensorsFiles, FailedWriteNamesThePathAndLeavesNoTemporaryFile) {
  // rename() cannot replace a non-empty directory, so the write fails after the
  // temporary file was written: it must be removed and the target left as it was.
  const std::string target = path("occupied");
  fs::create_directory(target);
  { std::ofstream(target + "/keep") << "x"; }
  expect_mentions(error_of([&] { write_file_atomic(target, "data"); }), {target, "renaming"});
  EXPECT_EQ(entries(), std::vector<std::string>{"occupied"});
  EXPECT_TRUE(fs::exists(target + "/keep"));

  const std::string no_dir = path("missing/model.safetensors");
  expect_mentions(error_of([&] { save_safetensors(no_dir, SafeTensors{}); }), {no_dir, "No such file or directory"});
}

TEST_F(SafeTensorsFiles, LoadOfAMissingFileNamesIt) {
  const std::string p = path("absent.safetensors");
  expect_mentions(error_of([&] { load_safetensors(p); }), {p, "No such file or directory"});
  expect_mentions(error_of([&] { load_safetensors(dir_.string()); }), {dir_.string(), "directory"});
}

TEST_F(SafeTensorsFiles, LoadOfATruncatedFileNamesIt) {
  SafeTensors st;
  st.tensors.push_back(patterned("w", DType::F32, {16}, 1));
  const std::string p = path("cut.safetensors");
  save_safetensors(p, st);
  fs::resize_file(p, fs::file_size(p) - 10);
  expect_mentions(error_of([&] { load_safetensors(p); }), {p + ": ", "'w'", "past the data section"});
}

}  // namespace
}  // namespace kd

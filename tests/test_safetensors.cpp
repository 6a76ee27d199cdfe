// safetensors reader: one hand-made bad file per rule of docs/VALIDATION.md §safetensors, each checked
// for its own error message; plus the misaligned-copy / aligned-view behaviour and the writer.
#include <cmath>
#include <cstring>
#include <tuple>

#include "loader/safetensors.h"
#include "ops/ops.h"
#include "ops/quant.h"
#include "tests/testutil.h"

using namespace sailvl;
using namespace sailvl::loader;

namespace {

// [u64 LE len(header)][header][data]
std::string make_file(const std::string& header, const std::string& data = "") {
  std::string out(8, '\0');
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + header + data;
}

std::string make_file_with_len(uint64_t n, const std::string& rest) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + rest;
}

SafetensorsHeader parse(const std::string& bytes) {
  return parse_safetensors(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()),
                           "bad.safetensors");
}

// Parsing must fail with BadModel, a message naming the file and containing `needle`.
::testing::AssertionResult rejects(const std::string& bytes, const std::string& needle) {
  try {
    parse(bytes);
  } catch (const Error& e) {
    const std::string m = e.what();
    if (e.kind() != ErrorKind::BadModel) return ::testing::AssertionFailure() << "wrong kind: " << m;
    if (m.find("bad.safetensors") == std::string::npos)
      return ::testing::AssertionFailure() << "message does not name the file: " << m;
    if (m.find(needle) == std::string::npos)
      return ::testing::AssertionFailure() << "message lacks \"" << needle << "\": " << m;
    return ::testing::AssertionSuccess() << m;
  }
  return ::testing::AssertionFailure() << "accepted a bad file";
}

const std::string kGood = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
const std::string kGoodData(8, '\x01');

}  // namespace

TEST(Safetensors, AcceptsMinimalValidFile) {
  SafetensorsHeader h = parse(make_file(kGood, kGoodData));
  ASSERT_EQ(h.tensors.size(), 1u);
  EXPECT_EQ(h.tensors[0].name, "a");
  EXPECT_EQ(h.tensors[0].dtype, DType::F32);
  EXPECT_EQ(h.tensors[0].shape, Shape({2}));
  EXPECT_EQ(h.tensors[0].end, 8u);
}

TEST(Safetensors, AcceptsEmptyHeaderObjectAndWhitespacePadding) {
  EXPECT_EQ(parse(make_file("{}")).tensors.size(), 0u);
  EXPECT_EQ(parse(make_file(" \t\n" + kGood + "   \r\n", kGoodData)).tensors.size(), 1u);
}

TEST(Safetensors, RejectsFileShorterThan8Bytes) {
  EXPECT_TRUE(rejects("", "shorter than the 8-byte"));
  EXPECT_TRUE(rejects(std::string(7, '\0'), "shorter than the 8-byte"));
}

TEST(Safetensors, RejectsHeaderLengthOverLimit) {
  EXPECT_TRUE(rejects(make_file_with_len(100'000'001, "{}"), "exceeds the limit of 100000000"));
  // 2^64 - 1: must not wrap around when compared with the file size.
  EXPECT_TRUE(rejects(make_file_with_len(~uint64_t{0}, "{}"), "exceeds the limit"));
}

TEST(Safetensors, RejectsHeaderLongerThanFile) {
  EXPECT_TRUE(rejects(make_file_with_len(100, "{}"), "header length 100 is longer than the file (2 bytes"));
}

TEST(Safetensors, RejectsInvalidUtf8InHeader) {
  EXPECT_TRUE(rejects(make_file("{\"a\xff\":1}"), "invalid UTF-8 at byte 3"));
  EXPECT_TRUE(rejects(make_file("{\"\xc0\xaf\":1}"), "invalid UTF-8"));      // overlong '/'
  EXPECT_TRUE(rejects(make_file("{\"\xed\xa0\x80\":1}"), "invalid UTF-8"));  // surrogate
}

TEST(Safetensors, RejectsDeepNesting) {
  const std::string deep = "{\"__metadata__\":" + std::string(5000, '[') + std::string(5000, ']') + "}";
  EXPECT_TRUE(rejects(make_file(deep), "nested 5001 levels deep"));
}

TEST(Safetensors, RejectsMalformedJson) {
  EXPECT_TRUE(rejects(make_file("{\"a\":"), "invalid JSON"));
  EXPECT_TRUE(rejects(make_file("{} x"), "invalid JSON"));  // only whitespace may follow
}

TEST(Safetensors, RejectsNonObjectHeader) { EXPECT_TRUE(rejects(make_file("[1,2]"), "header is not a JSON object")); }

TEST(Safetensors, RejectsDuplicateKeys) {
  const std::string h = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                        R"("a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})";
  EXPECT_TRUE(rejects(make_file(h, std::string(8, '\0')), "duplicate JSON key \"a\""));
  // Inside one entry too (nlohmann alone would keep the last "dtype").
  const std::string h2 = R"({"a":{"dtype":"F32","dtype":"BF16","shape":[1],"data_offsets":[0,4]}})";
  EXPECT_TRUE(rejects(make_file(h2, std::string(4, '\0')), "duplicate JSON key \"dtype\""));
}

TEST(Safetensors, RejectsNonStringMetadata) {
  EXPECT_TRUE(
      rejects(make_file(R"({"__metadata__":{"format":1}})"), "__metadata__ value of \"format\" is not a string"));
  EXPECT_TRUE(rejects(make_file(R"({"__metadata__":[]})"), "__metadata__ is not a JSON object"));
}

TEST(Safetensors, RejectsUnknownDtype) {
  EXPECT_TRUE(rejects(make_file(R"({"w":{"dtype":"F128","shape":[1],"data_offsets":[0,16]}})", std::string(16, '\0')),
                      "tensor \"w\": unsupported dtype \"F128\""));
}

TEST(Safetensors, RejectsNegativeOrNonIntegerShape) {
  EXPECT_TRUE(rejects(make_file(R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}})"),
                      "shape has a dimension that is not a non-negative integer: -1"));
  EXPECT_TRUE(rejects(make_file(R"({"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,0]}})"),
                      "not a non-negative integer: 1.5"));
}

TEST(Safetensors, RejectsShapeOverflow) {
  // 2^32 * 2^32 elements overflows 64 bits; 2^62 F32 elements overflow in bytes.
  EXPECT_TRUE(rejects(make_file(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}})"),
                      "element count of shape [4294967296,4294967296] overflows 64 bits"));
  EXPECT_TRUE(rejects(make_file(R"({"w":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,0]}})"),
                      "byte size of shape"));
}

TEST(Safetensors, RejectsBadDataOffsets) {
  EXPECT_TRUE(rejects(make_file(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}})", std::string(8, '\0')),
                      "data_offsets must be exactly two non-negative integers"));
  EXPECT_TRUE(rejects(make_file(R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}})", std::string(4, '\0')),
                      "data_offsets begin 4 > end 0"));
}

TEST(Safetensors, RejectsSizeMismatch) {
  EXPECT_TRUE(rejects(make_file(R"({"w":{"dtype":"BF16","shape":[3],"data_offsets":[0,8]}})", std::string(8, '\0')),
                      "data_offsets span 8 bytes but BF16[3] needs 6 bytes"));
}

TEST(Safetensors, RejectsUnknownOrMissingFields) {
  EXPECT_TRUE(
      rejects(make_file(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}})", std::string(4, '\0')),
              "unknown field \"x\""));
  EXPECT_TRUE(rejects(make_file(R"({"w":{"dtype":"F32","data_offsets":[0,4]}})", std::string(4, '\0')),
                      "missing or non-array \"shape\""));
}

TEST(Safetensors, RejectsGapBetweenTensors) {
  const std::string h = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})";
  EXPECT_TRUE(rejects(make_file(h, std::string(8, '\0')),
                      "tensor \"a\" begins at data offset 4 but the previous tensor ends at 0"));
}

TEST(Safetensors, RejectsOverlappingTensors) {
  const std::string h = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                        R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})";
  EXPECT_TRUE(rejects(make_file(h, std::string(8, '\0')), "overlaps the previous tensor"));
}

TEST(Safetensors, RejectsTruncated) {
  EXPECT_TRUE(rejects(make_file(kGood, std::string(5, '\0')), "truncated (incomplete download?)"));
}

TEST(Safetensors, RejectsTrailingBytes) {
  EXPECT_TRUE(rejects(make_file(kGood, std::string(9, '\0')), "trailing bytes"));
  EXPECT_TRUE(rejects(make_file("{}", "x"), "trailing bytes"));
}

TEST(Safetensors, EscapesTensorNamesInErrors) {
  const std::string h = "{\"evil\\u0001\\\"name\":{\"dtype\":\"Q4\",\"shape\":[1],\"data_offsets\":[0,1]}}";
  ::testing::AssertionResult r = rejects(make_file(h, "x"), "tensor \"evil\\x01\\\"name\"");
  EXPECT_TRUE(r);
}

// Files on disk: the reader maps them and returns views, or copies when the data is misaligned.
static std::string write_tmp(const std::string& bytes, const std::string& name) {
  auto p = test::temp_dir("st") / name;
  test::write_file(p, bytes);
  return p.string();
}

TEST(Safetensors, ViewsAlignedDataWithoutCopy) {
  const float v[2] = {1.5f, -2.25f};
  std::string data(8, '\0');
  std::memcpy(data.data(), v, 8);
  std::string h = kGood;
  h.append((8 - h.size() % 8) % 8, ' ');  // data starts at a multiple of 8
  auto f = SafetensorsFile::open(write_tmp(make_file(h, data), "aligned.safetensors"));
  Tensor t = f->tensor(*f->find("a"));
  EXPECT_NE(dynamic_cast<MappedFile*>(t.storage().get()), nullptr) << "expected a view into the mapping";
  EXPECT_EQ(t.to_floats(), std::vector<float>({1.5f, -2.25f}));
}

TEST(Safetensors, CopiesMisalignedData) {
  const float v[2] = {3.0f, 0.125f};
  std::string data(8, '\0');
  std::memcpy(data.data(), v, 8);
  std::string h = kGood;
  h.append((8 - h.size() % 8) % 8 + 1, ' ');  // 8 + N is odd: the F32 data is misaligned
  ASSERT_EQ((8 + h.size()) % 4, 1u);
  auto f = SafetensorsFile::open(write_tmp(make_file(h, data), "misaligned.safetensors"));
  Tensor t = f->tensor(*f->find("a"));
  EXPECT_EQ(dynamic_cast<MappedFile*>(t.storage().get()), nullptr) << "misaligned data must be copied";
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.raw_data()) % 4, 0u);
  EXPECT_EQ(t.to_floats(), std::vector<float>({3.0f, 0.125f}));
}

TEST(Safetensors, OpenNamesTheFileOnError) {
  const std::string p = write_tmp(make_file(kGood, std::string(3, '\0')), "short.safetensors");
  try {
    SafetensorsFile::open(p);
    FAIL() << "accepted a truncated file";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("truncated"), std::string::npos) << e.what();
  }
}

TEST(SafetensorsWriter, RoundTripsTensorsAndMetadata) {
  Tensor a = Tensor::from_floats({1, 2, 3, 4, 5, 6}, {2, 3}, DType::BF16);
  Tensor b = Tensor::from_floats({-1, 0.5f}, {2}, DType::F32);
  Tensor z = Tensor::empty({0, 4}, DType::F16);
  const std::string p = (test::temp_dir("stw") / "rt.safetensors").string();
  write_safetensors(p, {{"a", a}, {"z", z}, {"b.bias", b.transpose(0, 0)}}, {{"format", "pt"}});
  auto f = SafetensorsFile::open(p);
  EXPECT_EQ(f->header().metadata.at("format"), "pt");
  EXPECT_EQ((8 + f->header().header_len) % 8, 0u);  // the writer pads so data is aligned
  EXPECT_EQ(f->tensor(*f->find("a")).to_floats(), std::vector<float>({1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(f->tensor(*f->find("b.bias")).to_floats(), std::vector<float>({-1, 0.5f}));
  EXPECT_EQ(f->find("z")->shape, Shape({0, 4}));
  EXPECT_EQ(f->find("missing"), nullptr);
}

TEST(SafetensorsWriter, RejectsWrongByteCounts) {
  const std::string p = (test::temp_dir("stw") / "w.safetensors").string();
  SafetensorsWriter w(p, {{"x", DType::F32, {2}}});
  const float v[3] = {0, 0, 0};
  EXPECT_THROW(w.append(v, 12), Error);  // more than declared
  w.append(v, 4);
  EXPECT_THROW(w.finish(), Error);  // fewer than declared
}

TEST(SafetensorsWriter, QuantisedWeightsRoundTripAsStoredTensors) {
  // q8 (I8 codes) and q4 (U8 nibbles) with F16 scales under the names of docs/QUANTIZATION.md: the
  // reader accepts "I8", returns mmap views of the exact bytes, and the views make the same Weight.
  std::vector<float> v(8 * 64);
  for (size_t i = 0; i < v.size(); ++i) v[i] = std::sin(0.37f * static_cast<float>(i)) * (i % 64 == 5 ? 8.0f : 0.1f);
  const Tensor wf = Tensor::from_floats(v, {8, 64}, DType::BF16);
  const ops::Weight q8 = ops::quantize(wf, ops::QuantType::Q8), q4 = ops::quantize(wf, ops::QuantType::Q4);
  const std::string p = (test::temp_dir("stq") / "q.safetensors").string();
  write_safetensors(p, {{"a.weight", q8.data},
                        {ops::quant_scale_name("a.weight"), q8.scale},
                        {"b.weight", q4.data},
                        {ops::quant_scale_name("b.weight"), q4.scale}});
  auto f = SafetensorsFile::open(p);
  EXPECT_EQ(f->find("a.weight")->dtype, DType::I8);
  EXPECT_EQ(f->find("b.weight")->dtype, DType::U8);
  EXPECT_EQ(f->find("b.weight")->shape, Shape({8, 32}));
  EXPECT_EQ(f->find("b.weight_scale")->dtype, DType::F16);
  const Tensor x = Tensor::from_floats(std::vector<float>(64, 0.25f), {1, 64});
  for (const auto& [name, type, mem] :
       {std::tuple{"a.weight", ops::QuantType::Q8, q8}, std::tuple{"b.weight", ops::QuantType::Q4, q4}}) {
    const Tensor data = f->tensor(*f->find(name)), scale = f->tensor(*f->find(ops::quant_scale_name(name)));
    EXPECT_EQ(std::memcmp(data.raw_data(), mem.data.raw_data(), mem.data.nbytes()), 0) << name;
    EXPECT_EQ(std::memcmp(scale.raw_data(), mem.scale.raw_data(), mem.scale.nbytes()), 0) << name;
    const ops::Weight w = ops::Weight::from_stored(type, data, scale, name);
    Tensor y1 = Tensor::empty({1, 8}, DType::F32), y2 = Tensor::empty({1, 8}, DType::F32);
    ops::linear(y1, x, w);
    ops::linear(y2, x, mem);
    EXPECT_EQ(y1.to_floats(), y2.to_floats()) << name;
  }
  const std::string text = test::read_file(p);
  EXPECT_NE(text.find(R"("dtype":"I8")"), std::string::npos);
}

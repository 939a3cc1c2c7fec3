#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>

#include "common/checked_math.h"
#include "common/files.h"
#include "common/npy.h"

namespace tr {
namespace {

TEST(Npy, RoundTripFloat) {
  Tensor t = Tensor::f32({2, 3}, {1, 2, 3, 4, 5, 6.5f});
  std::string p = ::testing::TempDir() + "/rt.npy";
  ASSERT_TRUE(write_npy(p, t).ok());
  auto r = read_npy(p);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->shape(), (Shape{2, 3}));
  EXPECT_EQ(0, std::memcmp(r->raw(), t.raw(), t.nbytes()));
  EXPECT_FALSE(path_exists(temp_path_for(p)));
}

TEST(Npy, RejectsTruncatedAndGarbage) {
  auto r = parse_npy("hello", 5, "x.npy");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("x.npy"), std::string::npos);
  EXPECT_EQ(r.error().exit_code(), 2);

  Tensor t = Tensor::f32({4, 4});
  std::memset(t.raw(), 0, t.nbytes());
  std::string p = ::testing::TempDir() + "/tr.npy";
  ASSERT_TRUE(write_npy(p, t).ok());
  auto bytes = read_file(p);
  ASSERT_TRUE(bytes.ok());
  auto cut = parse_npy(bytes->data(), bytes->size() - 8, "cut.npy");
  ASSERT_FALSE(cut.ok());
  EXPECT_NE(cut.error().message.find("truncated"), std::string::npos);
}

constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
constexpr int64_t kMin = std::numeric_limits<int64_t>::min();

TEST(CheckedMath, MulAndAddAtTheEdges) {
  EXPECT_EQ(*checked_mul(kMax, 1), kMax);
  EXPECT_EQ(*checked_mul(kMax, 0), 0);
  EXPECT_EQ(*checked_mul(int64_t{1} << 31, int64_t{1} << 31), int64_t{1} << 62);
  EXPECT_EQ(*checked_mul(kMin, 1), kMin);
  auto m = checked_mul(kMax, 4, "f.json: row bytes");
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.error().exit_code(), 2);
  EXPECT_EQ(m.error().message,
            "f.json: row bytes: 9223372036854775807 * 4 overflows a 64-bit size");
  EXPECT_FALSE(checked_mul(kMin, -1).ok());
  EXPECT_FALSE(checked_mul(int64_t{1} << 32, int64_t{1} << 31).ok());

  EXPECT_EQ(*checked_add(kMax - 1, 1), kMax);
  EXPECT_EQ(*checked_add(kMax, kMin), -1);
  EXPECT_FALSE(checked_add(kMax, 1).ok());
  EXPECT_FALSE(checked_add(kMin, -1).ok());
}

TEST(CheckedMath, NumelEdges) {
  EXPECT_EQ(*checked_numel({}), 1);  // a scalar
  EXPECT_EQ(*checked_numel({2, 3, 4}), 24);
  EXPECT_EQ(*checked_numel({kMax}), kMax);
  EXPECT_EQ(*checked_numel({kMax, 1, 1}), kMax);
  // A zero dimension is an empty tensor, but the other dimensions' product must still fit,
  // whatever their order: the count must equal shape_numel's (Tensor::numel), which
  // saturates to INT64_MAX on [kMax, kMax, 0] (the fuzz_npy finding).
  EXPECT_EQ(*checked_numel({0}), 0);
  EXPECT_EQ(*checked_numel({0, kMax}), 0);
  EXPECT_EQ(*checked_numel({kMax, 0}), 0);
  EXPECT_EQ(*checked_numel({int64_t{1} << 31, 0, int64_t{1} << 31}), 0);
  EXPECT_FALSE(checked_numel({kMax, kMax, 0}).ok());
  EXPECT_FALSE(checked_numel({0, kMax, kMax}).ok());
  EXPECT_FALSE(checked_numel({8, 888888, 44, 444444, 444444, 4, 4, 0}).ok());
  for (const Shape& s : {Shape{0, kMax}, Shape{kMax, 0}, Shape{3, 0, 1 << 20}}) {
    EXPECT_EQ(*checked_numel(s), shape_numel(s)) << shape_str(s);
  }

  auto big = checked_numel({1, 1121000, 1121000009607009607}, "f.json: \"shape\"");
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.error().exit_code(), 2);
  EXPECT_NE(big.error().message.find("f.json: \"shape\" [1, 1121000, 1121000009607009607]"),
            std::string::npos)
      << big.error().message;
  EXPECT_FALSE(checked_numel({kMax, 2}).ok());
  EXPECT_FALSE(checked_numel({int64_t{1} << 32, int64_t{1} << 32}).ok());
  EXPECT_EQ(*checked_numel({int64_t{1} << 31, int64_t{1} << 31}), int64_t{1} << 62);
}

TEST(CheckedMath, NegativeDimensionsFromAFile) {
  // -1 is what a wrapped uint64 (or an ONNX dynamic dim) reads as; a zero elsewhere must not
  // turn it into a valid empty shape, nor two negatives into a positive count.
  for (const Shape& s : {Shape{-1}, Shape{0, -1}, Shape{-1, 0}, Shape{-2, -3}, Shape{3, kMin}}) {
    auto r = checked_numel(s, "x.npy");
    ASSERT_FALSE(r.ok()) << shape_str(s);
    EXPECT_EQ(r.error().exit_code(), 2);
    EXPECT_NE(r.error().message.find("x.npy " + shape_str(s) + " has a negative dimension"),
              std::string::npos)
        << r.error().message;
    EXPECT_FALSE(checked_bytes(s, 4).ok()) << shape_str(s);
  }
}

TEST(CheckedMath, Bytes) {
  EXPECT_EQ(*checked_bytes(Shape{2, 3}, 4), 24u);
  EXPECT_EQ(*checked_bytes(Shape{}, 8), 8u);
  EXPECT_EQ(*checked_bytes(Shape{0, kMax}, 4), 0u);
  EXPECT_EQ(*checked_bytes(Shape{kMax / 4}, 4), static_cast<size_t>(kMax / 4 * 4));
  // The reported input: the element count fits, the bytes do not.
  auto r = checked_bytes(Shape{kMax / 2}, 4, "f.json: \"shape\"");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("f.json: \"shape\" [4611686018427387903] is too large"),
            std::string::npos)
      << r.error().message;
  EXPECT_FALSE(checked_bytes(Shape{kMax}, 2).ok());
  EXPECT_FALSE(checked_bytes(Shape{1}, static_cast<size_t>(kMax) + 1).ok());

  EXPECT_EQ(*checked_bytes(int64_t{0}, 4), 0u);
  EXPECT_EQ(*checked_bytes(kMax, 1), static_cast<size_t>(kMax));
  EXPECT_FALSE(checked_bytes(kMax, 4).ok());
  EXPECT_FALSE(checked_bytes(int64_t{-1}, 4).ok());
}

TEST(Npy, HeaderShapeOverflowIsAnErrorNamingTheShape) {
  // A header whose shape overflows (here the bytes, as float32) must be rejected by the
  // checked count before anything compares the wrapped size with the file.
  std::string h =
      "{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776, 1099511627776), }";
  h.append((64 - (10 + h.size() + 1) % 64) % 64, ' ');
  h += '\n';
  std::string f = "\x93NUMPY";
  f += char(1);
  f += char(0);
  f += char(h.size() & 0xff);
  f += char((h.size() >> 8) & 0xff);
  f += h;
  f.append(64, '\0');
  auto r = parse_npy(f.data(), f.size(), "big.npy");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().exit_code(), 2);
  EXPECT_NE(r.error().message.find("big.npy: .npy shape [1099511627776, 1099511627776]"),
            std::string::npos)
      << r.error().message;
}

TEST(Files, MissingFileNamesPath) {
  auto r = read_file("/nonexistent/dir/file.bin");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("/nonexistent/dir/file.bin"), std::string::npos);
}

}  // namespace
}  // namespace tr

#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>

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

TEST(Files, MissingFileNamesPath) {
  auto r = read_file("/nonexistent/dir/file.bin");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("/nonexistent/dir/file.bin"), std::string::npos);
}

}  // namespace
}  // namespace tr

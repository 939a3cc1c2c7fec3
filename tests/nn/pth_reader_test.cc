// .pth checkpoints without Python (issue 16): files written by PyTorch's own torch.save
// (tests/nn/make_pth_cases.py, run by Debian's /usr/bin/python3 at test time) are read and
// compared bit for bit with what Python wrote beside them; bad files each give one line of
// kBadInput naming the file (and the tensor). The pickle reader also gets hand-made
// pickles here.
#include "nn/checkpoint/pth_reader.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/files.h"
#include "common/npy.h"
#include "nn/checkpoint/pickle_reader.h"

namespace tr::nn {
namespace {

namespace fs = std::filesystem;
using namespace std::string_literals;

// The cases of one test process, written once into a private folder removed at exit.
class Cases : public ::testing::Environment {
 public:
  static Cases* instance;

  // The folder, or "" with `why` set when Python with torch is missing or the script fails.
  std::string dir(bool large, std::string* why) {
    std::string& d = large ? large_ : small_;
    if (!d.empty()) return d;
    if (std::system("/usr/bin/python3 -c 'import torch, numpy, cv2' >/dev/null 2>&1") != 0) {
      *why = "/usr/bin/python3 with torch, numpy and cv2 is not available";
      return "";
    }
    const char* src = std::getenv("TALKRENDER_SOURCE");
    const std::string script = std::string(src ? src : ".") + "/tests/nn/make_pth_cases.py";
    const fs::path out = fs::temp_directory_path() /
                         ("pth_cases_" + std::to_string(::getpid()) + (large ? "_large" : ""));
    const std::string cmd = "/usr/bin/python3 " + script + " " + out.string() +
                            (large ? " --only-large --large-mb 48" : "") + " >/dev/null";
    if (std::system(cmd.c_str()) != 0 || !fs::exists(out / "DONE")) {
      *why = "failed: " + cmd;
      ADD_FAILURE() << *why;
      return "";
    }
    d = out.string();
    return d;
  }

  void TearDown() override {
    std::error_code ec;
    if (!small_.empty()) fs::remove_all(small_, ec);
    if (!large_.empty()) fs::remove_all(large_, ec);
  }

 private:
  std::string small_, large_;
};
Cases* Cases::instance =
    static_cast<Cases*>(::testing::AddGlobalTestEnvironment(new Cases));  // gtest owns it

#define CASES_DIR(var, large)                \
  std::string var;                           \
  {                                          \
    std::string why;                         \
    var = Cases::instance->dir(large, &why); \
    if (var.empty()) GTEST_SKIP() << why;    \
  }

bool same_bits(float a, float b) {
  if (std::isnan(a) && std::isnan(b)) return true;
  return std::memcmp(&a, &b, sizeof a) == 0;
}

// Every tensor of `got` against CASE.expect/: same names in the same order, same shapes,
// the same float bits.
void expect_matches(const StateDict& got, const std::string& dir, const std::string& name) {
  std::ifstream keys(dir + "/" + name + ".expect/keys.txt");
  ASSERT_TRUE(keys) << name;
  std::vector<std::string> want;
  for (std::string k; std::getline(keys, k);) want.push_back(k);
  ASSERT_EQ(got.entries.size(), want.size()) << name;
  for (size_t i = 0; i < want.size(); ++i) {
    SCOPED_TRACE(name + ": " + want[i]);
    EXPECT_EQ(got.entries[i].first, want[i]);
    auto ref = read_npy(dir + "/" + name + ".expect/" + std::to_string(i) + ".npy");
    ASSERT_TRUE(ref.ok()) << ref.error().message;
    const Tensor& t = got.entries[i].second;
    ASSERT_EQ(t.dtype(), DType::kFloat32);
    ASSERT_EQ(t.shape(), ref->shape());
    size_t mismatches = 0;
    for (int64_t e = 0; e < t.numel(); ++e) {
      if (!same_bits(t.data<float>()[e], ref->data<float>()[e]) && mismatches++ < 3) {
        ADD_FAILURE() << "element " << e << ": " << t.data<float>()[e] << " vs "
                      << ref->data<float>()[e];
      }
    }
    EXPECT_EQ(mismatches, 0u);
    EXPECT_EQ(got.find(want[i]), &got.entries[i].second);
  }
}

TEST(PthReader, BareStateDictWithBatchNorm) {
  CASES_DIR(dir, false);
  auto sd = read_pth(dir + "/bare.pth");
  ASSERT_TRUE(sd.ok()) << sd.error().message;
  expect_matches(*sd, dir, "bare");
  // BatchNorm's int64 counter is bookkeeping, left out of the float tensors.
  EXPECT_EQ(sd->find("bn.num_batches_tracked"), nullptr);
  ASSERT_NE(sd->find("bn.running_var"), nullptr);
  // The same records deflated by another zip tool.
  auto deflated = read_pth(dir + "/deflated.pth");
  ASSERT_TRUE(deflated.ok()) << deflated.error().message;
  expect_matches(*deflated, dir, "bare");
}

TEST(PthReader, ViewsOffsetsStridesAndWidths) {
  CASES_DIR(dir, false);
  auto sd = read_pth(dir + "/views.pth");
  ASSERT_TRUE(sd.ok()) << sd.error().message;
  expect_matches(*sd, dir, "views");
  EXPECT_EQ(sd->find("int_skipped"), nullptr);
  ASSERT_NE(sd->find("half"), nullptr);
  EXPECT_TRUE(std::isinf(sd->find("half")->data<float>()[7]));
  EXPECT_EQ(sd->find("scalar")->rank(), 0u);
}

TEST(PthReader, UltralightCheckpointWithAdamState) {
  CASES_DIR(dir, false);
  // From memory too: read_pth_bytes names the file as told.
  auto bytes = read_file(dir + "/ultralight.pth");
  ASSERT_TRUE(bytes.ok());
  auto sd = read_pth_bytes(*bytes, "ul.pth");
  ASSERT_TRUE(sd.ok()) << sd.error().message;
  expect_matches(*sd, dir, "ultralight");
}

TEST(PthReader, GpuLocationMetadataAndArchiveFolder) {
  CASES_DIR(dir, false);
  auto sd = read_pth(dir + "/cuda_archive.pth");
  ASSERT_TRUE(sd.ok()) << sd.error().message;
  ASSERT_EQ(sd->entries.size(), 1u);
  const Tensor* w = sd->find("g.w");
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->shape(), (Shape{3, 2}));
  EXPECT_EQ(std::vector<float>(w->data<float>(), w->data<float>() + 6),
            (std::vector<float>{0, 1, 2, 3, 4, 5}));
}

TEST(PthReader, BadFilesAreOneLineErrorsNamingTheFile) {
  CASES_DIR(dir, false);
  struct Bad {
    const char* file;
    std::vector<const char*> says;
  };
  const std::vector<Bad> cases = {
      {"truncated.pth", {"truncated or damaged zip"}},
      {"evil_global.pth", {"os.system", "allow-list", "data.pkl"}},
      {"short_storage.pth", {"tensor 'w'", "data/0", "storage too short"}},
      {"view_past_end.pth", {"tensor 'dec.w'", "data/0", "storage too short"}},
      {"legacy.pth",
       {"legacy torch.save format (before PyTorch 1.6)", "_use_new_zipfile_serialization=True"}},
      {"jpeg.pth", {"not a PyTorch checkpoint (not a zip file)"}},
      {"no_tensors.pth", {"no state dict", "'epoch'", "'lr'"}},
      {"missing.pth", {"file not found"}},
  };
  for (const auto& c : cases) {
    const std::string path = dir + "/" + c.file;
    auto r = read_pth(path);
    ASSERT_FALSE(r.ok()) << c.file;
    const std::string& msg = r.error().message;
    std::printf("  %s -> %s\n", c.file, msg.c_str());
    EXPECT_EQ(r.error().kind, ErrorKind::kBadInput) << msg;
    EXPECT_EQ(msg.rfind(path + ": ", 0), 0u) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    for (const char* s : c.says) EXPECT_NE(msg.find(s), std::string::npos) << s << " in " << msg;
  }
}

TEST(PthReader, LargeStateDictLoadTime) {
  CASES_DIR(dir, true);
  const std::string path = dir + "/large.pth";
  const auto t0 = std::chrono::steady_clock::now();
  auto sd = read_pth(path);
  const double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_TRUE(sd.ok()) << sd.error().message;
  // Printed, not asserted: timing on a shared CI machine is not a test result.
  std::printf("  large.pth: %.1f MB, %zu tensors, read in %.1f ms\n",
              static_cast<double>(fs::file_size(path)) / 1e6, sd->entries.size(), ms);
  expect_matches(*sd, dir, "large");
}

// --- the pickle reader on hand-made bytes ----------------------------------------------

Result<pickle::Pickle> parse(const std::string& bytes) { return pickle::parse(bytes, "t.pkl"); }

TEST(PickleReader, ReadsPlainValues) {
  // {"a": [1, -2, 300, 2**40, 1.5, "x", None, True], "b": (), 0: {}}
  // As Python's pickle.dumps(..., protocol=2) writes it.
  const char kBytes[] =
      "\x80\x02\x7d\x71\x00\x28\x58\x01\x00\x00\x00\x61\x71\x01\x5d\x71\x02\x28\x4b\x01\x4a\xfe\xff"
      "\xff\xff\x4d\x2c\x01\x8a\x06\x00\x00\x00\x00\x00\x01\x47\x3f\xf8\x00\x00\x00\x00\x00\x00\x58"
      "\x01\x00\x00\x00\x78\x71\x03\x4e\x88\x65\x58\x01\x00\x00\x00\x62\x71\x04\x29\x4b\x00\x7d\x71"
      "\x05\x75\x2e";
  auto r = parse(std::string(kBytes, sizeof kBytes - 1));
  ASSERT_TRUE(r.ok()) << r.error().message;
  const auto& root = r->at(r->root);
  ASSERT_EQ(root.kind, pickle::Kind::kDict);
  ASSERT_EQ(root.items.size(), 6u);
  const auto& list = r->at(root.items[1]);
  ASSERT_EQ(list.kind, pickle::Kind::kList);
  ASSERT_EQ(list.items.size(), 8u);
  EXPECT_EQ(r->at(list.items[0]).i, 1);
  EXPECT_EQ(r->at(list.items[1]).i, -2);
  EXPECT_EQ(r->at(list.items[2]).i, 300);
  EXPECT_EQ(r->at(list.items[3]).i, int64_t{1} << 40);
  EXPECT_EQ(r->at(list.items[4]).f, 1.5);
  EXPECT_EQ(r->at(list.items[5]).s, "x");
  EXPECT_EQ(r->at(list.items[6]).kind, pickle::Kind::kNone);
  EXPECT_TRUE(r->at(list.items[7]).b);
  EXPECT_EQ(r->at(root.items[3]).kind, pickle::Kind::kTuple);
  EXPECT_EQ(r->at(root.items[4]).i, 0);
}

TEST(PickleReader, RefusesWhatAStateDictDoesNotNeed) {
  const std::vector<std::pair<std::string, const char*>> cases = {
      {"\x80\x02"
       "cbuiltins\neval\n."s,
       "builtins.eval"},
      {"\x80\x02"
       "X\x05\x00\x00\x00posixX\x06\x00\x00\x00system\x93."s,
       "posix.system"},
      {"\x80\x02"
       "ctorch\nFloatStorage\n)R."s,
       "called directly"},
      {"\x80\x02"
       "I1\n."s,
       "opcode 0x49"},  // INT (text): not used by protocol 2
      {"\x80\x02"
       "h\x05."s,
       "memo entry 5"},
      {"\x80\x02"
       "s."s,
       "stack underflow"},
      {"\x80\x02"
       "]K\x01"s,
       "without STOP"},
      {"\x80\x02"
       "X\xff\xff\xff\x7f"
       "ab."s,
       "past the end"},
      {"\x80\x02"
       "\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19."s,
       "more than 64 bits"},
      {"\x80\x02"
       "K\x01K\x02"
       "b."s,
       "BUILD on a int"},
  };
  for (const auto& [bytes, says] : cases) {
    auto r = parse(bytes);
    ASSERT_FALSE(r.ok()) << says;
    EXPECT_EQ(r.error().kind, ErrorKind::kBadInput);
    EXPECT_NE(r.error().message.find(says), std::string::npos) << r.error().message;
    EXPECT_EQ(r.error().message.rfind("t.pkl: ", 0), 0u) << r.error().message;
  }
}

TEST(PickleReader, AListInsideItselfNeitherLeaksNorLoops) {
  // l = []; l.append(l); l  (memo 0 is the list itself)
  auto r = parse(
      "\x80\x02]q\x00h\x00"
      "a."s);
  ASSERT_TRUE(r.ok()) << r.error().message;
  const auto& l = r->at(r->root);
  ASSERT_EQ(l.items.size(), 1u);
  EXPECT_EQ(l.items[0], r->root);
}

TEST(PthReader, APickleIsNotAZip) {
  auto r = read_pth_bytes(std::string("\x80\x02}.", 4), "p.pth");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "p.pth: not a PyTorch checkpoint (not a zip file)");
}

}  // namespace
}  // namespace tr::nn

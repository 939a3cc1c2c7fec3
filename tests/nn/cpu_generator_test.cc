// The whole SyncTalk_2D / Ultralight generator on the cpu backend against PyTorch's own
// outputs (goldens from tools/export_models.py, seeded random weights with calibrated batch
// norm so the output depends on every layer), batch 1 and 3, max |diff| <= 1e-4.
// Skips when Debian's python with torch is missing (the exporter can't run).
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "common/npy.h"
#include "nn/nn.h"
#include "test_util.h"

namespace tr::nn {
namespace {

namespace fs = std::filesystem;

// Exports `model` (once per build tree) and returns its folder, or "" with the reason.
std::string exported_model_dir(const std::string& model, std::string* why) {
  const char* build = std::getenv("TALKRENDER_BUILD");
  const char* source = std::getenv("TALKRENDER_SOURCE");
  const std::string src = source ? source : ".";
  const std::string dir = std::string(build ? build : "/tmp") + "/tests/nncpu_models";
  if (fs::exists(dir + "/" + model + ".b3.output.npy")) return dir;
  if (!fs::exists("/usr/bin/python3") || !fs::exists(src + "/tools/export_models.py")) {
    *why = "/usr/bin/python3 or tools/export_models.py not found";
    return "";
  }
  const std::string cmd = "/usr/bin/python3 " + src + "/tools/export_models.py --models " + model +
                          " --non-saturated --golden-batch 1,3 --out " + dir + " > " + dir +
                          ".log 2>&1";
  fs::create_directories(dir);
  if (std::system(cmd.c_str()) != 0) {
    *why = "tools/export_models.py failed (torch missing?); see " + dir + ".log";
    return "";
  }
  return dir;
}

void expect_generator_matches_pytorch(const std::string& model) {
  std::string why;
  const std::string dir = exported_model_dir(model, &why);
  if (dir.empty()) GTEST_SKIP() << why;
  auto m = Model::load(dir + "/" + model + ".onnx");
  ASSERT_TRUE(m.ok()) << m.error().message;
  SessionOptions opts;
  opts.backend = BackendKind::kCpu;
  opts.threads = 2;
  auto session = Session::create(*m, opts);
  ASSERT_TRUE(session.ok()) << session.error().message;
  for (int batch : {1, 3}) {
    const std::string stem = dir + "/" + model + ".b" + std::to_string(batch);
    auto input = read_npy(stem + ".input.npy");
    auto audio = read_npy(stem + ".audio.npy");
    auto want = read_npy(stem + ".output.npy");
    ASSERT_TRUE(input.ok() && audio.ok() && want.ok()) << "goldens missing in " << dir;
    auto got = (*session)->run({{"input", *input}, {"audio", *audio}});
    ASSERT_TRUE(got.ok()) << got.error().message;
    ASSERT_EQ(got->size(), 1u);
    EXPECT_EQ((*got)[0].shape(), want->shape());
    const float diff = test::max_abs_diff((*got)[0], *want);
    EXPECT_LE(diff, 1e-4f) << model << " batch " << batch;
    std::printf("%s batch %d: max |cpu - pytorch| = %.2e\n", model.c_str(), batch, diff);
  }
}

TEST(CpuGenerator, Gen320MatchesPyTorch) { expect_generator_matches_pytorch("gen320-ave"); }
TEST(CpuGenerator, Gen160MatchesPyTorch) { expect_generator_matches_pytorch("gen160-ave"); }

}  // namespace
}  // namespace tr::nn

// The whole SyncTalk_2D / Ultralight generator on the cpu backend against PyTorch's own
// outputs (goldens from tools/export_models.py, seeded random weights with calibrated batch
// norm so the output depends on every layer), batch 1 and 3: in fp32 through both activation
// layouts (nChw8c and nChw16c, forced with TALKRENDER_CPU_BLOCK whatever the CPU), max |diff|
// <= 1e-4; in bf16, where the CPU computes it natively, PSNR >= 40 dB and max |diff| <= 0.08.
// Skips when Debian's python with torch is missing (the exporter can't run), and the bf16
// cases on CPUs without native bf16, saying so.
#include <gtest/gtest.h>

#include <cmath>
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

double psnr(const Tensor& a, const Tensor& b) {
  double se = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    const double d = a.data<float>()[i] - b.data<float>()[i];
    se += d * d;
  }
  return se == 0 ? 999.0 : 10 * std::log10(1.0 / (se / static_cast<double>(a.numel())));
}

// block: 8 or 16 (forced); precision fp32 or bf16.
void expect_generator_matches_pytorch(const std::string& model, int block, Precision precision) {
  std::string why;
  const std::string dir = exported_model_dir(model, &why);
  if (dir.empty()) GTEST_SKIP() << why;
  const bool bf16 = precision == Precision::kBFloat16;
  if (bf16 && !cpu_info().native_bf16)
    GTEST_SKIP() << "SKIPPED: this CPU has no native bf16 (oneDNN ISA " << cpu_info().isa
                 << "); the bf16 path is checked only where AVX512_BF16 or AMX exists";
  setenv("TALKRENDER_CPU_BLOCK", std::to_string(block).c_str(), 1);
  auto m = Model::load(dir + "/" + model + ".onnx");
  ASSERT_TRUE(m.ok()) << m.error().message;
  SessionOptions opts;
  opts.backend = BackendKind::kCpu;
  opts.threads = 2;
  opts.precision = precision;
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
    const double db = psnr((*got)[0], *want);
    if (bf16) {
      EXPECT_GE(db, 40.0) << model << " batch " << batch << " bf16";
      EXPECT_LE(diff, 0.08f) << model << " batch " << batch << " bf16";
    } else {
      EXPECT_LE(diff, 1e-4f) << model << " batch " << batch << " nChw" << block << "c";
    }
    std::printf("%s batch %d, nChw%dc %s: max |cpu - pytorch| = %.2e, PSNR %.1f dB\n",
                model.c_str(), batch, bf16 ? 16 : block, precision_name(precision), diff, db);
  }
  unsetenv("TALKRENDER_CPU_BLOCK");
}

TEST(CpuGenerator, Gen320Block8MatchesPyTorch) {
  expect_generator_matches_pytorch("gen320-ave", 8, Precision::kFloat32);
}
TEST(CpuGenerator, Gen320Block16MatchesPyTorch) {
  expect_generator_matches_pytorch("gen320-ave", 16, Precision::kFloat32);
}
TEST(CpuGenerator, Gen320Bf16NearPyTorch) {
  expect_generator_matches_pytorch("gen320-ave", 16, Precision::kBFloat16);
}
TEST(CpuGenerator, Gen160Block8MatchesPyTorch) {
  expect_generator_matches_pytorch("gen160-ave", 8, Precision::kFloat32);
}
TEST(CpuGenerator, Gen160Block16MatchesPyTorch) {
  expect_generator_matches_pytorch("gen160-ave", 16, Precision::kFloat32);
}
TEST(CpuGenerator, Gen160Bf16NearPyTorch) {
  expect_generator_matches_pytorch("gen160-ave", 16, Precision::kBFloat16);
}

// Precision resolution on this CPU: bf16 where the CPU lacks it is a kBadInput that names
// what is missing. (tests/models/cli_precision_test.py forces "no native bf16" on any CPU
// with DNNL_MAX_CPU_ISA, which oneDNN reads once per process.)
TEST(CpuGenerator, PrecisionResolution) {
  if (cpu_info().native_bf16) {
    auto p = resolve_precision(BackendKind::kCpu, Precision::kBFloat16);
    ASSERT_TRUE(p.ok());
    EXPECT_EQ(*p, Precision::kBFloat16);
    // auto: bf16 only where it was measured faster than fp32 (AMX, AMD's AVX512_BF16).
    EXPECT_EQ(*resolve_precision(BackendKind::kCpu, Precision::kAuto),
              cpu_info().bf16_faster ? Precision::kBFloat16 : Precision::kFloat32);
  } else {
    auto p = resolve_precision(BackendKind::kCpu, Precision::kBFloat16);
    ASSERT_FALSE(p.ok());
    EXPECT_EQ(p.error().exit_code(), 2);
    EXPECT_NE(p.error().message.find("AVX512_BF16"), std::string::npos) << p.error().message;
    EXPECT_EQ(*resolve_precision(BackendKind::kCpu, Precision::kAuto), Precision::kFloat32);
  }
  EXPECT_EQ(*resolve_precision(BackendKind::kCpu, std::nullopt), Precision::kFloat32);
  EXPECT_FALSE(resolve_precision(BackendKind::kCpu, Precision::kFloat16).ok());
  EXPECT_FALSE(resolve_precision(BackendKind::kReference, Precision::kBFloat16).ok());
  EXPECT_EQ(*resolve_precision(BackendKind::kCuda, std::nullopt), Precision::kFloat16);
}

}  // namespace
}  // namespace tr::nn

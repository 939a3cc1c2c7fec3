// Ultralight-Digital-Human's own model renders with its own rules (issue 16, acceptance 3):
// the sample package from aud_hu.npy-shaped features [n, 2, 1024], checked against a
// PyTorch + OpenCV reference written from Ultralight's inference.py logic
// (ultralight_reference.py): frame 0 uses avatar frame 1, the 8-block window with zero
// blocks at the file's ends, INTER_AREA crops, bilinear paste; outside the rect byte for
// byte, inside within 1 level.
//
// Two generators: the exporter's seeded ul-hubert (tools/export_models.py, the real
// architecture) and a small probe with Ultralight's interface whose output depends
// strongly on every audio block (the random ul-hubert barely reacts to its audio, so only
// the probe can show a window mistake). Skipped, with a message, when the shared data, the
// binary or Debian's python3 with torch is absent.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "e2e_util.h"

namespace {

namespace fs = std::filesystem;
using namespace e2e;
using nlohmann::json;

// What SetUpTestSuite makes (part of the cache key).
constexpr const char* kMade =
    "ul-hubert ul-wenet probe-hubert probe-wenet aud_hu.npy[12,2,1024] aud_wenet.npy[10,16,512]";

class UltralightE2E : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    skip_reason_ = missing_prerequisite({fs::path("sanders") / "full_body_video.mp4"});
    if (!skip_reason_.empty()) return;
    // Keyed by the tools' source and what is made: a changed exporter or reference gives
    // other weights, another list other files.
    const std::string src = std::string(kMade) +
                            slurp(source_root() / "tools" / "export_models.py") +
                            slurp(source_root() / "tools" / "model_arch.py") + slurp(reference());
    models_ = cache_dir("e2e_ul_models-", src);
    auto steps = [](const fs::path& tmp) {
      const std::string py = "/usr/bin/python3";
      const fs::path log = build_dir() / "e2e_ul_export.log";
      return std::vector<Step>{
          {{py, (source_root() / "tools" / "export_models.py").string(), "--out", tmp.string(),
            "--models", "ul-hubert,ul-wenet", "--non-saturated", "--no-goldens", "--seed", "1234"},
           log},
          {{py, reference().string(), "make-probe", (tmp / "probe-hubert.onnx").string()}, log},
          {{py, reference().string(), "make-probe", (tmp / "probe-wenet.onnx").string(), "--model",
            "probe-wenet"},
           log},
          // As Ultralight's tools write them: aud_hu.npy [n, 2, 1024], aud_wenet.npy
          // [n, 16, 512] (np.save, float32).
          {{py, reference().string(), "make-features", (tmp / "aud_hu.npy").string(), "--rows",
            "12"},
           log},
          {{py, reference().string(), "make-features", (tmp / "aud_wenet.npy").string(), "--rows",
            "10", "--block-shape", "16,512", "--seed", "8"},
           log},
      };
    };
    std::string out;
    if (!fill_cache(models_,
                    {"ul-hubert.onnx", "ul-wenet.onnx", "probe-hubert.onnx", "probe-wenet.onnx",
                     "aud_hu.npy", "aud_wenet.npy"},
                    steps, &out))
      skip_reason_ = "making the Ultralight test models failed: " + out;
  }

  void SetUp() override {
    if (!skip_reason_.empty()) GTEST_SKIP() << skip_reason_;
    work_ = fresh_test_dir("talkrender_ul_");
  }
  void TearDown() override {
    std::error_code ec;
    if (!HasFailure()) fs::remove_all(work_, ec);
  }

  static fs::path package() { return shared_data() / "sanders"; }
  static fs::path reference() {
    return source_root() / "tests" / "e2e" / "ultralight_reference.py";
  }

  // Renders PNGs into work_/NAME/ with the report in work_/NAME.json; returns the report.
  json render(const std::string& name, const std::string& generator, const std::string& features,
              std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {(build_dir() / "talkrender").string(),
                                     "render",
                                     "--package",
                                     package().string(),
                                     "--generator",
                                     (models_ / generator).string(),
                                     "--features",
                                     (models_ / features).string(),
                                     "--out",
                                     (work_ / name).string() + "/",
                                     "--report-json",
                                     (work_ / (name + ".json")).string(),
                                     "--no-progress"};
    args.insert(args.end(), extra.begin(), extra.end());
    std::string log;
    const int rc = run(args, work_ / (name + ".log"), &log);
    EXPECT_EQ(rc, 0) << log;
    if (rc != 0) return json();
    return json::parse(slurp(work_ / (name + ".json")));
  }

  // Runs the reference on work_/NAME/; returns its statistics (and its exit code in *rc).
  json reference_check(const std::string& name, const std::string& model,
                       const std::string& features, std::vector<std::string> extra, int* rc) {
    std::vector<std::string> args = {"/usr/bin/python3",
                                     reference().string(),
                                     "check",
                                     "--package",
                                     package().string(),
                                     "--features",
                                     (models_ / features).string(),
                                     "--pngs",
                                     (work_ / name).string(),
                                     "--model",
                                     model,
                                     "--tools",
                                     (source_root() / "tools").string()};
    args.insert(args.end(), extra.begin(), extra.end());
    std::string out;
    *rc = run(args, work_ / (name + ".reference.log"), &out);
    std::printf("%s reference: %s", name.c_str(), out.c_str());
    const auto brace = out.rfind('{');
    if (brace == std::string::npos) {
      ADD_FAILURE() << out;
      return json();
    }
    return json::parse(out.substr(brace));
  }

  static std::vector<int> iota_from(int first, int n) {
    std::vector<int> v;
    for (int i = 0; i < n; ++i) v.push_back(first + i);
    return v;
  }

  static inline std::string skip_reason_;
  static inline fs::path models_;
  fs::path work_;
};

// The exporter's ul-hubert on the sample package: frame 0 is avatar frame 1, the crops are
// INTER_AREA (a bilinear crop is several levels away), the rest within 1 level.
TEST_F(UltralightE2E, HubertModelMatchesUltralightsInference) {
  const json report = render("ul", "ul-hubert.onnx", "aud_hu.npy");
  ASSERT_FALSE(report.is_null());
  EXPECT_EQ(report["frames"], 12);  // one output frame per feature row, no padding rows
  EXPECT_EQ(report["model_family"], "ultralight-hubert-160");
  EXPECT_EQ(report["window_blocks"], 8);
  EXPECT_EQ(report["first_frame"], 1);
  EXPECT_EQ(report["crop_interp"], "area");
  EXPECT_EQ(report["paste_interp"], "linear");
  EXPECT_EQ(report["video_fps"], 25.0);
  EXPECT_EQ(report["model_size"], 160);

  int rc = -1;
  const json stats = reference_check("ul", "ul-hubert", "aud_hu.npy",
                                     {"--non-saturated", "--sensitivity", "0,-1"}, &rc);
  ASSERT_FALSE(stats.is_null());
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(stats["avatar_frames"], json(iota_from(1, 12)));
  EXPECT_EQ(stats["outside_max"], 0);
  EXPECT_LE(stats["inside_max"].get<int>(), 1);
  // The seeded model must draw something that varies, or the comparison proves little.
  EXPECT_GT(stats["pred_max"].get<int>() - stats["pred_min"].get<int>(), 100);
  // The comparison would catch a bilinear crop and a walk that starts at 0.
  for (const auto& d : stats["vs_other_crop"]) EXPECT_GT(d.get<int>(), 1) << stats.dump();
  for (const auto& d : stats["vs_walk_from_0_outside"]) EXPECT_GT(d.get<int>(), 1);
}

// The window at the file's ends, where Ultralight uses zero blocks: with the probe a
// window that repeats the end blocks, or is shifted by one, is tens of levels away.
TEST_F(UltralightE2E, EightBlockWindowWithZerosAtTheFileEnds) {
  const json report = render("probe", "probe-hubert.onnx", "aud_hu.npy", {"--batch", "5"});
  ASSERT_FALSE(report.is_null());
  EXPECT_EQ(report["frames"], 12);
  EXPECT_EQ(report["model_family"], "ultralight-hubert-160");
  int rc = -1;
  const json stats = reference_check("probe", "probe-hubert", "aud_hu.npy",
                                     {"--sensitivity", "0,1,2,3,4,5,6,7,8,9,10,11"}, &rc);
  ASSERT_FALSE(stats.is_null());
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(stats["avatar_frames"], json(iota_from(1, 12)));
  EXPECT_EQ(stats["outside_max"], 0);
  EXPECT_LE(stats["inside_max"].get<int>(), 1);
  const auto& edge = stats["vs_edge_blocks"];
  const auto& shifted = stats["vs_shifted_window"];
  ASSERT_EQ(edge.size(), 12u);
  // Frames 0..3 and 9..11 have blocks outside the 12-row file (i-4 < 0 or i+3 > 11).
  for (int i : {0, 1, 2, 3, 9, 10, 11}) EXPECT_GT(edge[i].get<int>(), 1) << "frame " << i;
  for (int i : {4, 5, 6, 7, 8}) EXPECT_EQ(edge[i].get<int>(), 0) << "frame " << i;
  for (const auto& d : shifted) EXPECT_GT(d.get<int>(), 1) << stats.dump();
}

// Ultralight's wenet model: aud_wenet.npy [n, 16, 512], 8 blocks of 8192 = [128, 16, 32],
// rendered at 20 fps; the probe for the window, the exporter's ul-wenet for the rest.
TEST_F(UltralightE2E, WenetFeaturesAt20Fps) {
  const json report = render("wenet", "probe-wenet.onnx", "aud_wenet.npy");
  ASSERT_FALSE(report.is_null());
  EXPECT_EQ(report["frames"], 10);
  EXPECT_EQ(report["model_family"], "ultralight-wenet-160");
  EXPECT_EQ(report["video_fps"], 20.0);
  EXPECT_EQ(report["window_blocks"], 8);
  int rc = -1;
  const json stats =
      reference_check("wenet", "probe-wenet", "aud_wenet.npy", {"--sensitivity", "0,-1"}, &rc);
  ASSERT_FALSE(stats.is_null());
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(stats["avatar_frames"], json(iota_from(1, 10)));
  EXPECT_LE(stats["inside_max"].get<int>(), 1);
  for (const auto& d : stats["vs_edge_blocks"]) EXPECT_GT(d.get<int>(), 1) << stats.dump();

  const json ul = render("ul-wenet", "ul-wenet.onnx", "aud_wenet.npy", {"--frames", "4"});
  ASSERT_FALSE(ul.is_null());
  EXPECT_EQ(ul["model_family"], "ultralight-wenet-160");
  EXPECT_EQ(ul["video_fps"], 20.0);
  const json ul_stats =
      reference_check("ul-wenet", "ul-wenet", "aud_wenet.npy", {"--non-saturated"}, &rc);
  ASSERT_FALSE(ul_stats.is_null());
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(ul_stats["avatar_frames"], json({1, 2, 3, 4}));
  EXPECT_EQ(ul_stats["outside_max"], 0);
  EXPECT_LE(ul_stats["inside_max"].get<int>(), 1);
  EXPECT_GT(ul_stats["pred_max"].get<int>() - ul_stats["pred_min"].get<int>(), 100);
}

// --crop-interp linear (checkpoints trained with the older bilinear crop) and
// --start-frame override the family's choices, and the report says so.
TEST_F(UltralightE2E, CropInterpAndStartFrameOverrideTheFamily) {
  const json report = render("over", "probe-hubert.onnx", "aud_hu.npy",
                             {"--crop-interp", "linear", "--start-frame", "0", "--frames", "4"});
  ASSERT_FALSE(report.is_null());
  EXPECT_EQ(report["frames"], 4);
  EXPECT_EQ(report["crop_interp"], "linear");
  EXPECT_EQ(report["first_frame"], 0);
  int rc = -1;
  const json stats = reference_check("over", "probe-hubert", "aud_hu.npy",
                                     {"--crop-interp", "linear", "--first-frame", "0"}, &rc);
  ASSERT_FALSE(stats.is_null());
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(stats["avatar_frames"], json({0, 1, 2, 3}));
  EXPECT_EQ(stats["outside_max"], 0);
  EXPECT_LE(stats["inside_max"].get<int>(), 1);
}

// Features whose block does not fit the model: exit 2, one line naming the file and both
// shapes, nothing written. `features --features` checks and converts the same files.
TEST_F(UltralightE2E, FeaturesThatDoNotFitTheWindowExit2) {
  const fs::path out = work_ / "bad";
  std::string log;
  int rc = run({(build_dir() / "talkrender").string(), "render", "--package", package().string(),
                "--generator", (models_ / "probe-hubert.onnx").string(), "--features",
                (models_ / "aud_wenet.npy").string(), "--out", out.string() + "/", "--no-progress"},
               work_ / "bad.log", &log);
  EXPECT_EQ(rc, 2) << log;
  for (const std::string part : {(models_ / "aud_wenet.npy").string(), std::string("[10, 16, 512]"),
                                 std::string("[16, 32, 32]")}) {
    EXPECT_NE(log.find(part), std::string::npos) << part << " not in: " << log;
  }
  EXPECT_TRUE(!fs::exists(out) || fs::is_empty(out));

  const fs::path bin = work_ / "hu.bin";
  rc = run({(build_dir() / "talkrender").string(), "features", "--features",
            (models_ / "aud_hu.npy").string(), "--generator",
            (models_ / "probe-hubert.onnx").string(), "--out", bin.string()},
           work_ / "features.log", &log);
  EXPECT_EQ(rc, 0) << log;
  ASSERT_TRUE(fs::exists(bin));
  EXPECT_EQ(fs::file_size(bin), 12u * 2048u * 4u);
  EXPECT_EQ(json::parse(slurp(work_ / "hu.json"))["shape"], json({12, 2048}));
  rc = run({(build_dir() / "talkrender").string(), "features", "--features",
            (models_ / "aud_wenet.npy").string(), "--generator",
            (models_ / "probe-hubert.onnx").string(), "--out", (work_ / "we.bin").string()},
           work_ / "features_bad.log", &log);
  EXPECT_EQ(rc, 2) << log;
  EXPECT_NE(log.find("[10, 16, 512]"), std::string::npos) << log;
  EXPECT_FALSE(fs::exists(work_ / "we.bin"));
}

}  // namespace

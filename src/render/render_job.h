// A whole render: avatar package + speech (audio file or precomputed features) + generator
// -> MP4 or image sequence, with a timing report. Used by `talkrender render` and `demo`.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/status.h"
#include "io/frame_store.h"
#include "io/frame_writer.h"
#include "nn/nn.h"
#include "render/model_family.h"
#include "render/output_target.h"
#include "render/render.h"

namespace tr::render {

// The batch size used when --batch is not given (0 = this default), per backend.
// cpu: 1. On the development machine (2-core AMD EPYC Zen 3, AVX2, 2 threads, gen320-ave,
// `talkrender infer-bench --batch 1,2,4 --runs 8`, three rounds on 2026-11-27) the batch
// size does not change the speed beyond the machine's noise: b1 110.0 / 116.2 / 105.3,
// b2 137.5 / 113.2 / 110.2, b4 103.7 / 101.7 / 105.6 ms/frame. Each extra sample costs
// ~79 MB of activations at 320 (the runtime's arena), so the smallest batch wins on memory
// (full render with --cache-mb 256: peak 666 MiB at batch 2, 577 at batch 1).
// cuda: 4, the seed study's choice: a GPU needs several frames per call to fill up.
inline constexpr int kDefaultCpuBatch = 1;
inline constexpr int kDefaultCudaBatch = 4;
int default_batch(nn::BackendKind backend);

// The runtime precision when --precision is not given: fp32 (README, "Precision").
inline constexpr nn::Precision kDefaultRenderPrecision = nn::Precision::kFloat32;

// The x264 preset when --preset is not given.
// cpu: ultrafast. The generator fills every core, so each millisecond of encoder CPU is a
// millisecond less for inference. Measured with `talkrender bench` (gen320-ave, batch 4,
// 2 workers, 96 frames, 5 rounds, same binary back to back, 2026-11-28): pipeline FPS as a
// fraction of inference-only FPS 0.986 (rounds 0.91-1.04) with ultrafast, 0.895 (0.76-0.96)
// with superfast. The cost is file size: about 3.4 Mbit/s at 720p25 against 1.6 for
// superfast (crf 20); `--preset superfast` or `veryfast` for smaller files.
// cuda: io::kDefaultX264Preset (superfast): inference leaves the CPU to the encoder.
inline constexpr const char* kDefaultCpuPreset = "ultrafast";
const char* default_preset(nn::BackendKind backend);

struct RenderJobOptions {
  std::string package_dir;
  // Instead of package_dir: a SyncTalk_2D / Ultralight dataset folder (io/dataset.h). Its
  // aud_*.npy for the model's audio mode is the speech when neither --audio nor --features
  // is given; it has no models, so generator_path is needed.
  std::string dataset_dir;
  // Speech: audio_path (decoded + audio encoder), features_path (.bin float32 [T, block]
  // with .json sidecar, or .npy; already the padded matrix P), or both: the features drive
  // the mouth and the audio is the MP4's sound (its length checked against the features).
  std::string audio_path;
  std::string features_path;
  std::string audio_encoder_path;  // empty: <package>/models/audio_encoder.onnx
  std::string generator_path;      // empty: <package>/models/generator.onnx
  // A .pth generator's audio mode where its tensors cannot tell (SyncTalk_2D's ave and
  // hubert generators differ only in a stride): "ave", "hubert" or "wenet" (--asr, the
  // flag's name in SyncTalk_2D). Empty: from the speech features' shape, else the name.
  std::string asr;
  bool crops_from_video = false;  // crops_328_video.mp4 instead of crops of the full frame
  // Avatar frame cache: 0 keeps every decoded frame in RAM (compact YUV, converted to BGR
  // per use); N > 0 bounds it to N MiB, decoding on a thread ahead of the frame walk.
  int64_t cache_mb = 0;

  // Output: the kind comes from the name (render/output_target.h: NAME.mp4, DIR/, an
  // existing folder, or NAME_%06d.png).
  std::string out_path;
  std::string image_format;  // png | jpg for sequences; empty: from the name, else png
  int crf = 20;
  std::string preset;  // empty: default_preset(backend)
  bool overwrite = false;

  FrameOrder order = FrameOrder::kPingPong;
  // Avatar frame of output frame 0; -1: the model family's (0 for SyncTalk_2D, 1 for
  // Ultralight, render/model_family.h).
  int64_t start_frame = -1;
  // Crop interpolation (cv::InterpolationFlags); unset: the model family's (--crop-interp).
  std::optional<int> crop_interpolation;
  int64_t frames = -1;  // -1: every frame the audio asks for (rows of P)

  int batch = 0;  // 0: default_batch(backend)
  int workers = 2;
  int threads = 0;  // runtime threads, 0 = one per core
  nn::BackendKind backend = nn::BackendKind::kCpu;
  // Unset: kDefaultRenderPrecision (see there).
  std::optional<nn::Precision> precision;
  int decode_threads = 0;

  bool progress = false;  // progress bar on stderr
};

struct RenderReport {
  int64_t frames = 0;
  double wall_s = 0;    // the whole job, loading included
  double fps = 0;       // frames / render_s
  double render_s = 0;  // first inference -> last frame written
  double load_ms = 0;   // package decode + model load
  double audio_ms = 0;  // audio decode + mel + encoder, or reading the feature file
  double prep_ms_per_frame = 0;
  double infer_ms_per_frame = 0;
  double composite_ms_per_frame = 0;  // summed over workers: CPU time per frame
  double encode_ms_per_frame = 0;     // time the writer thread spent in the sink
  double peak_rss_mb = 0;
  double wait_frames_ms_per_frame = 0;  // inference waiting on the streaming frame cache
  int64_t cache_mb = 0;                 // 0 = full cache
  double frame_cache_mb = 0;            // bytes the frame cache held at the end
  int64_t frames_decoded = 0;           // avatar frames decoded (restarts included)
  // Where peak_rss_mb goes (issue 21): each part measured on its own, other the remainder.
  struct MemoryBreakdown {
    double frame_cache_mb = 0;  // decoded avatar frames held (the store's bytes, at the end)
    double runtime_mb = 0;      // weights_mb + workspace_mb
    double weights_mb = 0;      // the model's weights (the backend's copy: as large in fp32)
    double workspace_mb = 0;    // activation arena + scratch of the compiled plan
    double encoder_mb = 0;      // resident memory the MP4 encoder added when it opened
    double code_mb = 0;         // file-backed: the binary, shared libraries, mapped files
    double other_mb = 0;        // peak - the above: decoder, compositing, allocator, stacks
  };
  MemoryBreakdown memory;
  // Resident and peak memory after each minute of output video (long renders).
  struct RssPoint {
    int minute = 0;
    double rss_mb = 0, peak_rss_mb = 0;
  };
  std::vector<RssPoint> rss_by_minute;
  int batch = 0, workers = 0, threads = 0;
  int model_size = 0;
  std::string audio_mode;
  // The render rules used (render/model_family.h), overrides applied.
  std::string model_family;               // e.g. "ultralight-hubert-160"
  int window_blocks = 0;                  // feature blocks per audio window (16 or 8)
  int64_t first_frame = 0;                // avatar frame of output frame 0
  std::string crop_interp, paste_interp;  // "area" | "linear" | "cubic"
  std::string backend;
  std::string precision;  // what the runtime computed in: fp32, bf16, fp16
  std::string isa;        // cpu: oneDNN's ISA and the activation layout, e.g. "avx2 nChw8c"
  std::string encoder;    // "x264 PRESET crf N" for MP4 output, empty for image sequences
  std::string output;
  double video_fps = 0;   // the output's frame rate: the model's
  double avatar_fps = 0;  // the avatar video's own rate (frames are taken by index)
  // A model file with a fixed batch (nn::FixedBatch): made dynamic, or "B=4 runs as 4 calls
  // of 1 (why)"; empty for a dynamic-batch model.
  std::string fixed_batch;

  nlohmann::json to_json() const;
  std::string to_text() const;  // a few human-readable lines
};

// Runs the render. Errors: kBadInput for the user's files and flags (naming them),
// kRuntime for I/O failures, kInterrupted after SIGINT/SIGTERM. On any error nothing is
// left at the output path (an existing output is kept) and no temporary files remain.
Result<RenderReport> run_render_job(const RenderJobOptions& opts);

// Peak resident set size of this process in MiB.
double peak_rss_mb();
// Current resident set size of this process in MiB.
double current_rss_mb();

// ---------------------------------------------------------------------------------------
// The pieces of a render job, for callers that render the same inputs several times
// (talkrender bench).

// Everything a render reads, loaded and checked once.
struct LoadedRender {
  std::shared_ptr<const nn::Model> model;
  std::string generator_path;
  int model_size = 0;
  AudioMode mode;      // the family's speech features (name, shape, fps)
  ModelFamily family;  // the render rules, chosen at load with the job's overrides
  std::shared_ptr<AvatarFrames> avatar;
  std::shared_ptr<io::FrameStore> store;  // behind avatar->source
  std::shared_ptr<FeatureWindows> windows;
  int width = 0, height = 0;
  // The output's frame rate: the model's (mode.fps), whatever the avatar video's, since a
  // feature window covers one model frame. Avatar frames are still taken by index.
  int fps_num = 25, fps_den = 1;
  double avatar_fps = 25.0;  // the avatar video's own (average) rate, for notes
  double audio_s = 0;        // seconds of speech in --audio (0 without it)
  double load_ms = 0, audio_ms = 0;
};
// Loads the generator, the speech features and the package as run_render_job does
// (o.out_path and the output flags are not used).
Result<LoadedRender> load_render_inputs(const RenderJobOptions& o);

// o.precision, or kDefaultRenderPrecision when unset.
std::optional<nn::Precision> render_precision(const RenderJobOptions& o);
// For the report: the precision the runtime will compute in and (cpu) the ISA and layout;
// empty when the precision cannot run here.
std::pair<std::string, std::string> precision_and_isa(const RenderJobOptions& o);

// A Predictor running `model` on a new runtime session. With `release_weights` the session
// lets go of the model's weights after compiling (nn::SessionOptions::release_weights): for
// a render, which runs one batch shape and drops its Model afterwards.
// `precision` unset: the backend's default (nn::resolve_precision).
Result<std::shared_ptr<Predictor>> make_predictor(
    std::shared_ptr<const nn::Model> model, nn::BackendKind backend, int threads,
    bool release_weights = false, std::optional<nn::Precision> precision = std::nullopt);

// MP4 writer options for a loaded render: the package's size, the model's rate, the job's
// x264 settings, and its audio file (if any) as the soundtrack: all of it, or cut at the
// video's end when --frames asked for fewer frames than the speech needs.
io::Mp4Options mp4_options(const LoadedRender& in, const RenderJobOptions& o);

// Pipeline options for a loaded render and the job's flags.
PipelineOptions pipeline_options(const LoadedRender& in, const RenderJobOptions& o);

}  // namespace tr::render

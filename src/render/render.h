// talkrender's frame pipeline: per-frame preparation and compositing (model contract
// section 3), frame order (section 5), audio windows (section 4 step 12) and the threaded
// batch pipeline that ties them to a predictor and an output sink.
//
// The pipeline is written against small interfaces (Predictor, AudioWindows, FrameSink) so
// that tests can drive it with fake stages; render_job.h glues it to io, audio and nn.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <opencv2/core.hpp>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/tensor.h"

namespace tr::render {

// ---------------------------------------------------------------------------------------
// Frame order (contract section 5).

enum class FrameOrder { kPingPong, kLoop };
Result<FrameOrder> parse_frame_order(const std::string& s);  // "pingpong" | "loop"
const char* frame_order_name(FrameOrder o);

// The avatar frame k(i) used by output frame i, for an avatar of `avatar_frames` frames.
// pingpong: 0, 1, ..., N-1, N-2, ..., 1, 0, 1, ...; loop: 0, 1, ..., N-1, 0, 1, ...
// `start` shifts the walk: output frame i uses position i + start of the sequence.
int avatar_frame_for(int64_t output_index, int avatar_frames, FrameOrder order, int64_t start = 0);

// ---------------------------------------------------------------------------------------
// Per-frame preparation and compositing (contract section 3).

struct PrepSettings {
  int size = 320;                            // S: the model's ROI size
  int border = 4;                            // crop = S + 2 * border
  int crop_interpolation = 2;                // cv::InterpolationFlags (model_family.h)
  int paste_interpolation = 2;               // the way back
  cv::Rect mask = cv::Rect(5, 5, 310, 305);  // filled black in the masked ROI

  int crop_size() const { return size + 2 * border; }
  // A SyncTalk_2D generator's settings at ROI size `size`, from the family table
  // (render/model_family.h): S = 320 bicubic, mask (5,5,310,305); S = 160 bilinear, mask
  // (5,5,150,145); other sizes bicubic with a mask scaled from 320. A loaded model's come
  // from its family (ModelFamily::prep()).
  static PrepSettings for_size(int size);
};

// Checks that `rect` lies inside a frame of the given size and is not empty.
Status check_rect(const cv::Rect& rect, const cv::Size& frame_size, int avatar_frame);

// crop = resize(full[rect], (S+8) x (S+8), crop_interpolation). `rect` must be checked.
cv::Mat make_crop(const cv::Mat& full_bgr, const cv::Rect& rect, const PrepSettings& s);
// The same into `crop`, reusing its buffer when it already has the crop's size.
void make_crop(const cv::Mat& full_bgr, const cv::Rect& rect, const PrepSettings& s, cv::Mat* crop);

// Writes the generator input of one frame, [6, S, S] float32 NCHW: channels 0..2 the ROI
// crop[4:S+4, 4:S+4], channels 3..5 the ROI with the mask rectangle black; BGR, value / 255.
void fill_generator_input(const cv::Mat& crop_bgr, const PrepSettings& s, float* dst);

// Turns one prediction [3, S, S] (BGR planes, [0, 1]) into a uint8 BGR image by truncation,
// uint8(v * 255) as the reference does (values outside [0, 1] and NaN are clamped).
cv::Mat prediction_to_image(const float* pred, int size);

// The same into `dst` (size x size CV_8UC3, e.g. an ROI of a larger image); no allocation.
void write_prediction(const float* pred, int size, cv::Mat dst);

// out = full with rect replaced by resize(crop with pred pasted at [4:S+4], w x h).
// `out` is (re)allocated as a copy of `full_bgr`; everything outside `rect` is bit-identical.
void composite_frame(const cv::Mat& full_bgr, const cv::Rect& rect, const cv::Mat& crop_bgr,
                     const float* pred, const PrepSettings& s, cv::Mat* out);

// The second half of composite_frame for a frame that already holds the full image: pastes
// resize(crop with pred at [4:S+4]) into (*frame)(rect). `canvas` is scratch (reused).
void paste_prediction(const cv::Rect& rect, const cv::Mat& crop_bgr, const float* pred,
                      const PrepSettings& s, cv::Mat* canvas, cv::Mat* frame);

// ---------------------------------------------------------------------------------------
// Audio windows (contract section 4 step 12).

// Per-output-frame audio input of the generator.
class AudioWindows {
 public:
  virtual ~AudioWindows() = default;
  virtual int64_t frames() const = 0;        // output frames the audio asks for
  virtual int64_t window_numel() const = 0;  // floats in one window
  // Writes window i (0 <= i < frames()) to dst[window_numel()].
  virtual void window(int64_t i, float* dst) const = 0;
};

// Windows over a feature matrix P [rows, block] of `blocks` rows each (the model family's
// window_blocks: 16 for SyncTalk_2D, 8 for Ultralight): window i = rows
// P[i - blocks/2 .. i + blocks/2), zero rows outside P, flattened row-major. One output
// frame per row of P. window_numel must be blocks * block.
class FeatureWindows final : public AudioWindows {
 public:
  // `features` is [rows, block] float32. Errors if blocks * block != window_numel.
  static Result<std::unique_ptr<FeatureWindows>> create(Tensor features, int64_t window_numel,
                                                        const std::string& name, int blocks = 16);
  int64_t frames() const override { return rows_; }
  int64_t window_numel() const override { return blocks_ * block_; }
  int blocks() const { return blocks_; }
  void window(int64_t i, float* dst) const override;

 private:
  FeatureWindows(Tensor f, int64_t rows, int64_t block, int blocks)
      : features_(std::move(f)), rows_(rows), block_(block), blocks_(blocks) {}
  Tensor features_;
  int64_t rows_ = 0, block_ = 0;
  int blocks_ = 16;
};

// The speech features a generator takes: their kind, the audio input shape (without
// batch) and the model's frame rate. A block covers one model frame (40 ms of speech for
// ave and hubert, 50 ms for wenet), so the output video runs at this rate whatever the
// avatar video's. A view of the family table (render/model_family.h), which has the rest.
struct AudioMode {
  const char* name;  // "ave", "hubert", "wenet"
  Shape shape;       // e.g. [32,16,16], [32,32,32], [256,16,32], Ultralight [16,32,32]
  int fps = 25;      // 25, 25, 20
};
// The mode of the first family whose audio shape equals `shape` (without batch), or an
// error naming the shape.
Result<AudioMode> audio_mode_for_shape(const Shape& shape);

// ---------------------------------------------------------------------------------------
// Pipeline stages.

// Where the pipeline gets the avatar's full frames when they are not held as BGR Mats
// (e.g. a compact YUV cache, or a bounded streaming decoder). The inference thread calls
// plan() once, then acquire() in output order; the handle keeps the frame alive until the
// frame's composite is done. to_bgr() is called from the inference thread (crops) and the
// workers (composites) at the same time, so it must be thread-safe.
class FrameSource {
 public:
  virtual ~FrameSource() = default;
  virtual int count() const = 0;
  virtual cv::Size size() const = 0;
  // Output frames 0 .. total-1 will use avatar frame frame_for(i).
  virtual void plan(std::function<int(int64_t)> frame_for, int64_t total) = 0;
  // Avatar frame k for output frame i; may block while the frame is decoded.
  virtual Result<std::shared_ptr<const void>> acquire(int64_t i, int k) = 0;
  // The acquired frame as BGR into `out`, reusing its buffer when it has the right size.
  virtual Status to_bgr(const std::shared_ptr<const void>& frame, cv::Mat& out) const = 0;
};

// The avatar: full frames (BGR Mats in `full`, or a FrameSource), rects, and optionally the
// 328 crops from crops_328_video.mp4 (empty: crops are derived from the full frames).
struct AvatarFrames {
  std::vector<cv::Mat> full;            // used when `source` is null
  std::shared_ptr<FrameSource> source;  // when set, `full` is empty
  std::vector<cv::Rect> rects;
  std::vector<cv::Mat> crops;  // empty, or one per frame of size crop_size() square
  int count() const { return source ? source->count() : static_cast<int>(full.size()); }
};
// Checks sizes, rect bounds and crop sizes; errors name `name` and the first bad frame.
Status validate_avatar(const AvatarFrames& a, const PrepSettings& s, const std::string& name);

// Runs the generator on one batch: input [B, 6, S, S], audio [B, ...] -> output [B, 3, S, S].
// Called from one thread only (the pipeline's inference thread).
class Predictor {
 public:
  virtual ~Predictor() = default;
  virtual Result<Tensor> predict(const Tensor& input, const Tensor& audio) = 0;
};

// Receives the finished frames in order 0, 1, 2, ... from the pipeline's writer thread.
class FrameSink {
 public:
  virtual ~FrameSink() = default;
  virtual Status write(int64_t index, const cv::Mat& frame_bgr) = 0;
  // All frames written: complete the output (rename the temporary into place).
  virtual Status finish() = 0;
  // Failure or interrupt: remove every temporary file; nothing appears at the output path.
  virtual void abort() = 0;
};

struct PipelineOptions {
  PrepSettings prep;
  FrameOrder order = FrameOrder::kPingPong;
  int64_t start_frame = 0;
  int64_t frames = -1;  // render the first `frames` output frames; -1: all the audio asks for
  Shape audio_shape;    // the generator's audio input without batch; empty: [window_numel]
  int batch = 4;
  int workers = 2;  // compositing threads
  // Frames alive at once (prepared, in inference, compositing or waiting to be written);
  // 0 picks 3 * batch + 2 * workers (a batch in preparation, one in inference, one being
  // composited). Bounds memory and provides backpressure.
  int max_in_flight = 0;
  // Nice increment for the prep, compositing and writer threads (Linux, per thread). On a
  // machine whose cores the generator fills, the helpers then run mostly in the gaps the
  // runtime leaves (barriers) instead of stalling both runtime threads at each barrier
  // while they hold one core. 0 leaves priorities alone.
  int helper_nice = 10;
  // Called from the writer thread after each frame written (progress display).
  std::function<void(int64_t done, int64_t total)> on_progress;
};

struct PipelineStats {
  int64_t frames = 0;
  double run_s = 0;           // first inference started -> last frame written
  double prep_ms = 0;         // total, prep thread (crops and input tensors)
  double infer_ms = 0;        // total time inside Predictor::predict
  double composite_ms = 0;    // total over all workers
  double encode_ms = 0;       // total time inside FrameSink::write + finish
  double wait_frames_ms = 0;  // prep thread waiting for avatar frames (streaming cache)
  int batches = 0;
};

// Renders frames 0 .. n-1 (n = min(audio->frames(), options.frames)): prepares each batch,
// predicts, composites on `workers` threads and writes in order. Stops within ~0.1 s of
// tr::interrupted() (kInterrupted) or the first error, calling sink->abort(); on success
// calls sink->finish(). If the predictor is still busy when interrupted, its thread is
// detached and left to finish on its own (the shared_ptrs keep what it uses alive).
Result<PipelineStats> run_pipeline(std::shared_ptr<const AvatarFrames> avatar,
                                   std::shared_ptr<const AudioWindows> audio,
                                   std::shared_ptr<Predictor> predictor,
                                   std::shared_ptr<FrameSink> sink, const PipelineOptions& opts);

}  // namespace tr::render

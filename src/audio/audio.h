// talkrender's audio front-end: audio file -> 16 kHz mono -> normalised mel [80, T] ->
// audio-encoder features F [n, 512] -> padded matrix P -> one generator window per video
// frame. Implements docs/model-contract.md section 4 exactly; the numbers below are that
// section's. tools/audio_reference.py is the independent numpy reference the tests use.
//
// Threads: every function here is re-entrant; MelStream / StreamingFrontEnd /
// Resampler16k objects are single-threaded (one per thread), AudioEncoder likewise.
//
// Streaming latency (documented as the issue asks). With input at 16 kHz:
//  * mel frame j is centred on sample 200 j and needs samples up to 200 j + 400: 25 ms of
//    lookahead after its centre;
//  * encoder features F_i need mel frames up to floor(16 i / 5) + 15, i.e. samples up to
//    200 floor(16 i / 5) + 3400 <= 640 i + 3400: at most 212.5 ms after frame i's time
//    i x 40 ms;
//  * the generator window of output frame i (rows P[i-8 .. i+8), P_r = F_{r-1}) needs F up to
//    F_{i+6}, i.e. samples up to 640 i + 7240: at most 452.5 ms of lookahead after i x 40 ms
//    (between 440 and 452.5 ms depending on the floor). The last 7 frames' windows (and
//    P's repeated last row) are only known at finish(), when T and n are known. Without
//    the step-11 padding (P = F, Ultralight) it is one frame more: 492.5 ms.
//  * raw input at another rate adds the resampler's delay (libsoxr HQ: a few ms), and the
//    encoder batch size adds up to (batch - 1) x 40 ms; use batch 1 for the lowest latency.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/tensor.h"

namespace tr::nn {
struct SessionOptions;
}

namespace tr::audio {

inline constexpr int kSampleRate = 16000;  // the model's audio rate
inline constexpr int kFftSize = 800;       // n_fft and window length (50 ms)
inline constexpr int kHop = 200;           // 12.5 ms: 80 mel frames per second
inline constexpr int kMelBins = 80;
inline constexpr int kMelWindow = 16;  // mel frames per encoder window
inline constexpr int kVideoFps = 25;
inline constexpr int kFeatureDim = 512;  // audio-encoder output per frame (ave)
inline constexpr int kContextRows = 16;  // rows of P per generator window: P[i-8 .. i+8)

// ---------------------------------------------------------------------------------------
// Decoding (FFmpeg) and resampling (libsoxr, SOXR_HQ = librosa's default "soxr_hq").

struct AudioInfo {
  int source_rate = 0;         // the file's sample rate
  int channels = 0;            // the file's channel count (mixed to mono as their mean)
  std::string codec;           // FFmpeg codec name
  int64_t source_samples = 0;  // mono samples decoded at source_rate
  // Presentation time of the first decoded sample on the container's timeline, seconds
  // (after edit lists and the encoder's priming are applied): 0 for a plain file, 0.2 for
  // audio muxed with `ffmpeg -itsoffset 0.2`. sync-check lines audio up with video by it.
  double start_time_s = 0.0;
};

// Decodes any audio FFmpeg reads (wav, mp3, m4a/aac, ogg/opus, flac, ...; any sample format
// and channel count), mixes to mono and resamples to 16 kHz, float32. The output has
// ceil(source_samples * 16000 / source_rate) samples (librosa's length rule).
// Errors (kBadInput) name the file: unreadable, no audio stream, nothing decodable, or a
// NaN/Inf sample (float files are rejected, not sanitised).
Result<std::vector<float>> load_audio(const std::string& path, AudioInfo* info = nullptr);

// The decoder alone: mono chunks at the file's rate, as they are decoded. `sink` may stop
// the decode by returning an error, which is passed through.
using MonoSink = std::function<Status(const float* mono, size_t count, int sample_rate)>;
Status decode_audio(const std::string& path, const MonoSink& sink, AudioInfo* info = nullptr);

// Streaming mono resampler to 16 kHz. Output so far is never longer than the final
// length; finish() pads or trims to ceil(input * 16000 / rate) exactly. With rate 16000 it
// copies. Chunking does not change the output (tested).
class Resampler16k {
 public:
  static Result<std::unique_ptr<Resampler16k>> create(int input_rate);
  ~Resampler16k();
  Status push(const float* x, size_t n, std::vector<float>* out);
  Status finish(std::vector<float>* out);
  int input_rate() const { return input_rate_; }

 private:
  Resampler16k() = default;
  Status drain(const float* x, size_t n, std::vector<float>* out);
  int input_rate_ = 0;
  void* soxr_ = nullptr;  // soxr_t
  int64_t input_total_ = 0;
  int64_t output_total_ = 0;  // forwarded to the caller
  std::vector<float> held_;   // produced but not yet allowed out (see push)
  std::vector<float> scratch_;
};

// ---------------------------------------------------------------------------------------
// Mel spectrogram (contract steps 2-7). Output M is [80, T] float32, T = 1 + len / 200.

Tensor compute_mel(const float* samples, size_t count);
inline Tensor compute_mel(const std::vector<float>& s) { return compute_mel(s.data(), s.size()); }

// Incremental form: bit-identical to compute_mel for any chunking. Frames are appended
// frame-major (80 floats per frame) as soon as they are determined (25 ms lookahead).
class MelStream {
 public:
  MelStream();
  ~MelStream();
  MelStream(const MelStream&) = delete;
  MelStream& operator=(const MelStream&) = delete;
  void push(const float* x, size_t n, std::vector<float>* frames);
  void finish(std::vector<float>* frames);  // emits the remaining frames (zero padding)
  int64_t frames_emitted() const { return emitted_; }

  struct Kernel;  // internal (mel.cc): one frame's FFT + filterbank, shared by compute_mel

 private:
  void emit_ready(int64_t available_end, std::vector<float>* frames);
  std::unique_ptr<Kernel> kernel_;
  std::vector<float> buf_;    // pre-emphasised signal with the 400 leading zeros
  int64_t buf_offset_ = 0;    // index in the padded signal of buf_[0]
  int64_t samples_ = 0;       // input samples seen
  float last_sample_ = 0.0f;  // for pre-emphasis across chunks
  int64_t emitted_ = 0;
  bool finished_ = false;
};

// [80, T] from frame-major frames (as MelStream emits them).
Tensor mel_from_frames(const std::vector<float>& frame_major);

// ---------------------------------------------------------------------------------------
// Frames and windows (contract steps 8-12).

// n = floor((T - 16) / 80 * 25) + 2, evaluated in IEEE double exactly as the reference
// Python does (which differs from exact rational arithmetic for some T: T = 384 gives 116, not
// 117). Error when T < 16 (audio shorter than 3000 samples = 0.1875 s): no window can be formed.
Result<int64_t> frame_count(int64_t mel_frames);

struct MelSpan {
  int64_t begin = 0, end = 0;  // [begin, end) in mel frames, always 16 long
};
// s = floor(80 i / 25), e = s + 16; if e > T: e = T, s = T - 16. Requires T >= 16.
MelSpan mel_window(int64_t frame, int64_t mel_frames);

// Encoder inputs for frames [first, first + count): [count, 1, 80, 16].
Tensor mel_windows(const Tensor& mel, int64_t first, int64_t count);

// The audio encoder as a function: [B, 1, 80, 16] -> [B, 512] (or [B, 512, 1, 1]).
using EncoderFn = std::function<Result<Tensor>(const Tensor& batch)>;

struct FeatureOptions {
  int64_t batch = 64;       // windows per encoder call (bounds memory; fixes grouping)
  bool repeat_ends = true;  // step 11 padding (SyncTalk_2D); false: P = F (Ultralight)
};

// F [n, 512] for the mel (batched in groups of opts.batch windows: 0..b-1, b..2b-1, ...).
Result<Tensor> encode_mel(const Tensor& mel, const EncoderFn& encoder,
                          const FeatureOptions& opts = {});
// P from F: [F0, F0..F(n-1), F(n-1)] when repeat_ends, else a copy of F.
Tensor pad_features(const Tensor& features, bool repeat_ends = true);
// audio file samples (16 kHz) -> P. Errors from the encoder or a too short input.
Result<Tensor> compute_features(const std::vector<float>& samples_16k, const EncoderFn& encoder,
                                const FeatureOptions& opts = {});

// Generator window of output frame i: rows P[i-8 .. i+8), zero rows outside P, written
// row-major into out (16 x block floats). Valid for any i (all-zero far outside). This is
// SyncTalk_2D's 16-block window; render takes each model family's window (8 blocks for
// Ultralight) from render/model_family.h.
void generator_window_into(const Tensor& P, int64_t frame, float* out);
// The same reshaped to the model's audio input shape without batch (e.g. [32, 16, 16]);
// kBadInput if 16 x block != prod(shape).
Result<Tensor> generator_window(const Tensor& P, int64_t frame, const Shape& audio_shape);

// Block size a model's audio input needs: prod(audio_shape without batch) / 16 (ave 512,
// hubert 2048, wenet 8192). kBadInput if it does not divide.
Result<int64_t> block_size_for(const Shape& audio_shape_without_batch);

// Precomputed features: raw float32 little-endian `.bin` with a `.json` sidecar
// ({"shape": [R, ...]} as in the sample package), or `.npy`. Returns [R, block]. Checks
// that the size is a multiple of the row size, that the sidecar agrees, that all values
// are finite, and (when expected_block > 0) that the block size is the model's.
// `file_shape`, when given, receives the shape as stored (e.g. [n, 2, 1024] for
// Ultralight's aud_hu.npy), for errors that name it.
Result<Tensor> read_feature_file(const std::string& path, int64_t expected_block = 0,
                                 Shape* file_shape = nullptr);

// ---------------------------------------------------------------------------------------
// The runtime-backed encoder (src/nn). Checks the model's input [*, 1, 80, 16].

class AudioEncoder {
 public:
  static Result<std::unique_ptr<AudioEncoder>> load(const std::string& onnx_path,
                                                    const nn::SessionOptions& opts);
  static Result<std::unique_ptr<AudioEncoder>> load(const std::string& onnx_path);
  ~AudioEncoder();
  Result<Tensor> encode(const Tensor& batch);  // [B, 1, 80, 16] -> [B, 512]
  EncoderFn fn();                              // borrows this object

  struct Impl;
  explicit AudioEncoder(std::unique_ptr<Impl> impl);

 private:
  std::unique_ptr<Impl> impl_;
};

// ---------------------------------------------------------------------------------------
// Streaming front-end: audio chunks in, mel frames and generator windows out, each as
// soon as it is determined (see the latency note at the top). Output is bit-identical to
// compute_mel / compute_features + generator_window_into for any chunking, given the same
// FeatureOptions (the encoder is run on the same groups of windows). At another input rate
// it equals load_audio's resampling + compute_mel bit for bit (libsoxr's output does not
// depend on how the input is chunked; tested). Input is mono: mix channels before push().

struct StreamOutput {
  std::vector<float> mel;       // new mel frames, frame-major (80 floats each)
  int64_t first_mel_frame = 0;  // index of the first frame in `mel` (first call's)
  struct Window {
    int64_t frame;            // output frame index i (0 .. rows(P) - 1)
    std::vector<float> data;  // 16 x block floats: P[i-8 .. i+8)
  };
  std::vector<Window> windows;  // new windows, in frame order
  void clear() {
    mel.clear();
    windows.clear();
  }
};

class StreamingFrontEnd {
 public:
  // input_rate: the rate of the samples given to push(); 16000 skips the resampler.
  // encoder may be empty: then only mel frames are produced.
  static Result<std::unique_ptr<StreamingFrontEnd>> create(EncoderFn encoder,
                                                           const FeatureOptions& opts = {},
                                                           int input_rate = kSampleRate);
  ~StreamingFrontEnd();
  // Mono samples in [-1, 1] at input_rate; results are appended to *out. kBadInput on a
  // NaN/Inf sample.
  Status push(const float* samples, size_t count, StreamOutput* out);
  // End of input: emits everything left. kBadInput if the audio was too short (T < 16).
  Status finish(StreamOutput* out);

  int64_t mel_frames() const;  // emitted so far
  int64_t frames() const;      // windows emitted so far

  struct Impl;
  explicit StreamingFrontEnd(std::unique_ptr<Impl> impl);

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace tr::audio

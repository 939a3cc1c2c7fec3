// Video decoding to BGR, matching the ffmpeg CLI's `-pix_fmt bgr24` output bit for bit.
//
// The CLI converts through an auto-inserted scale filter whose swscale flags default to
// "bicubic" (fftools init_opts) and which sets the colour matrix from the frame's
// colorspace ("auto") and the source range from the frame's color_range. BgrConverter
// reproduces exactly that setup.
#include "io/video_reader.h"

#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <limits>
#include <mutex>
#include <thread>

#include "common/interrupt.h"
#include "io/av_util.h"

namespace tr::io {
namespace {

std::string pix_fmt_name(int fmt) {
  const char* name = av_get_pix_fmt_name(static_cast<AVPixelFormat>(fmt));
  return name ? name : "unknown";
}

// vf_scale's parse_yuv_type("auto", frame colorspace): invalid/unknown -> BT.601.
const int* coefficients_for(AVColorSpace cs) {
  int c = static_cast<int>(cs);
  if (c < 1 || c > 10 || c == 8) c = AVCOL_SPC_BT470BG;
  return sws_getCoefficients(c);
}

// swscale's SIMD BGR writers store whole vectors and may run a few bytes past the end of
// the last row; a buffer allocated to the exact size would have its heap neighbour
// overwritten. Frames therefore live in a buffer with spare rows after the image.
constexpr size_t kWritePadding = 64;

}  // namespace

bool has_padding(const cv::Mat& m, int rows, int cols) {
  if (m.rows != rows || m.cols != cols || m.type() != CV_8UC3 || !m.isContinuous() || rows <= 0)
    return false;
  // Not m.dataend: for a row-range view OpenCV leaves it at the parent's end.
  const uchar* image_end = m.ptr(rows - 1) + static_cast<size_t>(cols) * 3;
  return m.datalimit >= image_end && static_cast<size_t>(m.datalimit - image_end) >= kWritePadding;
}

namespace {

// One swscale context, rebuilt when the input geometry/format/colour tags change.
class BgrConverter {
 public:
  Status convert(const AVFrame* f, cv::Mat& out, const std::string& path) {
    if (!ctx_ || f->width != w_ || f->height != h_ || f->format != fmt_ || f->colorspace != cs_ ||
        f->color_range != range_) {
      ctx_.reset(sws_getContext(f->width, f->height, static_cast<AVPixelFormat>(f->format),
                                f->width, f->height, AV_PIX_FMT_BGR24, SWS_BICUBIC, nullptr,
                                nullptr, nullptr));
      if (!ctx_) {
        return RuntimeError(path + ": cannot convert pixel format " + pix_fmt_name(f->format) +
                            " to BGR");
      }
      int *inv_table, *table, src_full, dst_full, brightness, contrast, saturation;
      sws_getColorspaceDetails(ctx_.get(), &inv_table, &src_full, &table, &dst_full, &brightness,
                               &contrast, &saturation);
      const int* matrix = coefficients_for(f->colorspace);
      if (f->color_range != AVCOL_RANGE_UNSPECIFIED) src_full = f->color_range == AVCOL_RANGE_JPEG;
      // As vf_scale: out matrix follows the in matrix when one is given ("auto" is one).
      sws_setColorspaceDetails(ctx_.get(), matrix, src_full, matrix, dst_full, brightness, contrast,
                               saturation);
      w_ = f->width;
      h_ = f->height;
      fmt_ = f->format;
      cs_ = f->colorspace;
      range_ = f->color_range;
    }
    if (!has_padding(out, f->height, f->width)) out = allocate_bgr_frame(f->height, f->width);
    // swscale's x86 yuv2rgb converts 8 pixels at a time and, when the row stride has no
    // room for the rounded-up width, leaves the last columns to a different code path. The
    // CLI's frames have 64-byte-aligned strides, so for widths that are not a multiple of
    // 8 convert into such a buffer and copy, to get the CLI's exact pixels.
    const bool direct = f->width % 8 == 0;
    cv::Mat& target = direct ? out : scratch_;
    if (!direct) {
      const int stride = (f->width * 3 + 8 * 3 + 63) / 64 * 64;
      if (scratch_.rows != f->height + 1 || static_cast<int>(scratch_.step[0]) != stride)
        scratch_ = cv::Mat(f->height + 1, stride / 3, CV_8UC3);
    }
    uint8_t* dst[4] = {target.data, nullptr, nullptr, nullptr};
    int dst_stride[4] = {static_cast<int>(target.step[0]), 0, 0, 0};
    int rows = sws_scale(ctx_.get(), f->data, f->linesize, 0, f->height, dst, dst_stride);
    if (rows != f->height) return RuntimeError(path + ": colour conversion failed");
    if (!direct) scratch_(cv::Rect(0, 0, f->width, f->height)).copyTo(out);
    return Status::Ok();
  }

 private:
  av::SwsPtr ctx_;
  cv::Mat scratch_;  // aligned-stride target for widths that are not a multiple of 8
  int w_ = 0, h_ = 0, fmt_ = -1;
  AVColorSpace cs_ = AVCOL_SPC_UNSPECIFIED;
  AVColorRange range_ = AVCOL_RANGE_UNSPECIFIED;
};

}  // namespace

cv::Mat allocate_bgr_frame(int rows, int cols) {
  const size_t row_bytes = static_cast<size_t>(cols) * 3;
  const int spare_rows = static_cast<int>((kWritePadding + row_bytes - 1) / row_bytes);
  cv::Mat storage(rows + spare_rows, cols, CV_8UC3);
  return storage.rowRange(0, rows);
}

// Demuxer + decoder of one video stream; yields decoded AVFrames in presentation order.
struct VideoReader::Impl {
  std::string path;
  VideoInfo info;
  av::FormatInputPtr fmt;
  av::CodecCtxPtr dec;
  av::PacketPtr pkt;
  av::FramePtr frame;
  BgrConverter converter;
  int stream_index = -1;
  bool input_done = false;  // demuxer exhausted, decoder flushed
  bool finished = false;    // decoder returned EOF
  int64_t frames_out = 0;

  Status open(const std::string& p, const DecodeOptions& opts, bool open_decoder) {
    av::quiet_logs();
    path = p;
    AVFormatContext* raw = nullptr;
    int rc = avformat_open_input(&raw, path.c_str(), nullptr, nullptr);
    if (rc < 0) {
      if (rc == AVERROR(ENOENT)) return BadInput(path + ": video file not found");
      return BadInput(path + ": cannot open video: " + av::err_str(rc));
    }
    fmt.reset(raw);
    rc = avformat_find_stream_info(raw, nullptr);
    if (rc < 0) return BadInput(path + ": cannot read stream info: " + av::err_str(rc));
    const AVCodec* codec = nullptr;
    stream_index = av_find_best_stream(raw, AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
    if (stream_index < 0 || !codec) return BadInput(path + ": no decodable video stream");
    AVStream* st = raw->streams[stream_index];
    const AVCodecParameters* par = st->codecpar;
    if (par->width <= 0 || par->height <= 0)
      return BadInput(path + ": video stream has no frame size (corrupt file?)");
    info.width = par->width;
    info.height = par->height;
    AVRational r = st->avg_frame_rate.num > 0 ? st->avg_frame_rate : st->r_frame_rate;
    if (r.num <= 0 || r.den <= 0) r = AVRational{25, 1};
    info.fps_num = r.num;
    info.fps_den = r.den;
    info.fps = av_q2d(r);
    info.frame_count = st->nb_frames > 0 ? st->nb_frames : -1;
    if (st->duration > 0)
      info.duration_s = st->duration * av_q2d(st->time_base);
    else if (raw->duration > 0)
      info.duration_s = raw->duration / double(AV_TIME_BASE);
    info.codec = avcodec_get_name(par->codec_id);
    if (!open_decoder) return Status::Ok();

    dec.reset(avcodec_alloc_context3(codec));
    if (!dec) return RuntimeError(path + ": out of memory");
    rc = avcodec_parameters_to_context(dec.get(), par);
    if (rc < 0) return BadInput(path + ": bad codec parameters: " + av::err_str(rc));
    dec->thread_count = av::thread_count(opts.threads);
    dec->thread_type = FF_THREAD_FRAME | FF_THREAD_SLICE;
    dec->pkt_timebase = st->time_base;
    rc = avcodec_open2(dec.get(), codec, nullptr);
    if (rc < 0) return BadInput(path + ": cannot open decoder: " + av::err_str(rc));
    pkt.reset(av_packet_alloc());
    frame.reset(av_frame_alloc());
    if (!pkt || !frame) return RuntimeError(path + ": out of memory");
    return Status::Ok();
  }

  // Next decoded frame (owned by `frame`, valid until the next call), or nullptr at end.
  Result<AVFrame*> next_av_frame() {
    while (!finished) {
      int rc = avcodec_receive_frame(dec.get(), frame.get());
      if (rc == 0) {
        ++frames_out;
        return frame.get();
      }
      if (rc == AVERROR_EOF) {
        finished = true;
        break;
      }
      if (rc != AVERROR(EAGAIN))
        return BadInput(path + ": decoding failed at frame " + std::to_string(frames_out) + ": " +
                        av::err_str(rc));
      if (input_done) {
        finished = true;  // decoder wants input but there is none: treat as end
        break;
      }
      // Feed the decoder one packet of our stream (or the flush packet at the end).
      for (;;) {
        rc = av_read_frame(fmt.get(), pkt.get());
        if (rc == AVERROR_EOF) {
          avcodec_send_packet(dec.get(), nullptr);
          input_done = true;
          break;
        }
        if (rc < 0)
          return BadInput(path + ": read error after frame " + std::to_string(frames_out) + ": " +
                          av::err_str(rc));
        if (pkt->stream_index != stream_index) {
          av_packet_unref(pkt.get());
          continue;
        }
        rc = avcodec_send_packet(dec.get(), pkt.get());
        av_packet_unref(pkt.get());
        if (rc < 0 && rc != AVERROR(EAGAIN))
          return BadInput(path + ": corrupt video data near frame " + std::to_string(frames_out) +
                          ": " + av::err_str(rc));
        break;
      }
    }
    return static_cast<AVFrame*>(nullptr);
  }

  // After the last frame: a container that promised more frames than it held is truncated.
  Status check_complete() const {
    if (frames_out == 0) return BadInput(path + ": video has no frames");
    if (info.frame_count > 0 && frames_out < info.frame_count)
      return BadInput(path + ": truncated or corrupt: decoded " + std::to_string(frames_out) +
                      " of " + std::to_string(info.frame_count) + " frames");
    return Status::Ok();
  }
};

Result<VideoInfo> probe_video(const std::string& path) {
  VideoReader::Impl impl;
  TR_RETURN_IF_ERROR(impl.open(path, {}, /*open_decoder=*/false));
  return impl.info;
}

VideoReader::VideoReader(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
VideoReader::~VideoReader() = default;

Result<std::unique_ptr<VideoReader>> VideoReader::open(const std::string& path,
                                                       const DecodeOptions& opts) {
  auto impl = std::make_unique<Impl>();
  TR_RETURN_IF_ERROR(impl->open(path, opts, /*open_decoder=*/true));
  return std::unique_ptr<VideoReader>(new VideoReader(std::move(impl)));
}

const VideoInfo& VideoReader::info() const { return impl_->info; }
int64_t VideoReader::frames_read() const { return impl_->frames_out; }

Result<bool> VideoReader::next_frame(cv::Mat& out) {
  TR_ASSIGN_OR_RETURN(AVFrame * f, impl_->next_av_frame());
  if (!f) {
    TR_RETURN_IF_ERROR(impl_->check_complete());
    return false;
  }
  Status s = impl_->converter.convert(f, out, impl_->path);
  av_frame_unref(f);
  TR_RETURN_IF_ERROR(s);
  return true;
}

namespace {

// Colour conversion workers: the decoding thread hands over references to decoded frames;
// each worker converts into its destination Mat. The queue is bounded so that only a few
// YUV frames are alive at once.
class ConversionPool {
 public:
  ConversionPool(int workers, std::string path) : path_(std::move(path)) {
    for (int i = 0; i < workers; ++i) threads_.emplace_back([this] { run(); });
  }
  ~ConversionPool() { (void)close(); }

  // Takes ownership of `f`; `dst` shares its pixel buffer with the caller's Mat.
  void push(AVFrame* f, cv::Mat dst) {
    std::unique_lock lock(mu_);
    space_.wait(lock, [&] { return jobs_.size() < kMaxQueued; });
    jobs_.push_back(Job{av::FramePtr(f), std::move(dst)});
    ready_.notify_one();
  }

  // Waits for all jobs; returns the first conversion error.
  Status close() {
    {
      std::lock_guard lock(mu_);
      closing_ = true;
    }
    ready_.notify_all();
    for (auto& t : threads_) t.join();
    threads_.clear();
    return status_;
  }

 private:
  static constexpr size_t kMaxQueued = 8;
  struct Job {
    av::FramePtr frame;
    cv::Mat dst;
  };

  void run() {
    BgrConverter converter;
    for (;;) {
      Job job;
      {
        std::unique_lock lock(mu_);
        ready_.wait(lock, [&] { return closing_ || !jobs_.empty(); });
        if (jobs_.empty()) return;
        job = std::move(jobs_.front());
        jobs_.pop_front();
      }
      space_.notify_one();
      Status s = converter.convert(job.frame.get(), job.dst, path_);
      if (!s.ok()) {
        std::lock_guard lock(mu_);
        if (status_.ok()) status_ = s;
      }
    }
  }

  std::string path_;
  std::mutex mu_;
  std::condition_variable ready_, space_;
  std::deque<Job> jobs_;
  bool closing_ = false;
  Status status_;
  std::vector<std::thread> threads_;
};

}  // namespace

namespace {

// All frames of a video in one allocation, each followed by spare rows (see
// allocate_bgr_frame). Filling gigabytes of fresh memory costs about as much CPU as
// decoding (page faults, zeroing), so a helper thread pre-faults the region ahead of the
// decoder; the ffmpeg decoder alone leaves part of the cores idle for it to use.
class FrameArena {
 public:
  ~FrameArena() { stop(); }

  void allocate(int64_t count, int rows, int cols) {
    const size_t row_bytes = static_cast<size_t>(cols) * 3;
    const int slot_rows = rows + static_cast<int>((kWritePadding + row_bytes - 1) / row_bytes);
    if (count * slot_rows > std::numeric_limits<int>::max()) return;
    try {
      storage_ = cv::Mat(static_cast<int>(count * slot_rows), cols, CV_8UC3);
    } catch (const cv::Exception&) {
      return;  // out of memory: frames are allocated one by one (and will fail there)
    }
    count_ = count;
    rows_ = rows;
    cols_ = cols;
    slot_rows_ = slot_rows;
    prefaulter_ = std::thread([this] { prefault(); });
  }

  // Frame k's storage: a slot of the arena, or a separate buffer if it does not fit.
  cv::Mat frame(int64_t k, int rows, int cols) {
    if (k >= count_ || rows != rows_ || cols != cols_) return allocate_bgr_frame(rows, cols);
    next_frame_ = k + 1;
    const int first = static_cast<int>(k * slot_rows_);
    return storage_.rowRange(first, first + rows);
  }

  void stop() {
    stop_ = true;
    if (prefaulter_.joinable()) prefaulter_.join();
  }

 private:
  void prefault() {
    const size_t page = 4096, chunk = size_t(8) << 20;
    uintptr_t begin = (reinterpret_cast<uintptr_t>(storage_.data) + page - 1) & ~(page - 1);
    uintptr_t end =
        (reinterpret_cast<uintptr_t>(storage_.data) + storage_.total() * 3) & ~(page - 1);
    const size_t slot_bytes = static_cast<size_t>(slot_rows_) * cols_ * 3;
    const uintptr_t base = reinterpret_cast<uintptr_t>(storage_.data);
    for (uintptr_t p = begin; p < end && !stop_; p += chunk) {
      // Stay at most kAhead frames ahead of the decoder, so that a header that overstates
      // the frame count does not make us fault in memory no frame will use.
      while (!stop_ && p - base > (next_frame_.load() + kAhead) * slot_bytes)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      size_t len = std::min<uintptr_t>(chunk, end - p);
      if (madvise(reinterpret_cast<void*>(p), len, MADV_POPULATE_WRITE) != 0) {
        // Older kernels: write-fault each page with an atomic add of 0, which cannot lose
        // a byte that a conversion worker is writing at the same time.
        for (uintptr_t q = p; q < p + len; q += page)
          __atomic_fetch_add(reinterpret_cast<uint8_t*>(q), 0, __ATOMIC_RELAXED);
      }
    }
  }

  cv::Mat storage_;
  int64_t count_ = 0;
  int rows_ = 0, cols_ = 0, slot_rows_ = 0;
  static constexpr int64_t kAhead = 48;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> next_frame_{0};
  std::thread prefaulter_;
};

}  // namespace

Result<std::vector<cv::Mat>> decode_all_frames(const std::string& path, const DecodeOptions& opts) {
  VideoReader::Impl impl;
  TR_RETURN_IF_ERROR(impl.open(path, opts, /*open_decoder=*/true));
  std::vector<cv::Mat> frames;
  FrameArena arena;
  if (impl.info.frame_count > 0) {
    frames.reserve(impl.info.frame_count);
    arena.allocate(impl.info.frame_count, impl.info.height, impl.info.width);
  }
  ConversionPool pool(av::thread_count(opts.threads), path);
  Status decode_status;
  for (;;) {
    if (interrupted()) {
      decode_status = Interrupted(path + ": decoding interrupted");
      break;
    }
    auto f = impl.next_av_frame();
    if (!f.ok()) {
      decode_status = f.status();
      break;
    }
    if (!*f) break;
    AVFrame* ref = av_frame_clone(*f);
    av_frame_unref(*f);
    if (!ref) {
      decode_status = RuntimeError(path + ": out of memory");
      break;
    }
    frames.push_back(arena.frame(static_cast<int64_t>(frames.size()), ref->height, ref->width));
    pool.push(ref, frames.back());
  }
  Status convert_status = pool.close();
  arena.stop();
  TR_RETURN_IF_ERROR(decode_status);
  TR_RETURN_IF_ERROR(convert_status);
  TR_RETURN_IF_ERROR(impl.check_complete());
  return frames;
}

}  // namespace tr::io

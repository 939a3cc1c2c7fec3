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

#include "common/checked_math.h"
#include "common/interrupt.h"
#include "io/av_util.h"
#include "io/decoder_internal.h"

namespace tr::io {

bool has_padding(const cv::Mat& m, int rows, int cols) {
  if (m.rows != rows || m.cols != cols || m.type() != CV_8UC3 || !m.isContinuous() || rows <= 0)
    return false;
  // Not m.dataend: for a row-range view OpenCV leaves it at the parent's end.
  const uchar* image_end = m.ptr(rows - 1) + static_cast<size_t>(cols) * 3;
  return m.datalimit >= image_end && static_cast<size_t>(m.datalimit - image_end) >= kWritePadding;
}

cv::Mat allocate_bgr_frame(int rows, int cols) {
  const size_t row_bytes = static_cast<size_t>(cols) * 3;
  const int spare_rows = static_cast<int>((kWritePadding + row_bytes - 1) / row_bytes);
  cv::Mat storage(rows + spare_rows, cols, CV_8UC3);
  return storage.rowRange(0, rows);
}

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
double VideoReader::frame_time_s() const { return impl_->frame_time_s; }

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
    // count is the container's nb_frames claim: a hostile header can make the product
    // overflow, so it is checked (not wrapped) before comparing.
    const auto total_rows = checked_mul(count, int64_t{slot_rows}, "frame arena rows");
    if (!total_rows.ok() || *total_rows > std::numeric_limits<int>::max()) return;
    try {
      storage_ = cv::Mat(static_cast<int>(*total_rows), cols, CV_8UC3);
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
    // Bounded: nb_frames is a claim from the file, and reserve() would throw on a huge one;
    // past this the vector grows as frames really arrive.
    frames.reserve(static_cast<size_t>(std::min<int64_t>(impl.info.frame_count, 1 << 16)));
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

// Image-sequence output: DIR/frame_%06d.{png,jpg}, written into a temporary sibling
// directory by a few encoder threads (PNG/JPEG compression is the slow part) and renamed
// to DIR by finish(). PNG through libpng (io/png_file.cc says why); JPEG through
// libjpeg-turbo (io/jpeg_file.h says why).
#include <unistd.h>

#include <condition_variable>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <mutex>
#include <thread>
#include <vector>

#include "common/files.h"
#include "io/av_util.h"
#include "io/frame_writer.h"
#include "io/jpeg_file.h"
#include "io/png_file.h"

namespace tr::io {
namespace {

namespace fs = std::filesystem;

std::string strip_trailing_slashes(std::string p) {
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p;
}

class ImageSequenceWriter final : public FrameWriter {
 public:
  ~ImageSequenceWriter() override { abort(); }

  Status open(const std::string& dir, const ImageSequenceOptions& o) {
    dir_ = strip_trailing_slashes(dir);
    opts_ = o;
    ext_ = o.format == ImageFormat::kPng ? ".png" : ".jpg";
    std::error_code ec;
    if (fs::exists(dir_, ec)) {
      if (!fs::is_directory(dir_, ec)) return BadInput(dir_ + ": exists and is not a directory");
      if (!fs::is_empty(dir_, ec))
        return BadInput(dir_ + ": directory exists and is not empty (refusing to overwrite)");
    }
    tmp_dir_ = temp_path_for(dir_);
    fs::remove_all(tmp_dir_, ec);
    if (!fs::create_directories(tmp_dir_, ec) || ec)
      return RuntimeError(tmp_dir_ + ": cannot create directory: " + ec.message());
    created_ = true;
    return Status::Ok();
  }

  Status write_frame(const cv::Mat& bgr) override {
    if (closed_) return RuntimeError(dir_ + ": write after finish/abort");
    // The encoder threads start with the first frame, from the thread that pushes frames,
    // so they inherit its scheduling priority (the render pipeline lowers its writer's).
    if (threads_.empty()) {
      const int workers = av::thread_count(0);
      for (int i = 0; i < workers; ++i) threads_.emplace_back([this] { run(); });
    }
    if (bgr.empty() || bgr.type() != CV_8UC3)
      return BadInput(dir_ + ": frame " + std::to_string(frames_) + " is not 8-bit BGR");
    {
      std::lock_guard lock(mu_);
      if (!status_.ok()) return status_;
    }
    char name[32];
    std::snprintf(name, sizeof name, "frame_%06lld", static_cast<long long>(frames_));
    // The caller may reuse its buffer as soon as we return: keep a copy, in a buffer an
    // encoder thread has finished with when there is one (at most kMaxQueued + threads
    // buffers ever exist), so a long sequence allocates no frame-sized memory per frame.
    Job job{tmp_dir_ + "/" + name + ext_, cv::Mat()};
    {
      std::lock_guard lock(mu_);
      if (!free_.empty()) {
        job.image = std::move(free_.back());
        free_.pop_back();
      }
    }
    bgr.copyTo(job.image);  // reallocates only if the size differs
    {
      std::unique_lock lock(mu_);
      space_.wait(lock, [&] { return jobs_.size() < kMaxQueued; });
      jobs_.push_back(std::move(job));
    }
    ready_.notify_one();
    ++frames_;
    return Status::Ok();
  }

  Status finish() override {
    if (closed_) return RuntimeError(dir_ + ": finish called twice or after abort");
    Status s = stop_workers();
    if (s.ok() && frames_ == 0) s = BadInput(dir_ + ": no frames were written");
    if (s.ok()) {
      std::error_code ec;
      if (fs::exists(dir_, ec)) fs::remove(dir_, ec);  // only an empty dir (checked at open)
      fs::rename(tmp_dir_, dir_, ec);
      if (ec)
        s = RuntimeError(dir_ +
                         ": cannot rename the finished directory into place: " + ec.message());
    }
    if (!s.ok()) {
      abort();
      return s;
    }
    created_ = false;
    closed_ = true;
    return Status::Ok();
  }

  void abort() override {
    if (closed_) return;
    closed_ = true;
    (void)stop_workers();
    if (created_) {
      std::error_code ec;
      fs::remove_all(tmp_dir_, ec);
      created_ = false;
    }
  }

  int64_t frames_written() const override { return frames_; }

 private:
  static constexpr size_t kMaxQueued = 8;
  struct Job {
    std::string path;
    cv::Mat image;
  };

  void run() {
    for (;;) {
      Job job;
      {
        std::unique_lock lock(mu_);
        ready_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
        if (jobs_.empty()) return;
        job = std::move(jobs_.front());
        jobs_.pop_front();
      }
      space_.notify_one();
      Status written = opts_.format == ImageFormat::kJpg
                           ? write_jpeg_bgr(job.path, job.image, opts_.jpeg_quality)
                           : write_png_bgr(job.path, job.image, opts_.png_compression);
      std::lock_guard lock(mu_);
      if (!written.ok() && status_.ok()) status_ = written;
      free_.push_back(std::move(job.image));
    }
  }

  Status stop_workers() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    ready_.notify_all();
    for (auto& t : threads_) t.join();
    threads_.clear();
    return status_;
  }

  std::string dir_, tmp_dir_, ext_;
  ImageSequenceOptions opts_;
  bool created_ = false, closed_ = false;
  int64_t frames_ = 0;
  std::mutex mu_;
  std::condition_variable ready_, space_;
  std::deque<Job> jobs_;
  std::vector<cv::Mat> free_;  // encoded frames' buffers, reused by write_frame
  bool stopping_ = false;
  Status status_;
  std::vector<std::thread> threads_;
};

}  // namespace

Result<std::unique_ptr<FrameWriter>> create_image_sequence_writer(
    const std::string& dir, const ImageSequenceOptions& opts) {
  auto w = std::make_unique<ImageSequenceWriter>();
  Status s = w->open(dir, opts);
  if (!s.ok()) {
    w->abort();
    return s.error();
  }
  return std::unique_ptr<FrameWriter>(std::move(w));
}

Result<std::unique_ptr<FrameWriter>> create_frame_writer(const std::string& out_path,
                                                         const Mp4Options& mp4,
                                                         const std::string& image_ext) {
  if (out_path.empty()) return BadInput("no output path given");
  if (out_path.back() == '/' || is_directory(out_path)) {
    ImageSequenceOptions o;
    if (image_ext == "jpg" || image_ext == "jpeg")
      o.format = ImageFormat::kJpg;
    else if (image_ext != "png")
      return BadInput("image format '" + image_ext + "' is not supported (png or jpg)");
    return create_image_sequence_writer(out_path, o);
  }
  return create_mp4_writer(out_path, mp4);
}

}  // namespace tr::io

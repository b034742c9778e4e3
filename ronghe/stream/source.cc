#include "ronghe/stream/source.h"

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/imgutils.h>
#include <libswscale/swscale.h>
}

#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "ronghe/data/idx.h"

namespace ronghe::stream {

namespace fs = std::filesystem;

namespace {

std::string AvError(int err) {
  char buf[AV_ERROR_MAX_STRING_SIZE] = {0};
  av_strerror(err, buf, sizeof buf);
  return buf;
}

uint64_t Mix(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// One open input with its video decoder; frames come out as GRAY8 at the native size.
class Decoder {
 public:
  ~Decoder() {
    av_frame_free(&frame_);
    av_packet_free(&packet_);
    avcodec_free_context(&codec_);
    avformat_close_input(&format_);
    sws_freeContext(sws_);
  }

  Status Open(const std::string& url, double timeout_s, bool live) {
    url_ = url;
    timeout_s_ = timeout_s;
    format_ = avformat_alloc_context();
    if (!format_) return Internal(url + ": out of memory");
    // Every blocking call of libavformat polls this; a stream that stops delivering for longer
    // than the timeout ends with an error instead of hanging the camera's thread.
    format_->interrupt_callback.callback = [](void* self) -> int {
      auto* d = static_cast<Decoder*>(self);
      return std::chrono::steady_clock::now() > d->deadline_ ? 1 : 0;
    };
    format_->interrupt_callback.opaque = this;
    Arm();
    AVDictionary* opts = nullptr;
    if (live) av_dict_set(&opts, "rtsp_transport", "tcp", 0);
    int rc = avformat_open_input(&format_, url.c_str(), nullptr, &opts);
    av_dict_free(&opts);
    if (rc < 0) {
      format_ = nullptr;  // freed by avformat_open_input on failure
      return Unavailable(url + ": cannot open: " + AvError(rc));
    }
    Arm();
    rc = avformat_find_stream_info(format_, nullptr);
    if (rc < 0) return DataLoss(url + ": unreadable stream information: " + AvError(rc));
    const AVCodec* codec = nullptr;
    stream_ = av_find_best_stream(format_, AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
    if (stream_ < 0 || !codec) return DataLoss(url + ": no decodable video stream");
    codec_ = avcodec_alloc_context3(codec);
    if (!codec_) return Internal(url + ": out of memory");
    rc = avcodec_parameters_to_context(codec_, format_->streams[stream_]->codecpar);
    if (rc >= 0) rc = avcodec_open2(codec_, codec, nullptr);
    if (rc < 0) return DataLoss(url + ": cannot open the decoder: " + AvError(rc));
    packet_ = av_packet_alloc();
    frame_ = av_frame_alloc();
    if (!packet_ || !frame_) return Internal(url + ": out of memory");
    AVRational r = format_->streams[stream_]->avg_frame_rate;
    if (r.num <= 0 || r.den <= 0) r = format_->streams[stream_]->r_frame_rate;
    native_fps_ = r.num > 0 && r.den > 0 ? av_q2d(r) : 25.0;
    return Status::OK();
  }

  // The next frame as grey; false at the end of the input.
  Result<bool> Next(RawFrame* out) {
    while (true) {
      Arm();
      int rc = avcodec_receive_frame(codec_, frame_);
      if (rc == 0) {
        RETURN_IF_ERROR(ToGrey(out));
        av_frame_unref(frame_);
        return true;
      }
      if (rc == AVERROR_EOF) return false;
      if (rc != AVERROR(EAGAIN)) return DataLoss(url_ + ": decoding failed: " + AvError(rc));
      if (flushed_) return false;
      rc = av_read_frame(format_, packet_);
      if (rc == AVERROR_EOF) {
        flushed_ = true;
        avcodec_send_packet(codec_, nullptr);  // drain the decoder's delayed frames
        continue;
      }
      if (rc < 0) return Unavailable(url_ + ": reading failed: " + AvError(rc));
      if (packet_->stream_index == stream_) {
        rc = avcodec_send_packet(codec_, packet_);
        // A damaged packet costs its frame, not the camera; a run of them is a broken input.
        if (rc < 0 && rc != AVERROR(EAGAIN)) {
          if (++bad_packets_ > 50) {
            av_packet_unref(packet_);
            return DataLoss(url_ + ": " + std::to_string(bad_packets_) +
                            " packets in a row do not decode: " + AvError(rc));
          }
        } else {
          bad_packets_ = 0;
        }
      }
      av_packet_unref(packet_);
    }
  }

  Status Rewind() {
    int rc = av_seek_frame(format_, stream_, 0, AVSEEK_FLAG_BACKWARD);
    if (rc < 0) return Unavailable(url_ + ": cannot seek to the start: " + AvError(rc));
    avcodec_flush_buffers(codec_);
    flushed_ = false;
    return Status::OK();
  }

  double native_fps() const { return native_fps_; }

 private:
  void Arm() {
    deadline_ = std::chrono::steady_clock::now() +
                std::chrono::milliseconds(static_cast<int64_t>(timeout_s_ * 1000));
  }

  Status ToGrey(RawFrame* out) {
    const int w = frame_->width, h = frame_->height;
    if (w <= 0 || h <= 0 || w > 16384 || h > 16384) {
      return DataLoss(url_ + ": a frame of " + std::to_string(w) + "x" + std::to_string(h));
    }
    sws_ = sws_getCachedContext(sws_, w, h, static_cast<AVPixelFormat>(frame_->format), w, h,
                                AV_PIX_FMT_GRAY8, SWS_BILINEAR, nullptr, nullptr, nullptr);
    if (!sws_) return DataLoss(url_ + ": no conversion from its pixel format to grey");
    out->width = w;
    out->height = h;
    out->grey.resize(static_cast<size_t>(w) * static_cast<size_t>(h));
    uint8_t* dst[4] = {out->grey.data(), nullptr, nullptr, nullptr};
    int dst_stride[4] = {w, 0, 0, 0};
    sws_scale(sws_, frame_->data, frame_->linesize, 0, h, dst, dst_stride);
    const AVRational tb = format_->streams[stream_]->time_base;
    const int64_t pts = frame_->best_effort_timestamp;
    out->frame_time = pts == AV_NOPTS_VALUE ? 0 : static_cast<double>(pts) * av_q2d(tb);
    return Status::OK();
  }

  std::string url_;
  double timeout_s_ = 5;
  std::chrono::steady_clock::time_point deadline_;
  AVFormatContext* format_ = nullptr;
  AVCodecContext* codec_ = nullptr;
  AVPacket* packet_ = nullptr;
  AVFrame* frame_ = nullptr;
  SwsContext* sws_ = nullptr;
  int stream_ = -1;
  int bad_packets_ = 0;
  bool flushed_ = false;
  double native_fps_ = 25;
};

class Video final : public FrameSource {
 public:
  Video(VideoOptions o, std::unique_ptr<Decoder> d) : o_(std::move(o)), d_(std::move(d)) {}
  Result<bool> Read(RawFrame* out) override {
    for (int attempt = 0; attempt < 2; ++attempt) {
      ASSIGN_OR_RETURN(bool got, d_->Next(out));
      if (got) {
        out->seq = seq_++;
        out->truth = -1;
        // Replayed files run on the replay clock: frame_time grows across loops.
        if (!o_.live) out->frame_time = static_cast<double>(out->seq) / fps();
        return true;
      }
      if (o_.live || !o_.loop || seq_ == 0) return false;
      RETURN_IF_ERROR(d_->Rewind());
    }
    return false;
  }
  bool live() const override { return o_.live; }
  double fps() const override { return o_.fps > 0 ? o_.fps : d_->native_fps(); }

 private:
  VideoOptions o_;
  std::unique_ptr<Decoder> d_;
  int64_t seq_ = 0;
};

class Replay final : public FrameSource {
 public:
  Replay(std::shared_ptr<const ImageSet> set, ReplayOptions o) : set_(std::move(set)), o_(o) {
    for (int64_t i = 0; i < set_->count; ++i) {
      const int64_t label = set_->labels.empty() ? -1 : set_->labels[static_cast<size_t>(i)];
      if (label >= 0 && label == o_.novel_class) {
        novel_.push_back(i);
      } else if (o_.classes.empty() ||
                 std::find(o_.classes.begin(), o_.classes.end(), label) != o_.classes.end()) {
        known_.push_back(i);
      }
    }
    Shuffle(&known_, 1);
    Shuffle(&novel_, 2);
  }
  Result<bool> Read(RawFrame* out) override {
    if (o_.limit > 0 && seq_ >= o_.limit) return false;
    if (known_.empty() && novel_.empty()) return false;
    const double t = static_cast<double>(seq_) / o_.fps;
    const bool novel =
        !novel_.empty() &&
        (known_.empty() ||
         (o_.novel_class >= 0 && t >= o_.novel_after_s &&
          static_cast<double>(Mix(o_.seed * 31 + static_cast<uint64_t>(seq_)) >> 11) /
                  9007199254740992.0 <
              o_.novel_fraction));
    const int64_t i = novel ? novel_[static_cast<size_t>(next_novel_++ % novel_.size())]
                            : known_[static_cast<size_t>(next_known_++ % known_.size())];
    out->height = static_cast<int>(set_->height);
    out->width = static_cast<int>(set_->width);
    const size_t n = static_cast<size_t>(set_->height * set_->width);
    out->grey.resize(n);
    std::memcpy(out->grey.data(), set_->image(i), n);
    out->truth = set_->labels.empty() ? -1 : set_->labels[static_cast<size_t>(i)];
    out->frame_time = t;
    out->seq = seq_++;
    return true;
  }
  double fps() const override { return o_.fps; }

 private:
  void Shuffle(std::vector<int64_t>* v, uint64_t salt) {
    for (size_t i = v->size(); i > 1; --i) {
      const size_t j = static_cast<size_t>(Mix(o_.seed * 1000003 + salt * 7919 + i) % i);
      std::swap((*v)[i - 1], (*v)[j]);
    }
  }
  std::shared_ptr<const ImageSet> set_;
  ReplayOptions o_;
  std::vector<int64_t> known_, novel_;
  int64_t seq_ = 0;
  uint64_t next_known_ = 0, next_novel_ = 0;
};

}  // namespace

Status DecodeImageFile(const std::string& path, RawFrame* out) {
  Decoder d;
  RETURN_IF_ERROR(d.Open(path, 10, false));
  ASSIGN_OR_RETURN(bool got, d.Next(out));
  if (!got) return DataLoss(path + ": no image in the file");
  return Status::OK();
}

Result<std::shared_ptr<ImageSet>> LoadIdxImages(const std::string& images_path,
                                                const std::string& labels_path) {
  ASSIGN_OR_RETURN(at::Tensor x, data::ReadIdx(images_path));
  if (x.dim() != 3) return DataLoss(images_path + ": not a set of 2-D images");
  auto set = std::make_shared<ImageSet>();
  set->count = x.size(0);
  set->height = x.size(1);
  set->width = x.size(2);
  x = x.contiguous();
  set->pixels.assign(x.data_ptr<uint8_t>(), x.data_ptr<uint8_t>() + x.numel());
  if (!labels_path.empty()) {
    ASSIGN_OR_RETURN(at::Tensor y, data::ReadIdx(labels_path));
    if (y.dim() != 1 || y.size(0) != set->count) {
      return DataLoss(labels_path + ": " + std::to_string(y.numel()) + " labels for " +
                      std::to_string(set->count) + " images in " + images_path);
    }
    y = y.to(at::kLong).contiguous();
    set->labels.assign(y.data_ptr<int64_t>(), y.data_ptr<int64_t>() + y.numel());
  }
  return set;
}

Result<std::shared_ptr<ImageSet>> LoadTileSheet(const std::string& png, int tile,
                                                int rows_per_label) {
  if (tile <= 0) return InvalidArgument(png + ": tile must be > 0");
  RawFrame sheet;
  RETURN_IF_ERROR(DecodeImageFile(png, &sheet));
  if (sheet.width % tile != 0 || sheet.height % tile != 0) {
    return DataLoss(png + ": " + std::to_string(sheet.width) + "x" + std::to_string(sheet.height) +
                    " is not a whole number of " + std::to_string(tile) + "-pixel tiles");
  }
  auto set = std::make_shared<ImageSet>();
  const int cols = sheet.width / tile, rows = sheet.height / tile;
  set->count = static_cast<int64_t>(cols) * rows;
  set->height = set->width = tile;
  set->pixels.resize(static_cast<size_t>(set->count) * static_cast<size_t>(tile * tile));
  for (int r = 0; r < rows; ++r) {
    for (int c = 0; c < cols; ++c) {
      uint8_t* dst = set->pixels.data() + (static_cast<size_t>(r) * cols + c) * tile * tile;
      for (int y = 0; y < tile; ++y) {
        std::memcpy(dst + y * tile,
                    sheet.grey.data() + static_cast<size_t>(r * tile + y) * sheet.width + c * tile,
                    static_cast<size_t>(tile));
      }
      if (rows_per_label > 0) set->labels.push_back(r / rows_per_label);
    }
  }
  if (rows_per_label > 0) {
    for (int64_t l = 0; l <= (rows - 1) / rows_per_label; ++l) {
      set->class_names.push_back(std::to_string(l));
    }
  }
  return set;
}

Result<std::shared_ptr<ImageSet>> LoadImageFolder(const std::string& dir) {
  std::vector<fs::path> files;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::end(it);
       it.increment(ec)) {
    const std::string ext = it->path().extension().string();
    if (it->is_regular_file() && (ext == ".png" || ext == ".pgm" || ext == ".PNG")) {
      files.push_back(it->path());
    }
  }
  if (ec) return NotFound(dir + ": " + ec.message());
  if (files.empty()) return NotFound(dir + ": no .png or .pgm images");
  std::sort(files.begin(), files.end());
  auto set = std::make_shared<ImageSet>();
  bool labelled = true;
  for (const auto& f : files) labelled = labelled && f.parent_path() != fs::path(dir);
  for (const auto& f : files) {
    RawFrame img;
    RETURN_IF_ERROR(DecodeImageFile(f.string(), &img));
    if (set->count == 0) {
      set->height = img.height;
      set->width = img.width;
    } else if (img.height != set->height || img.width != set->width) {
      return DataLoss(f.string() + ": " + std::to_string(img.width) + "x" +
                      std::to_string(img.height) + ", the first image is " +
                      std::to_string(set->width) + "x" + std::to_string(set->height));
    }
    set->pixels.insert(set->pixels.end(), img.grey.begin(), img.grey.end());
    if (labelled) {
      const std::string cls = f.parent_path().filename().string();
      auto at = std::find(set->class_names.begin(), set->class_names.end(), cls);
      if (at == set->class_names.end()) {
        set->class_names.push_back(cls);
        at = set->class_names.end() - 1;
      }
      set->labels.push_back(at - set->class_names.begin());
    }
    ++set->count;
  }
  return set;
}

std::unique_ptr<FrameSource> ReplaySource(std::shared_ptr<const ImageSet> set,
                                          const ReplayOptions& options) {
  return std::make_unique<Replay>(std::move(set), options);
}

Result<std::unique_ptr<FrameSource>> OpenVideo(const VideoOptions& options) {
  auto d = std::make_unique<Decoder>();
  RETURN_IF_ERROR(d->Open(options.url, options.open_timeout_s, options.live));
  return std::unique_ptr<FrameSource>(new Video(options, std::move(d)));
}

}  // namespace ronghe::stream

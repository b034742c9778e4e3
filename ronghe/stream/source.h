// Where frames come from: the cameras of a production line. Three kinds, each with a name:
//   video   a video file decoded with FFmpeg's libraries (libavformat/libavcodec/libswscale),
//           replayed at `fps` (default: the file's own rate), looping when asked
//   rtsp    a live stream (rtsp://, http://, ...) read as fast as it delivers
//   images  an image set replayed as a camera at `fps`: an IDX file pair (the MNIST family), a
//           tile sheet (OpenCV's digits.png), or a folder of PNG/PGM files
// Every frame reaches the pipeline as 8-bit grey (what the line's classifier takes); the source's
// own label travels with replayed data-set frames, for the demo's simulated reviewer only.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ronghe/base/status.h"

namespace ronghe::stream {

struct RawFrame {
  int64_t seq = 0;        // per source, from 0
  double frame_time = 0;  // seconds on the source's own clock (media time, replay time)
  int height = 0, width = 0;
  std::vector<uint8_t> grey;  // height x width, row-major (capacity reused frame to frame)
  int64_t truth = -1;         // the data set's label index where the source has one, else -1
};

// A decoded image set in memory, shared by every camera that replays it.
struct ImageSet {
  int64_t count = 0, height = 0, width = 0;
  std::vector<uint8_t> pixels;  // count x height x width
  std::vector<int64_t> labels;  // per image, or empty
  std::vector<std::string> class_names;
  const uint8_t* image(int64_t i) const { return pixels.data() + i * height * width; }
};

// IDX images (+ labels when `labels_path` is given), gzipped or not.
Result<std::shared_ptr<ImageSet>> LoadIdxImages(const std::string& images_path,
                                                const std::string& labels_path);
// A sheet of `tile` x `tile` images, row-major; `rows_per_label` > 0 labels tile row r with
// r / rows_per_label (OpenCV's digits.png: 20-pixel tiles, 5 rows per digit).
Result<std::shared_ptr<ImageSet>> LoadTileSheet(const std::string& png, int tile,
                                                int rows_per_label);
// Every PNG/PGM file under `dir` (sorted); a file in a sub-folder is labelled with its name.
Result<std::shared_ptr<ImageSet>> LoadImageFolder(const std::string& dir);
// One image file (any format FFmpeg decodes) as grey.
Status DecodeImageFile(const std::string& path, RawFrame* out);

class FrameSource {
 public:
  virtual ~FrameSource() = default;
  // The next frame into *out. false: the source ended (a file without loop, a stream that
  // closed). An error names the source and stops it; other sources go on.
  virtual Result<bool> Read(RawFrame* out) = 0;
  // Replayed sources are paced by the pipeline at fps(); live ones deliver at their own pace.
  virtual bool live() const { return false; }
  virtual double fps() const = 0;
};

struct ReplayOptions {
  double fps = 5;
  uint64_t seed = 1;             // the order images are shown in
  std::vector<int64_t> classes;  // labels shown (default: all but `novel_class`)
  int64_t novel_class = -1;      // a label that starts to appear after novel_after_s
  double novel_after_s = 0;
  double novel_fraction = 0.3;  // share of frames of the novel class once it appears
  int64_t limit = 0;            // frames before the camera stops (0 = endless)
};

// An image set replayed as a camera. Time is the replay clock (seq / fps).
std::unique_ptr<FrameSource> ReplaySource(std::shared_ptr<const ImageSet> set,
                                          const ReplayOptions& options);

struct VideoOptions {
  std::string url;    // a file path or a stream URL
  double fps = 0;     // Default: 0 = the file's rate. Files are paced at it; streams are live.
  bool loop = true;   // files: start again at the end
  bool live = false;  // rtsp:// and friends: read as delivered
  double open_timeout_s = 5;  // connecting and waiting for data, live streams
};

// Opens the file or stream (and its first decoder): an unreachable URL, a missing or corrupt
// file is an error here, naming the URL.
Result<std::unique_ptr<FrameSource>> OpenVideo(const VideoOptions& options);

}  // namespace ronghe::stream

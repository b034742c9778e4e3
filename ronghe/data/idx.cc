#include "ronghe/data/idx.h"

#include <torch/torch.h>
#include <zlib.h>

#include <cstring>
#include <memory>

namespace ronghe::data {

namespace {
uint32_t BigEndian(const unsigned char* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}
}  // namespace

Result<at::Tensor> ReadIdx(const std::string& path) {
  // gzread reads plain files transparently too.
  std::unique_ptr<gzFile_s, int (*)(gzFile)> f(gzopen(path.c_str(), "rb"), &gzclose);
  if (!f) return NotFound(path + ": cannot open");
  auto read_exact = [&](void* buf, size_t n) -> bool {
    size_t got = 0;
    while (got < n) {
      int r = gzread(f.get(), static_cast<char*>(buf) + got,
                     static_cast<unsigned>(std::min<size_t>(n - got, 1u << 30)));
      if (r <= 0) return false;
      got += static_cast<size_t>(r);
    }
    return true;
  };
  unsigned char head[4];
  if (!read_exact(head, 4)) return DataLoss(path + ": truncated IDX header");
  if (head[0] != 0 || head[1] != 0) return DataLoss(path + ": not an IDX file (bad magic)");
  if (head[2] != 0x08) {
    return DataLoss(path + ": IDX element type 0x" + std::to_string(head[2]) +
                    " unsupported (uint8 only)");
  }
  int dims = head[3];
  if (dims < 1 || dims > 4)
    return DataLoss(path + ": IDX with " + std::to_string(dims) + " dimensions");
  std::vector<int64_t> shape;
  int64_t total = 1;
  for (int i = 0; i < dims; ++i) {
    unsigned char b[4];
    if (!read_exact(b, 4)) return DataLoss(path + ": truncated IDX header");
    uint32_t d = BigEndian(b);
    if (d == 0 || d > (1u << 28))
      return DataLoss(path + ": implausible IDX dimension " + std::to_string(d));
    shape.push_back(d);
    total *= d;
    if (total > (int64_t(1) << 34)) return DataLoss(path + ": IDX data larger than 16 GiB");
  }
  at::Tensor t = torch::empty(shape, torch::kUInt8);
  if (!read_exact(t.data_ptr<uint8_t>(), static_cast<size_t>(total))) {
    return DataLoss(path + ": truncated: header promises " + std::to_string(total) +
                    " bytes of data");
  }
  char extra;
  if (gzread(f.get(), &extra, 1) > 0) return DataLoss(path + ": trailing bytes after IDX data");
  int err = 0;
  gzerror(f.get(), &err);
  if (err != Z_OK && err != Z_STREAM_END) return DataLoss(path + ": corrupt gzip stream");
  return t;
}

}  // namespace ronghe::data

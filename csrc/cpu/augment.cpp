// Image augmentation: one affine resampling pass per image batch. Rotations,
// zooms and crops are all affine maps from output to source pixel; sampling
// them here instead of through NumPy fancy indexing keeps augmentation from
// dominating training time on small images (digits: 16 ms -> well under 1 ms
// an epoch, see examples/digits.py).
#include <cmath>

#include "fusednn/cpu.h"
#include "threads.h"

namespace fusednn {
namespace cpu {

void affine_warp(float* out, const float* in, const double* mats, std::size_t n, int h, int w, int c,
                 float fill, bool bilinear, bool clamp) {
  const std::size_t image = std::size_t(h) * w * c;
  if (n == 0 || image == 0) return;  // nothing to write (and image is a divisor below)
  parallel_chunks(n * image, [&](std::size_t b, std::size_t e) {
    for (std::size_t img = b / image; img < (e + image - 1) / image && img < n; ++img) {
      const double* m = mats + img * 6;  // sy = m0 gy + m1 gx + m2; sx = m3 gy + m4 gx + m5
      const float* src = in + img * image;
      float* dst = out + img * image;
      auto read = [&](long y, long x, int ch) -> double {
        if (y < 0 || y >= h || x < 0 || x >= w) return fill;
        return src[(std::size_t(y) * w + std::size_t(x)) * c + ch];
      };
      for (int i = 0; i < h; ++i)
        for (int j = 0; j < w; ++j) {
          double sy = m[0] * i + m[1] * j + m[2];
          double sx = m[3] * i + m[4] * j + m[5];
          if (clamp) {
            sy = sy < 0 ? 0 : (sy > h - 1 ? h - 1 : sy);
            sx = sx < 0 ? 0 : (sx > w - 1 ? w - 1 : sx);
          }
          float* o = dst + (std::size_t(i) * w + j) * c;
          // A source point far outside the image (or NaN, from extreme factors) reads
          // only fill; testing before the float-to-long conversions below keeps them
          // defined (converting NaN or a value beyond long's range is undefined).
          if (!(sy > -2.0 && sy < h + 1.0 && sx > -2.0 && sx < w + 1.0)) {
            for (int ch = 0; ch < c; ++ch) o[ch] = fill;
            continue;
          }
          if (!bilinear) {
            const long y = long(std::floor(sy + 0.5)), x = long(std::floor(sx + 0.5));
            for (int ch = 0; ch < c; ++ch) o[ch] = float(read(y, x, ch));
            continue;
          }
          const double fy = std::floor(sy), fx = std::floor(sx);
          const double wy = sy - fy, wx = sx - fx;
          const long y0 = long(fy), x0 = long(fx);
          for (int ch = 0; ch < c; ++ch)
            o[ch] = float((1 - wy) * ((1 - wx) * read(y0, x0, ch) + wx * read(y0, x0 + 1, ch)) +
                          wy * ((1 - wx) * read(y0 + 1, x0, ch) + wx * read(y0 + 1, x0 + 1, ch)));
        }
    }
  });
}

}  // namespace cpu
}  // namespace fusednn

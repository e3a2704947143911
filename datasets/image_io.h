// Reading and writing images through stb_image / stb_image_write (datasets/image_io.cpp).
//
// Reading accepts PNG, JPEG and BMP, recognised by their first bytes (not by the file name), in grey,
// grey+alpha, RGB or RGBA; the result is always 8-bit RGB (grey is replicated, alpha is dropped, 16-bit
// PNG is reduced to 8 bits). Before decoding, the header's width x height is checked against
// ImageReadOptions::max_pixels, because a 60 KB file can ask for gigabytes. A file that cannot be read
// throws ImageError whose message names the file, the format we tried and stb's reason (or says that
// stb gave none). Two kinds of damage that stb decodes "successfully" are caught here instead: a JPEG
// cut off before its end-of-image marker (stb fills the missing part with grey) and a BMP shorter than
// its pixel array (stb fills it with black).
//
// Writing encodes in memory, writes a temporary file beside the target and renames it, so a failed
// write never leaves half an image behind. PNG output is deterministic (same pixels, same bytes).
#pragma once
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace icd {

// 8-bit RGB, row-major, 3 bytes per pixel: pixel (x, y) channel c is pixels[(y * width + x) * 3 + c].
struct Image {
  int width = 0;
  int height = 0;
  std::vector<uint8_t> pixels;

  Image() = default;
  Image(int width, int height, uint8_t fill = 0);  // throws std::invalid_argument for sizes < 1
  uint8_t* at(int x, int y) { return pixels.data() + (static_cast<size_t>(y) * width + x) * 3; }
  const uint8_t* at(int x, int y) const { return pixels.data() + (static_cast<size_t>(y) * width + x) * 3; }
};

// Any failure to read or write an image file (missing, corrupt, truncated, unsupported, too large).
class ImageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class ImageFormat { png, jpeg, bmp };
const char* image_format_name(ImageFormat format);

struct ImageReadOptions {
  int64_t max_pixels = int64_t{1} << 26;  // 67 M pixels (8192 x 8192), about 200 MB decoded
};

struct ImageInfo {
  ImageFormat format = ImageFormat::png;
  int width = 0;
  int height = 0;
  int channels = 0;  // in the file: 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA
};

// The header only: format and size, without decoding the pixels.
ImageInfo read_image_info(const std::string& path);
Image read_image(const std::string& path, const ImageReadOptions& options = {});
// Decodes an encoded file held in memory; `source` names it in error messages.
Image decode_image(const uint8_t* data, size_t size, const std::string& source,
                   const ImageReadOptions& options = {});

// Throw ImageError naming the file when the image is empty, inconsistent or cannot be written.
void write_png(const std::string& path, const Image& image);
void write_jpeg(const std::string& path, const Image& image, int quality = 95);  // quality in [1, 100]
// PNG or JPEG chosen by the extension (.png, .jpg, .jpeg; case-insensitive).
void write_image(const std::string& path, const Image& image);

}  // namespace icd

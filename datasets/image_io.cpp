// Image files through stb_image and stb_image_write (contract in image_io.h).
//
// stb's traps, and what is done about each here:
// - stb_image decodes whatever size the header claims: the size is read first with stbi_info and
//   checked against our own limit.
// - stbi_failure_reason() may be NULL, and when several decoders are tried it names the last one
//   tried, not the file's format. So the format is recognised here from the file's first bytes, only
//   that decoder is asked, and the message says which format was tried and that stb gave no reason.
// - A truncated JPEG decodes "successfully" (stb feeds zeros past the end, so the rest is flat grey),
//   and so does a truncated BMP (black): both are checked for completeness before decoding.
// - stbi_failure_reason() is thread-local in this stb version (STBI_THREAD_LOCAL), so the loader's
//   worker threads may decode at the same time.
#include "datasets/image_io.h"

#include "engine/atomic_file.h"

#include <algorithm>
#include <cctype>
#include <climits>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wall"
#pragma GCC diagnostic ignored "-Wextra"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-function"
#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_PNG
#define STBI_ONLY_JPEG
#define STBI_ONLY_BMP
#define STBI_NO_STDIO
#include <stb/stb_image.h>
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STBI_WRITE_NO_STDIO
#include <stb/stb_image_write.h>
#pragma GCC diagnostic pop

namespace icd {
namespace {

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw ImageError("image " + path + ": " + what);
}

std::string stb_reason() {
  const char* reason = stbi_failure_reason();
  return reason ? std::string("stb_image: ") + reason : std::string("stb_image gave no reason");
}

std::string hex_bytes(const uint8_t* data, size_t size, size_t count) {
  std::ostringstream out;
  static const char* digits = "0123456789abcdef";
  for (size_t i = 0; i < std::min(size, count); ++i) {
    if (i) out << ' ';
    out << digits[data[i] >> 4] << digits[data[i] & 15];
  }
  return out.str();
}

bool starts_with(const uint8_t* data, size_t size, std::initializer_list<uint8_t> prefix) {
  return size >= prefix.size() && std::equal(prefix.begin(), prefix.end(), data);
}

ImageFormat detect_format(const uint8_t* data, size_t size, const std::string& path) {
  if (size == 0) fail(path, "the file is empty");
  if (starts_with(data, size, {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'})) return ImageFormat::png;
  if (starts_with(data, size, {0xff, 0xd8, 0xff})) return ImageFormat::jpeg;
  if (starts_with(data, size, {'B', 'M'})) return ImageFormat::bmp;
  fail(path, "not a PNG, JPEG or BMP file (it starts with bytes " + hex_bytes(data, size, 8) +
                 "; the format is recognised from these bytes, not from the file name)");
}

// In a complete JPEG an end-of-image marker (FF D9) follows the last start-of-scan marker (FF DA).
// Inside entropy-coded data a 0xFF byte is always followed by 0x00 or a restart marker, so neither
// pair can appear there; an embedded EXIF thumbnail's end marker comes before the main scan.
bool jpeg_is_complete(const uint8_t* data, size_t size) {
  size_t last_scan = 0, last_end = 0;
  bool has_scan = false, has_end = false;
  for (size_t i = 0; i + 1 < size; ++i) {
    if (data[i] != 0xff) continue;
    if (data[i + 1] == 0xda) {
      last_scan = i;
      has_scan = true;
    } else if (data[i + 1] == 0xd9) {
      last_end = i;
      has_end = true;
    }
  }
  return has_scan && has_end && last_end > last_scan;
}

uint32_t read_le32(const uint8_t* p) {
  return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
}
uint16_t read_le16(const uint8_t* p) {
  return static_cast<uint16_t>(p[0] | p[1] << 8);
}

// An uncompressed BMP must hold all its rows (each padded to 4 bytes) after the pixel-data offset.
void check_bmp_complete(const uint8_t* data, size_t size, const std::string& path) {
  if (size < 26) fail(path, "truncated BMP header (" + std::to_string(size) + " bytes)");
  const uint64_t pixel_offset = read_le32(data + 10);
  const uint32_t header_size = read_le32(data + 14);
  int64_t width = 0, height = 0;
  uint32_t bits = 0, compression = 0;
  if (header_size == 12) {  // OS/2 BITMAPCOREHEADER
    width = read_le16(data + 18);
    height = read_le16(data + 20);
    bits = read_le16(data + 24);
  } else {
    if (size < 34) fail(path, "truncated BMP header (" + std::to_string(size) + " bytes)");
    width = static_cast<int32_t>(read_le32(data + 18));
    height = static_cast<int32_t>(read_le32(data + 22));
    bits = read_le16(data + 28);
    compression = read_le32(data + 30);
  }
  const bool uncompressed = compression == 0 || compression == 3 || compression == 6;
  if (!uncompressed || width <= 0 || bits == 0) return;  // left to stb, which rejects what it cannot read
  const uint64_t row_bytes = (static_cast<uint64_t>(width) * bits + 31) / 32 * 4;
  const uint64_t needed = pixel_offset + row_bytes * static_cast<uint64_t>(std::abs(height));
  if (needed > size) {
    fail(path, "truncated BMP: its " + std::to_string(width) + " x " + std::to_string(std::abs(height)) +
                   " pixels need " + std::to_string(needed) + " bytes, the file has " + std::to_string(size));
  }
}

std::vector<uint8_t> read_file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) fail(path, "cannot open the file (missing or unreadable)");
  const std::streamoff size = in.tellg();
  if (size < 0) fail(path, "cannot read the file size");
  std::vector<uint8_t> bytes(static_cast<size_t>(size));
  in.seekg(0);
  if (size > 0 && !in.read(reinterpret_cast<char*>(bytes.data()), size)) fail(path, "cannot read the file");
  return bytes;
}

ImageInfo header_info(const uint8_t* data, size_t size, const std::string& path) {
  ImageInfo info;
  info.format = detect_format(data, size, path);
  if (size > static_cast<size_t>(INT_MAX)) fail(path, "file too large for stb_image (over 2 GB)");
  if (!stbi_info_from_memory(data, static_cast<int>(size), &info.width, &info.height, &info.channels)) {
    // stbi_info's reason is always "unknown image type" once every decoder has declined.
    fail(path, std::string("cannot read the ") + image_format_name(info.format) +
                   " header (corrupt or truncated; tried stb_image's " + image_format_name(info.format) +
                   " decoder)");
  }
  return info;
}

void check_writable(const std::string& path, const Image& image) {
  if (image.width < 1 || image.height < 1) {
    fail(path, "cannot write an empty image (" + std::to_string(image.width) + " x " +
                   std::to_string(image.height) + ")");
  }
  const size_t expected = static_cast<size_t>(image.width) * image.height * 3;
  if (image.pixels.size() != expected) {
    fail(path, "pixel buffer holds " + std::to_string(image.pixels.size()) + " bytes, " +
                   std::to_string(image.width) + " x " + std::to_string(image.height) + " RGB needs " +
                   std::to_string(expected));
  }
}

void append_bytes(void* context, void* data, int size) {
  auto* out = static_cast<std::vector<uint8_t>*>(context);
  const auto* bytes = static_cast<const uint8_t*>(data);
  out->insert(out->end(), bytes, bytes + size);
}

std::string lower_extension(const std::string& path) {
  std::string ext = std::filesystem::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext;
}

// Failures become ImageError, the error type of every image function.
void write_bytes_atomically(const std::string& path, const std::vector<uint8_t>& bytes) {
  try {
    write_file_atomically(path, std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
  } catch (const std::runtime_error& e) {
    throw ImageError(e.what());
  }
}

}  // namespace

Image::Image(int width, int height, uint8_t fill) : width(width), height(height) {
  if (width < 1 || height < 1) {
    throw std::invalid_argument("Image: size must be at least 1 x 1, got " + std::to_string(width) + " x " +
                                std::to_string(height));
  }
  pixels.assign(static_cast<size_t>(width) * height * 3, fill);
}

const char* image_format_name(ImageFormat format) {
  switch (format) {
    case ImageFormat::png:
      return "PNG";
    case ImageFormat::jpeg:
      return "JPEG";
    case ImageFormat::bmp:
      return "BMP";
  }
  return "?";
}

ImageInfo read_image_info(const std::string& path) {
  const std::vector<uint8_t> bytes = read_file_bytes(path);
  return header_info(bytes.data(), bytes.size(), path);
}

Image read_image(const std::string& path, const ImageReadOptions& options) {
  const std::vector<uint8_t> bytes = read_file_bytes(path);
  return decode_image(bytes.data(), bytes.size(), path, options);
}

Image decode_image(const uint8_t* data, size_t size, const std::string& source,
                   const ImageReadOptions& options) {
  const ImageInfo info = header_info(data, size, source);
  const char* format = image_format_name(info.format);
  if (info.width < 1 || info.height < 1) {
    fail(source, std::string(format) + " header gives an empty size " + std::to_string(info.width) + " x " +
                     std::to_string(info.height));
  }
  const int64_t pixels = int64_t{info.width} * info.height;
  if (pixels > options.max_pixels) {
    fail(source, std::string(format) + " of " + std::to_string(info.width) + " x " +
                     std::to_string(info.height) + " = " + std::to_string(pixels) +
                     " pixels exceeds the limit of " + std::to_string(options.max_pixels) +
                     " (ImageReadOptions::max_pixels); not decoded");
  }
  if (info.format == ImageFormat::jpeg && !jpeg_is_complete(data, size)) {
    fail(source,
         "truncated JPEG: no end-of-image marker after the last scan (stb_image would fill the "
         "missing part with grey)");
  }
  if (info.format == ImageFormat::bmp) check_bmp_complete(data, size, source);

  int width = 0, height = 0, channels = 0;
  std::unique_ptr<stbi_uc, void (*)(void*)> decoded(
      stbi_load_from_memory(data, static_cast<int>(size), &width, &height, &channels, 3), stbi_image_free);
  if (!decoded) {
    fail(source, std::string("cannot decode the ") + format + " data (corrupt, truncated or an unsupported " +
                     format + " variant; " + stb_reason() + ")");
  }
  if (width != info.width || height != info.height) {
    fail(source, std::string(format) + " decoded to " + std::to_string(width) + " x " +
                     std::to_string(height) + " but its header says " + std::to_string(info.width) + " x " +
                     std::to_string(info.height));
  }
  Image image;
  image.width = width;
  image.height = height;
  image.pixels.assign(decoded.get(), decoded.get() + static_cast<size_t>(width) * height * 3);
  return image;
}

void write_png(const std::string& path, const Image& image) {
  check_writable(path, image);
  std::vector<uint8_t> bytes;
  if (!stbi_write_png_to_func(append_bytes, &bytes, image.width, image.height, 3, image.pixels.data(),
                              image.width * 3)) {
    fail(path, "stb_image_write could not encode the PNG");
  }
  write_bytes_atomically(path, bytes);
}

void write_jpeg(const std::string& path, const Image& image, int quality) {
  check_writable(path, image);
  if (quality < 1 || quality > 100)
    fail(path, "JPEG quality must be in [1, 100], got " + std::to_string(quality));
  std::vector<uint8_t> bytes;
  if (!stbi_write_jpg_to_func(append_bytes, &bytes, image.width, image.height, 3, image.pixels.data(),
                              quality)) {
    fail(path, "stb_image_write could not encode the JPEG");
  }
  write_bytes_atomically(path, bytes);
}

void write_image(const std::string& path, const Image& image) {
  const std::string ext = lower_extension(path);
  if (ext == ".png") return write_png(path, image);
  if (ext == ".jpg" || ext == ".jpeg") return write_jpeg(path, image);
  fail(path, "cannot tell the format from the extension \"" + ext + "\" (use .png, .jpg or .jpeg)");
}

}  // namespace icd

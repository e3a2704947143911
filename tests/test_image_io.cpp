// Image I/O: PNG/JPEG/BMP round trips and channel conversions (grey, grey+alpha, RGBA -> RGB), exact
// pixels of a hand-written BMP, and every bad-input rule: missing, empty, unknown format, truncated and
// corrupt files, headers asking for too many pixels, bad writes. Each error must name the file.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "datasets/image_io.h"
#include "temp_dir.h"

// The encoder stb_image_write is compiled into icd_datasets (datasets/image_io.cpp); only its
// declarations are needed here, to write grey and RGBA files that our own writer never makes.
#include <stb/stb_image_write.h>

using namespace icd;
using doctest::Contains;
using icd::testing::read_bytes;
using icd::testing::TempDir;
using Bytes = std::vector<unsigned char>;

namespace {

// A deterministic colourful test pattern: smooth gradients plus a few sharp edges.
Image pattern(int width, int height) {
  Image image(width, height);
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      uint8_t* p = image.at(x, y);
      p[0] = static_cast<uint8_t>(x * 255 / std::max(1, width - 1));
      p[1] = static_cast<uint8_t>(y * 255 / std::max(1, height - 1));
      p[2] = static_cast<uint8_t>(((x / 8 + y / 8) % 2) ? 200 : 40);
    }
  }
  return image;
}

void append_to(void* context, void* data, int size) {
  auto* out = static_cast<Bytes*>(context);
  out->insert(out->end(), static_cast<unsigned char*>(data), static_cast<unsigned char*>(data) + size);
}

// A PNG with `channels` channels in the file (1 grey, 2 grey+alpha, 3 RGB, 4 RGBA).
Bytes encode_png(int width, int height, int channels, const std::vector<unsigned char>& values) {
  Bytes out;
  REQUIRE(stbi_write_png_to_func(append_to, &out, width, height, channels, values.data(), width * channels));
  return out;
}

void put_le32(Bytes& b, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i)
    b[at + i] = static_cast<unsigned char>(v >> (8 * i));
}
void put_be32(Bytes& b, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i)
    b[at + i] = static_cast<unsigned char>(v >> (8 * (3 - i)));
}

// 24-bit uncompressed BMP, bottom-up rows of B, G, R padded to 4 bytes.
Bytes encode_bmp24(const Image& image) {
  const int row_bytes = (image.width * 3 + 3) / 4 * 4;
  Bytes b(54 + static_cast<size_t>(row_bytes) * image.height, 0);
  b[0] = 'B';
  b[1] = 'M';
  put_le32(b, 2, static_cast<uint32_t>(b.size()));
  put_le32(b, 10, 54);
  put_le32(b, 14, 40);
  put_le32(b, 18, static_cast<uint32_t>(image.width));
  put_le32(b, 22, static_cast<uint32_t>(image.height));
  b[26] = 1;   // planes
  b[28] = 24;  // bits per pixel
  for (int y = 0; y < image.height; ++y) {
    unsigned char* row = b.data() + 54 + static_cast<size_t>(image.height - 1 - y) * row_bytes;
    for (int x = 0; x < image.width; ++x) {
      const uint8_t* p = image.at(x, y);
      row[x * 3 + 0] = p[2];
      row[x * 3 + 1] = p[1];
      row[x * 3 + 2] = p[0];
    }
  }
  return b;
}

double mean_abs_difference(const Image& a, const Image& b) {
  REQUIRE(a.pixels.size() == b.pixels.size());
  double sum = 0;
  for (size_t i = 0; i < a.pixels.size(); ++i)
    sum += std::abs(int(a.pixels[i]) - int(b.pixels[i]));
  return sum / static_cast<double>(a.pixels.size());
}

Bytes truncated(const Bytes& bytes, size_t keep) {
  return Bytes(bytes.begin(), bytes.begin() + keep);
}

}  // namespace

TEST_CASE("PNG round trip is exact, deterministic and leaves no temporary file") {
  TempDir dir("image_io");
  const Image image = pattern(37, 21);
  const std::string path = dir.file("pattern.png");
  write_png(path, image);
  const Image back = read_image(path);
  CHECK(back.width == 37);
  CHECK(back.height == 21);
  CHECK(back.pixels == image.pixels);

  const ImageInfo info = read_image_info(path);
  CHECK(info.format == ImageFormat::png);
  CHECK(info.width == 37);
  CHECK(info.height == 21);
  CHECK(info.channels == 3);

  const Bytes first = read_bytes(path);
  write_png(dir.file("again.png"), image);
  CHECK(read_bytes(dir.file("again.png")) == first);
  write_image(dir.file("by_extension.PNG"), image);
  CHECK(read_bytes(dir.file("by_extension.PNG")) == first);

  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir.path())) {
    CHECK_MESSAGE(entry.path().string().find(".tmp") == std::string::npos, "left behind: " << entry.path());
    ++files;
  }
  CHECK(files == 3);
}

TEST_CASE("JPEG round trip is close and its quality matters") {
  TempDir dir("image_io");
  const Image image = pattern(64, 48);
  write_jpeg(dir.file("q95.jpg"), image, 95);
  write_image(dir.file("default.jpeg"), image);
  write_jpeg(dir.file("q10.jpg"), image, 10);
  const Image high = read_image(dir.file("q95.jpg"));
  const Image low = read_image(dir.file("q10.jpg"));
  CHECK(read_image_info(dir.file("q95.jpg")).format == ImageFormat::jpeg);
  CHECK(high.width == 64);
  CHECK(high.height == 48);
  CHECK(read_image(dir.file("default.jpeg")).pixels == high.pixels);  // default quality is 95
  CHECK(mean_abs_difference(high, image) < 3.0);
  CHECK(mean_abs_difference(low, image) > mean_abs_difference(high, image));
}

TEST_CASE("BMP pixels are read exactly, bottom-up rows and BGR order undone") {
  TempDir dir("image_io");
  Image image(3, 2);
  const uint8_t values[2][3][3] = {{{255, 0, 0}, {0, 255, 0}, {0, 0, 255}},
                                   {{10, 20, 30}, {40, 50, 60}, {70, 80, 90}}};
  for (int y = 0; y < 2; ++y)
    for (int x = 0; x < 3; ++x)
      for (int c = 0; c < 3; ++c)
        image.at(x, y)[c] = values[y][x][c];
  const std::string path = dir.write_bytes("hand.bmp", encode_bmp24(image));
  CHECK(read_image_info(path).format == ImageFormat::bmp);
  const Image back = read_image(path);
  CHECK(back.width == 3);
  CHECK(back.height == 2);
  CHECK(back.pixels == image.pixels);
  CHECK(back.at(0, 0)[0] == 255);
  CHECK(back.at(2, 1)[2] == 90);
}

TEST_CASE("grey, grey+alpha and RGBA files become RGB") {
  TempDir dir("image_io");
  const std::vector<unsigned char> grey = {0, 100, 200, 255};  // 2 x 2
  const Image from_grey = read_image(dir.write_bytes("grey.png", encode_png(2, 2, 1, grey)));
  CHECK(read_image_info(dir.file("grey.png")).channels == 1);
  for (int i = 0; i < 4; ++i) {
    CHECK(from_grey.pixels[i * 3 + 0] == grey[i]);
    CHECK(from_grey.pixels[i * 3 + 1] == grey[i]);
    CHECK(from_grey.pixels[i * 3 + 2] == grey[i]);
  }

  const std::vector<unsigned char> grey_alpha = {7, 0, 99, 255};  // 2 x 1, alpha dropped
  const Image from_grey_alpha = read_image(dir.write_bytes("ga.png", encode_png(2, 1, 2, grey_alpha)));
  CHECK(from_grey_alpha.pixels == std::vector<uint8_t>{7, 7, 7, 99, 99, 99});

  const std::vector<unsigned char> rgba = {1, 2, 3, 0, 4, 5, 6, 128, 7, 8, 9, 255};  // 3 x 1
  const Image from_rgba = read_image(dir.write_bytes("rgba.png", encode_png(3, 1, 4, rgba)));
  CHECK(read_image_info(dir.file("rgba.png")).channels == 4);
  CHECK(from_rgba.pixels == std::vector<uint8_t>{1, 2, 3, 4, 5, 6, 7, 8, 9});
}

TEST_CASE("missing, empty and unknown files give errors naming the file") {
  TempDir dir("image_io");
  const std::string missing = dir.file("no_such_image.png");
  CHECK_THROWS_WITH_AS(read_image(missing), Contains("no_such_image.png: cannot open"), ImageError);
  CHECK_THROWS_WITH_AS(read_image_info(missing), Contains("no_such_image.png: cannot open"), ImageError);

  const std::string empty = dir.write_bytes("empty.png", {});
  CHECK_THROWS_WITH_AS(read_image(empty), Contains("empty.png: the file is empty"), ImageError);

  const std::string text = dir.write_text("notes.jpg", "hello, this is not an image");
  CHECK_THROWS_WITH_AS(read_image(text), Contains("notes.jpg: not a PNG, JPEG or BMP file"), ImageError);

  // GIF is a format stb could decode, but the dataset accepts PNG, JPEG and BMP only.
  const std::string gif = dir.write_bytes("anim.gif", {'G', 'I', 'F', '8', '9', 'a', 1, 0, 1, 0, 0, 0, 0});
  CHECK_THROWS_WITH_AS(read_image(gif), Contains("starts with bytes 47 49 46 38 39 61"), ImageError);
}

TEST_CASE("truncated and corrupt PNG files") {
  TempDir dir("image_io");
  const Image image = pattern(40, 30);
  write_png(dir.file("good.png"), image);
  const Bytes good = read_bytes(dir.file("good.png"));
  REQUIRE(good.size() > 100);

  const std::string short_header = dir.write_bytes("short_header.png", truncated(good, 20));
  CHECK_THROWS_WITH_AS(read_image(short_header), Contains("short_header.png: cannot read the PNG header"),
                       ImageError);

  const std::string half = dir.write_bytes("half.png", truncated(good, good.size() / 2));
  CHECK_THROWS_WITH_AS(read_image(half), Contains("half.png: cannot decode the PNG data"), ImageError);

  // The first IDAT chunk's data starts with the zlib header (2 bytes); break its compression method.
  Bytes bad_zlib = good;
  const std::string idat = "IDAT";
  const auto at = std::search(bad_zlib.begin(), bad_zlib.end(), idat.begin(), idat.end());
  REQUIRE(at != bad_zlib.end());
  *(at + 4) = 0x0f;
  const std::string corrupt = dir.write_bytes("bad_zlib.png", bad_zlib);
  CHECK_THROWS_WITH_AS(read_image(corrupt), Contains("bad_zlib.png: cannot decode the PNG data"), ImageError);
  CHECK_THROWS_WITH_AS(read_image(corrupt), Contains("stb_image: "), ImageError);
}

TEST_CASE("truncated and corrupt JPEG files") {
  TempDir dir("image_io");
  write_jpeg(dir.file("good.jpg"), pattern(64, 64), 90);
  const Bytes good = read_bytes(dir.file("good.jpg"));
  REQUIRE(good.size() > 600);

  // Cut in the middle of the scan: stb alone would return an image with a grey lower part.
  const std::string cut = dir.write_bytes("cut.jpg", truncated(good, good.size() * 3 / 4));
  CHECK_THROWS_WITH_AS(read_image(cut), Contains("cut.jpg: truncated JPEG"), ImageError);
  // Only the last two bytes (the end-of-image marker) missing.
  const std::string no_end = dir.write_bytes("no_end.jpg", truncated(good, good.size() - 2));
  CHECK_THROWS_WITH_AS(read_image(no_end), Contains("no_end.jpg: truncated JPEG"), ImageError);
  // Cut inside the header, before any frame size is known.
  const std::string header_only = dir.write_bytes("header_only.jpg", truncated(good, 30));
  CHECK_THROWS_WITH_AS(read_image(header_only), Contains("header_only.jpg: cannot read the JPEG header"),
                       ImageError);

  // Zero the frame's component count in the SOF0 segment (FF C0, length, precision, height, width, n).
  Bytes bad_frame = good;
  size_t sof = 0;
  for (size_t i = 2; i + 1 < bad_frame.size(); ++i) {
    if (bad_frame[i] == 0xff && bad_frame[i + 1] == 0xc0) {
      sof = i;
      break;
    }
  }
  REQUIRE(sof > 0);
  bad_frame[sof + 9] = 0;
  const std::string corrupt = dir.write_bytes("bad_frame.jpg", bad_frame);
  CHECK_THROWS_WITH_AS(read_image(corrupt), Contains("bad_frame.jpg: "), ImageError);
  CHECK_THROWS_WITH_AS(read_image(corrupt), Contains("JPEG"), ImageError);
}

TEST_CASE("truncated BMP files") {
  TempDir dir("image_io");
  const Bytes good = encode_bmp24(pattern(20, 10));
  const std::string cut = dir.write_bytes("cut.bmp", truncated(good, good.size() - 7));
  CHECK_THROWS_WITH_AS(read_image(cut), Contains("cut.bmp: truncated BMP"), ImageError);
  const std::string header = dir.write_bytes("header.bmp", truncated(good, 20));
  CHECK_THROWS_WITH_AS(read_image(header), Contains("header.bmp: cannot read the BMP header"), ImageError);
}

TEST_CASE("a header asking for too many pixels is refused before decoding") {
  TempDir dir("image_io");
  // A 16000 x 16000 PNG header on a few bytes of data (stb does not check the IHDR checksum).
  Bytes huge_png = encode_png(1, 1, 3, {1, 2, 3});
  put_be32(huge_png, 16, 16000);
  put_be32(huge_png, 20, 16000);
  const std::string png = dir.write_bytes("huge.png", huge_png);
  CHECK(read_image_info(png).width == 16000);
  CHECK_THROWS_WITH_AS(read_image(png), Contains("huge.png: PNG of 16000 x 16000 = 256000000 pixels exceeds"),
                       ImageError);

  // A 60000 x 60000 JPEG frame header (height and width are bytes 5-8 of the SOF0 segment).
  write_jpeg(dir.file("small.jpg"), pattern(8, 8));
  Bytes huge_jpeg = read_bytes(dir.file("small.jpg"));
  for (size_t i = 2; i + 8 < huge_jpeg.size(); ++i) {
    if (huge_jpeg[i] == 0xff && huge_jpeg[i + 1] == 0xc0) {
      huge_jpeg[i + 5] = 0xea;  // 60000 = 0xea60
      huge_jpeg[i + 6] = 0x60;
      huge_jpeg[i + 7] = 0xea;
      huge_jpeg[i + 8] = 0x60;
      break;
    }
  }
  const std::string jpeg = dir.write_bytes("huge.jpg", huge_jpeg);
  CHECK_THROWS_WITH_AS(read_image(jpeg), Contains("huge.jpg: JPEG of 60000 x 60000"), ImageError);

  // The limit is ours to set.
  write_png(dir.file("normal.png"), pattern(64, 64));
  ImageReadOptions strict;
  strict.max_pixels = 1000;
  CHECK_THROWS_WITH_AS(read_image(dir.file("normal.png"), strict), Contains("exceeds the limit of 1000"),
                       ImageError);
  CHECK(read_image(dir.file("normal.png")).width == 64);
}

TEST_CASE("bad writes are refused and name the file") {
  TempDir dir("image_io");
  const Image image = pattern(4, 4);
  CHECK_THROWS_WITH_AS(write_png(dir.file("no_such_dir/x.png"), image), Contains("x.png: cannot create"),
                       ImageError);
  CHECK_THROWS_WITH_AS(write_png(dir.file("empty.png"), Image()),
                       Contains("empty.png: cannot write an empty"), ImageError);
  Image short_buffer = image;
  short_buffer.pixels.resize(10);
  CHECK_THROWS_WITH_AS(write_jpeg(dir.file("short.jpg"), short_buffer), Contains("short.jpg: pixel buffer"),
                       ImageError);
  CHECK_THROWS_WITH_AS(write_jpeg(dir.file("q.jpg"), image, 0), Contains("q.jpg: JPEG quality"), ImageError);
  CHECK_THROWS_WITH_AS(write_image(dir.file("x.tiff"), image), Contains("x.tiff: cannot tell the format"),
                       ImageError);
  CHECK_THROWS_AS(Image(0, 3), std::invalid_argument);

  // A refused write leaves the existing file as it was.
  write_png(dir.file("keep.png"), image);
  const Bytes before = read_bytes(dir.file("keep.png"));
  CHECK_THROWS_AS(write_png(dir.file("keep.png"), short_buffer), ImageError);
  CHECK(read_bytes(dir.file("keep.png")) == before);
  CHECK(!std::filesystem::exists(dir.file("empty.png")));
}

TEST_CASE("threads decode at once and each error keeps its own reason") {
  TempDir dir("image_io");
  write_png(dir.file("good.png"), pattern(50, 40));
  const Bytes good = read_bytes(dir.file("good.png"));
  dir.write_bytes("half.png", truncated(good, good.size() / 2));
  std::vector<std::string> results(8);
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int repeat = 0; repeat < 20; ++repeat) {
        try {
          const Image image = read_image(dir.file(t % 2 ? "half.png" : "good.png"));
          results[t] = image.width == 50 ? "ok" : "wrong size";
        } catch (const ImageError& e) {
          results[t] = e.what();
        }
      }
    });
  }
  for (auto& thread : threads)
    thread.join();
  for (int t = 0; t < 8; ++t) {
    if (t % 2) {
      CHECK_MESSAGE(results[t].find("half.png: cannot decode the PNG data") != std::string::npos, results[t]);
    } else {
      CHECK(results[t] == "ok");
    }
  }
}

#include "apps/common/plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>

#include "datasets/draw.h"
#include "datasets/image_io.h"

namespace icd::app {
namespace {

constexpr int kWidth = 720, kHeight = 400;
constexpr int kLeft = 60, kRight = 150, kTop = 30, kBottom = 40;  // margins around the plotting area

std::string number_label(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, std::abs(v) >= 100 || v == std::floor(v) ? "%.0f" : "%.3g", v);
  return buf;
}

// Bresenham's line, clipped to the image.
void draw_line(Image& image, int x0, int y0, int x1, int y1, Rgb c) {
  const int dx = std::abs(x1 - x0), dy = -std::abs(y1 - y0), sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
  int err = dx + dy;
  while (true) {
    if (x0 >= 0 && y0 >= 0 && x0 < image.width && y0 < image.height) {
      uint8_t* p = image.at(x0, y0);
      p[0] = c.r, p[1] = c.g, p[2] = c.b;
    }
    if (x0 == x1 && y0 == y1) break;
    const int e2 = 2 * err;
    if (e2 >= dy) err += dy, x0 += sx;
    if (e2 <= dx) err += dx, y0 += sy;
  }
}

std::vector<double> moving_average(const std::vector<double>& v, int window) {
  std::vector<double> out(v.size());
  double sum = 0;
  for (std::size_t i = 0; i < v.size(); ++i) {
    sum += v[i];
    if (i >= static_cast<std::size_t>(window)) sum -= v[i - window];
    out[i] = sum / static_cast<double>(std::min<std::size_t>(i + 1, window));
  }
  return out;
}

}  // namespace

void plot_metrics(const std::vector<nlohmann::json>& records, const std::vector<std::string>& series,
                  const std::string& title, const std::string& png_path, int smooth) {
  struct Line {
    std::string name;
    std::vector<double> x, y;
  };
  std::vector<Line> lines;
  for (const std::string& name : series) {
    Line line{name, {}, {}};
    for (const auto& r : records)
      if (r.contains(name) && r.contains("step") && r[name].is_number() &&
          std::isfinite(r[name].get<double>())) {
        line.x.push_back(r["step"].get<double>());
        line.y.push_back(r[name].get<double>());
      }
    if (!line.x.empty()) {
      line.y = moving_average(line.y, std::max(1, smooth));
      lines.push_back(std::move(line));
    }
  }
  if (lines.empty())
    throw std::invalid_argument("plot " + png_path + ": no record has any of the plotted fields");
  double x_min = INFINITY, x_max = -INFINITY, y_min = 0, y_max = -INFINITY;
  for (const Line& l : lines) {
    x_min = std::min(x_min, l.x.front()), x_max = std::max(x_max, l.x.back());
    for (double y : l.y)
      y_min = std::min(y_min, y), y_max = std::max(y_max, y);
  }
  if (x_max <= x_min) x_max = x_min + 1;
  if (y_max <= y_min) y_max = y_min + 1;

  Image image(kWidth, kHeight, 255);
  const int plot_w = kWidth - kLeft - kRight, plot_h = kHeight - kTop - kBottom;
  auto px = [&](double x) {
    return kLeft + static_cast<int>(std::lround((x - x_min) / (x_max - x_min) * plot_w));
  };
  auto py = [&](double y) {
    return kTop + plot_h - static_cast<int>(std::lround((y - y_min) / (y_max - y_min) * plot_h));
  };
  const Rgb black{0, 0, 0}, grey{200, 200, 200};
  for (int i = 0; i <= 4; ++i) {  // horizontal grid with value labels
    const double y = y_min + (y_max - y_min) * i / 4.0;
    draw_line(image, kLeft, py(y), kLeft + plot_w, py(y), grey);
    const std::string label = number_label(y);
    draw_text(image, kLeft - 6 - text_width(label), py(y) - text_height() / 2, label, black);
  }
  draw_rectangle(image, kLeft, kTop, kLeft + plot_w, kTop + plot_h, black);
  draw_text(image, kLeft, kTop + plot_h + 8, number_label(x_min), black);
  const std::string right = number_label(x_max) + " step";
  draw_text(image, kLeft + plot_w - text_width(right), kTop + plot_h + 8, right, black);
  draw_text(image, kLeft, 10, title, black, 1);
  for (std::size_t k = 0; k < lines.size(); ++k) {
    const Rgb colour = palette_colour(static_cast<int>(k));
    const Line& l = lines[k];
    for (std::size_t i = 1; i < l.x.size(); ++i)
      draw_line(image, px(l.x[i - 1]), py(l.y[i - 1]), px(l.x[i]), py(l.y[i]), colour);
    const int ly = kTop + 12 + 16 * static_cast<int>(k);
    fill_rectangle(image, kLeft + plot_w + 12, ly, kLeft + plot_w + 24, ly + 8, colour);
    draw_text(image, kLeft + plot_w + 30, ly, l.name, black);
  }
  write_png(png_path, image);
}

}  // namespace icd::app

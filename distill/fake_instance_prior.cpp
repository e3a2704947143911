#include "distill/fake_instance_prior.h"

#include "engine/atomic_file.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

namespace icd {

namespace {

const char* const kFieldNames[3] = {"mean", "std", "instances per image"};

bool all_finite(const std::array<double, 4>& v) {
  return std::all_of(v.begin(), v.end(), [](double x) { return std::isfinite(x); });
}

std::string class_name(std::size_t c) {
  return "class " + std::to_string(c);
}

// Reads field `index` ("mean" or "std") of one class entry: exactly four numbers.
std::array<double, 4> read_quad(const nlohmann::json& entry, int index, const std::string& where) {
  const nlohmann::json& field = entry[static_cast<std::size_t>(index)];
  std::string what = where + ": field " + std::to_string(index) + " (" + kFieldNames[index] + ")";
  if (!field.is_array() || field.size() != 4)
    throw std::runtime_error(what + " must be an array of 4 numbers (x, y, w, h), got " + field.dump());
  std::array<double, 4> out{};
  for (std::size_t i = 0; i < 4; ++i) {
    if (!field[i].is_number()) throw std::runtime_error(what + "[" + std::to_string(i) + "] is not a number");
    out[i] = field[i].get<double>();
  }
  return out;
}

}  // namespace

FakeInstancePrior::FakeInstancePrior(std::vector<ClassBoxPrior> classes) : classes_(std::move(classes)) {
  if (classes_.empty()) throw std::invalid_argument("FakeInstancePrior: no classes");
  double total = 0;
  for (std::size_t c = 0; c < classes_.size(); ++c) {
    const ClassBoxPrior& p = classes_[c];
    if (!all_finite(p.mean) || !all_finite(p.stddev) || !std::isfinite(p.instances_per_image))
      throw std::invalid_argument("FakeInstancePrior: " + class_name(c) + " has a non-finite statistic");
    if (std::any_of(p.stddev.begin(), p.stddev.end(), [](double s) { return s < 0; }))
      throw std::invalid_argument("FakeInstancePrior: " + class_name(c) + " has a negative std");
    if (p.instances_per_image < 0)
      throw std::invalid_argument("FakeInstancePrior: " + class_name(c) +
                                  " has a negative instance frequency " +
                                  std::to_string(p.instances_per_image));
    total += p.instances_per_image;
  }
  if (!(total > 0))
    throw std::invalid_argument("FakeInstancePrior: every class has frequency 0, nothing can be sampled");
  double running = 0;
  for (const ClassBoxPrior& p : classes_) {
    running += p.instances_per_image / total;
    cumulative_.push_back(running);
  }
  cumulative_.back() = 1.0;  // rounding must not leave a gap above the last class
}

std::vector<double> FakeInstancePrior::class_probabilities() const {
  std::vector<double> p(cumulative_.size());
  for (std::size_t c = 0; c < p.size(); ++c)
    p[c] = cumulative_[c] - (c == 0 ? 0.0 : cumulative_[c - 1]);
  return p;
}

FakeInstancePrior FakeInstancePrior::parse(const std::string& json_text, const std::string& source) {
  nlohmann::json root;
  try {
    root = nlohmann::json::parse(json_text);
  } catch (const nlohmann::json::parse_error& e) {
    throw std::runtime_error(source + ": not valid JSON (" + e.what() + ")");
  }
  if (!root.is_object() || root.empty())
    throw std::runtime_error(source + ": expected a non-empty JSON object with keys \"0\"..\"K-1\"");
  // K distinct keys, each the decimal form of an id in [0, K): together they are exactly "0".."K-1".
  std::vector<ClassBoxPrior> classes(root.size());
  for (const auto& [key, entry] : root.items()) {
    std::size_t index = root.size();
    if (!key.empty() && key.size() <= 9 &&
        std::all_of(key.begin(), key.end(), [](char ch) { return ch >= '0' && ch <= '9'; }))
      index = static_cast<std::size_t>(std::stoul(key));
    if (index >= root.size() || std::to_string(index) != key)
      throw std::runtime_error(source + ": key \"" + key + "\" is not a class id in 0.." +
                               std::to_string(root.size() - 1) + " (keys must be \"0\"..\"K-1\")");
    const std::string where = source + ": key \"" + key + "\"";
    if (!entry.is_array() || entry.size() != 3)
      throw std::runtime_error(
          where + " must be [[mean x, y, w, h], [std x, y, w, h], instances per image], got " + entry.dump());
    ClassBoxPrior& p = classes[index];
    p.mean = read_quad(entry, 0, where);
    p.stddev = read_quad(entry, 1, where);
    if (!entry[2].is_number())
      throw std::runtime_error(where + ": field 2 (instances per image) is not a number");
    p.instances_per_image = entry[2].get<double>();
  }
  try {
    return FakeInstancePrior(std::move(classes));
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error(source + ": " + e.what());
  }
}

FakeInstancePrior FakeInstancePrior::load(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error(path + ": cannot open the fake-instance prior file");
  std::stringstream text;
  text << in.rdbuf();
  return parse(text.str(), path);
}

std::string FakeInstancePrior::to_json() const {
  nlohmann::ordered_json root = nlohmann::ordered_json::object();
  for (std::size_t c = 0; c < classes_.size(); ++c) {
    const ClassBoxPrior& p = classes_[c];
    root[std::to_string(c)] = {p.mean, p.stddev, p.instances_per_image};
  }
  return root.dump();
}

void FakeInstancePrior::save(const std::string& path) const {
  write_file_atomically(path, to_json() + "\n");
}

FakeInstancePrior FakeInstancePrior::from_annotations(const std::vector<ImageInstances>& images,
                                                      int64_t num_classes) {
  if (num_classes <= 0)
    throw std::invalid_argument("FakeInstancePrior::from_annotations: num_classes must be positive");
  if (images.empty()) throw std::invalid_argument("FakeInstancePrior::from_annotations: no images");
  const std::size_t K = static_cast<std::size_t>(num_classes);
  // Normalised (x, y, w, h) of every box, grouped by class.
  std::vector<std::vector<std::array<double, 4>>> boxes(K);
  for (std::size_t i = 0; i < images.size(); ++i) {
    const ImageInstances& image = images[i];
    check_image_instances(image, num_classes,
                          "FakeInstancePrior::from_annotations: image " + std::to_string(i));
    const double W = static_cast<double>(image.size.width), H = static_cast<double>(image.size.height);
    for (std::size_t j = 0; j < image.boxes.size(); ++j) {
      const InstanceBox& b = image.boxes[j];
      boxes[static_cast<std::size_t>(image.labels[j])].push_back(
          {b[0] / W, b[1] / H, (b[2] - b[0]) / W, (b[3] - b[1]) / H});
    }
  }
  // Two passes (mean, then squared deviations): no cancellation, and exactly 0 for a constant.
  std::vector<ClassBoxPrior> classes(K);
  for (std::size_t c = 0; c < K; ++c) {
    if (boxes[c].empty()) continue;
    const double n = static_cast<double>(boxes[c].size());
    for (std::size_t k = 0; k < 4; ++k) {
      double sum = 0, squares = 0;
      for (const auto& v : boxes[c])
        sum += v[k];
      const double mean = sum / n;
      for (const auto& v : boxes[c])
        squares += (v[k] - mean) * (v[k] - mean);
      classes[c].mean[k] = mean;
      classes[c].stddev[k] = std::sqrt(squares / n);
    }
    classes[c].instances_per_image = n / static_cast<double>(images.size());
  }
  return FakeInstancePrior(std::move(classes));
}

FakeSample FakeInstancePrior::sample_normalized(Generator& gen) const {
  // The first class whose running probability exceeds u; classes of probability 0 are never chosen.
  const double u = gen.uniform();
  const auto it = std::upper_bound(cumulative_.begin(), cumulative_.end(), u);
  FakeSample out;
  out.label = static_cast<int64_t>(it - cumulative_.begin());
  const ClassBoxPrior& p = classes_[static_cast<std::size_t>(out.label)];
  double size[2];
  for (int k = 0; k < 2; ++k) {
    const double mean = p.mean[2 + k], stddev = p.stddev[2 + k];
    const double v =
        std::clamp(mean + stddev * gen.normal(), mean - kClipStddevs * stddev, mean + kClipStddevs * stddev);
    size[k] = std::clamp(v, kSizeMin, kSizeMax);
  }
  out.w = size[0];
  out.h = size[1];
  out.cx = std::clamp(gen.uniform(), kCentreMin, kCentreMax);
  out.cy = std::clamp(gen.uniform(), kCentreMin, kCentreMax);
  return out;
}

FakeInstance FakeInstancePrior::sample(ImageSize image, Generator& gen) const {
  if (image.height <= 0 || image.width <= 0)
    throw std::invalid_argument("FakeInstancePrior::sample: image size " + std::to_string(image.height) +
                                "x" + std::to_string(image.width) + " must be positive");
  const FakeSample s = sample_normalized(gen);
  const double W = static_cast<double>(image.width), H = static_cast<double>(image.height);
  auto unit = [](double v) { return std::clamp(v, 0.0, 1.0); };
  FakeInstance out;
  out.label = s.label;
  out.box = {unit(s.cx - s.w / 2) * W, unit(s.cy - s.h / 2) * H, unit(s.cx + s.w / 2) * W,
             unit(s.cy + s.h / 2) * H};
  return out;
}

std::vector<FakeInstance> FakeInstancePrior::sample(int64_t count, ImageSize image, Generator& gen) const {
  if (count < 0)
    throw std::invalid_argument("FakeInstancePrior::sample: negative count " + std::to_string(count));
  std::vector<FakeInstance> out;
  out.reserve(static_cast<std::size_t>(count));
  for (int64_t i = 0; i < count; ++i)
    out.push_back(sample(image, gen));
  return out;
}

}  // namespace icd

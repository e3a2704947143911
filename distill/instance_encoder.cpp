#include "distill/instance_encoder.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "engine/factory.h"

namespace icd {

int64_t query_count(int64_t num_real, int64_t neg_pos_ratio, int64_t max_labels) {
  if (num_real < 0 || neg_pos_ratio < 0 || max_labels < 1)
    throw std::invalid_argument(
        "query_count: need num_real >= 0, neg_pos_ratio >= 0 and max_labels >= 1, got " +
        std::to_string(num_real) + ", " + std::to_string(neg_pos_ratio) + ", " + std::to_string(max_labels));
  return std::min(std::max<int64_t>(1, num_real * (neg_pos_ratio + 1)), std::max(max_labels, num_real));
}

ImageQueries sample_image_queries(const ImageInstances& ground_truth, const FakeInstancePrior& prior,
                                  const QuerySamplingConfig& config, Generator& gen) {
  check_image_instances(ground_truth, prior.num_classes(), "sample_image_queries: ground truth");
  if (!(config.jitter_range >= 0))
    throw std::invalid_argument("sample_image_queries: jitter_range must be >= 0, got " +
                                std::to_string(config.jitter_range));
  ImageQueries out;
  out.size = ground_truth.size;
  out.num_real = static_cast<int64_t>(ground_truth.boxes.size());
  const int64_t total = query_count(out.num_real, config.neg_pos_ratio, config.max_labels);
  for (int64_t i = 0; i < out.num_real; ++i)
    out.queries.push_back({ground_truth.boxes[static_cast<std::size_t>(i)],
                           ground_truth.labels[static_cast<std::size_t>(i)], 0.0, 0.0});
  for (const FakeInstance& fake : prior.sample(total - out.num_real, ground_truth.size, gen))
    out.queries.push_back({fake.box, fake.label, 0.0, 0.0});
  for (InstanceQuery& q : out.queries) {
    q.jitter_x = gen.uniform(-config.jitter_range, config.jitter_range);
    q.jitter_y = gen.uniform(-config.jitter_range, config.jitter_range);
  }
  return out;
}

int64_t scale_bin(double size_px) {
  if (!(size_px > 0)) return 0;  // ln(0) = -inf: the smallest bin
  const double raw = std::trunc(1.44 * std::log(size_px) - 5.0);
  return static_cast<int64_t>(std::clamp(raw, 0.0, static_cast<double>(kScaleBins - 1)));
}

namespace {

// PE(u) into out[0, 128): sines of the 64 frequencies, then their cosines.
void point_encoding(double u, double* out) {
  constexpr int64_t half = kPointFeatures / 2;
  for (int64_t k = 0; k < half; ++k) {
    const double f = std::pow(10000.0, 2.0 * static_cast<double>(k) / static_cast<double>(kPointFeatures));
    const double angle = 2.0 * M_PI * u / f;
    out[k] = std::sin(angle);
    out[half + k] = std::cos(angle);
  }
}

void check_image_queries(const ImageQueries& image, int64_t num_classes, std::size_t index) {
  const std::string what = "build_query_batch: image " + std::to_string(index);
  if (image.queries.empty()) throw std::invalid_argument(what + " has no queries (K_b >= 1 always)");
  if (image.num_real < 0 || image.num_real > static_cast<int64_t>(image.queries.size()))
    throw std::invalid_argument(what + ": num_real " + std::to_string(image.num_real) + " is outside [0, " +
                                std::to_string(image.queries.size()) + "]");
  ImageInstances as_instances;
  as_instances.size = image.size;
  for (const InstanceQuery& q : image.queries) {
    as_instances.boxes.push_back(q.box);
    as_instances.labels.push_back(q.label);
  }
  check_image_instances(as_instances, num_classes, what);
}

int64_t checked_descriptor_dim(int64_t num_classes) {
  if (num_classes <= 0)
    throw std::invalid_argument("InstanceEncoder: num_classes must be positive, got " +
                                std::to_string(num_classes));
  return descriptor_dim(num_classes);
}

}  // namespace

QueryBatch build_query_batch(const std::vector<ImageQueries>& images, int64_t num_classes, DType dtype,
                             Device device) {
  if (images.empty()) throw std::invalid_argument("build_query_batch: empty batch");
  if (num_classes <= 0) throw std::invalid_argument("build_query_batch: num_classes must be positive");
  const int64_t B = static_cast<int64_t>(images.size());
  int64_t L = 0;
  for (std::size_t b = 0; b < images.size(); ++b) {
    check_image_queries(images[b], num_classes, b);
    L = std::max(L, static_cast<int64_t>(images[b].queries.size()));
  }
  const int64_t D = descriptor_dim(num_classes);
  // Offsets of the blocks inside one descriptor.
  const int64_t pe_x = num_classes, pe_y = num_classes + kPointFeatures,
                scale = num_classes + 2 * kPointFeatures;

  std::vector<double> descriptors(static_cast<std::size_t>(B * L * D), 0.0);
  std::vector<double> padding(static_cast<std::size_t>(B * L), 1.0),
      real(static_cast<std::size_t>(B * L), 0.0);
  std::vector<double> targets(static_cast<std::size_t>(B * L * 4), 0.0),
      points(static_cast<std::size_t>(B * L * 2), 0.0);
  double padding_point[kPointFeatures];
  point_encoding(0.0, padding_point);

  QueryBatch out;
  for (int64_t b = 0; b < B; ++b) {
    const ImageQueries& image = images[static_cast<std::size_t>(b)];
    const double W = static_cast<double>(image.size.width), H = static_cast<double>(image.size.height);
    const int64_t K = static_cast<int64_t>(image.queries.size());
    out.num_real.push_back(image.num_real);
    out.num_queries.push_back(K);
    for (int64_t i = 0; i < L; ++i) {
      double* d = descriptors.data() + (b * L + i) * D;
      const std::size_t slot = static_cast<std::size_t>(b * L + i);
      if (i >= K) {  // padding slot: class 0, point (0, 0), no scale bin
        d[0] = 1.0;
        std::copy(padding_point, padding_point + kPointFeatures, d + pe_x);
        std::copy(padding_point, padding_point + kPointFeatures, d + pe_y);
        continue;
      }
      const InstanceQuery& q = image.queries[static_cast<std::size_t>(i)];
      const double x1 = q.box[0] / W, y1 = q.box[1] / H, x2 = q.box[2] / W, y2 = q.box[3] / H;
      const double w = x2 - x1, h = y2 - y1;
      const double px = (x1 + x2) / 2 + q.jitter_x * w, py = (y1 + y2) / 2 + q.jitter_y * h;
      d[q.label] = 1.0;
      point_encoding(px, d + pe_x);
      point_encoding(py, d + pe_y);
      d[scale + scale_bin(w * W)] = 1.0;
      d[scale + kScaleBins + scale_bin(h * H)] = 1.0;
      padding[slot] = 0.0;
      real[slot] = i < image.num_real ? 1.0 : 0.0;
      double* t = targets.data() + slot * 4;
      t[0] = px - x1;
      t[1] = py - y1;
      t[2] = x2 - px;
      t[3] = y2 - py;
      points[slot * 2] = px;
      points[slot * 2 + 1] = py;
    }
  }
  const TensorOptions options{dtype, device};
  out.descriptors = from_vector(descriptors, {B, L, D}, options);
  out.padding_mask = from_vector(padding, {B, L}, options);
  out.real_mask = from_vector(real, {B, L}, options);
  out.targets = from_vector(targets, {B, L, 4}, options);
  out.points = from_vector(points, {B, L, 2}, options);
  return out;
}

InstanceEncoder::InstanceEncoder(int64_t num_classes, int64_t hidden_dim, Generator& gen)
    : Mlp(checked_descriptor_dim(num_classes), hidden_dim, hidden_dim, 3, gen), num_classes_(num_classes) {}

}  // namespace icd

// The prior that fake instances are drawn from (spec/icd.md section 1, "Fake instance sampling").
//
// The auxiliary task teaches the decoder to tell real objects from fake ones, so every image gets, besides
// its n real boxes, about 5n fake boxes drawn from the statistics of the training set:
//   class c ~ Categorical(p),  p_c = (mean instances of class c per image), normalised to sum to 1
//   w, h    ~ Normal(mean_c, std_c), clipped to mean_c +- 2 std_c, then to [0.002, 0.7]   (fractions of W, H)
//   cx, cy  ~ U[0, 1), clipped to [0.03, 0.97]       (the class-mean position is not used)
//   box     = (cx - w/2, cy - h/2, cx + w/2, cy + h/2), clamped to [0, 1], times (W, H, W, H)
// Fake boxes are plausible in size and class frequency but sit anywhere, which is what makes "real or fake?"
// a question about image content.
//
// File format (the paper's coco_obj.json; ours is data/coco_obj_prior.json): a JSON object with keys
// "0".."K-1", each [[mean x, y, w, h], [std x, y, w, h], mean instances of the class per image], all in
// normalised coordinates. The spec calls the first two entries the mean centre; in the paper's COCO file they
// are the mean top-left corner (COCO's [x, y, w, h] boxes; mean x + w/2 is 0.50 over the 80 classes).
// Sampling never reads them, and from_annotations() computes the top-left corner too, so a prior computed
// from COCO would reproduce the paper's file.
//
// Quirk 9.1 of the spec (the reference sorts the JSON keys as strings, so label i is drawn with the
// statistics of class int(sorted_keys[i])) is deliberately NOT replicated: label c is drawn with class c's
// statistics.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "distill/image_instances.h"
#include "engine/random.h"

namespace icd {

struct ClassBoxPrior {
  std::array<double, 4> mean{};    // x, y, w, h, normalised to [0, 1]
  std::array<double, 4> stddev{};  // population standard deviations of the same
  double instances_per_image = 0;  // instances of this class / number of images
};

// One draw before it becomes a box: class, centre and size in [0, 1] image units.
struct FakeSample {
  int64_t label = 0;
  double cx = 0, cy = 0, w = 0, h = 0;
};

struct FakeInstance {
  InstanceBox box;  // pixels
  int64_t label = 0;
};

class FakeInstancePrior {
 public:
  // Spec constants of the sampler.
  static constexpr double kCentreMin = 0.03, kCentreMax = 0.97;
  static constexpr double kSizeMin = 0.002, kSizeMax = 0.7;
  static constexpr double kClipStddevs = 2.0;

  // Checks the statistics (finite, std >= 0, frequencies >= 0 with a positive sum); std::invalid_argument.
  explicit FakeInstancePrior(std::vector<ClassBoxPrior> classes);

  // Reads the JSON format above. std::runtime_error naming the file (or `source`) and the offending key and
  // field when the file is missing, is not JSON, or has the wrong structure.
  static FakeInstancePrior load(const std::string& path);
  static FakeInstancePrior parse(const std::string& json_text, const std::string& source);
  // Writes the JSON format above (keys in numeric order), through a temporary file and a rename.
  void save(const std::string& path) const;
  std::string to_json() const;

  // The statistics of a training set: per class, the mean and population std of the normalised
  // (x1 / W, y1 / H, w / W, h / H) of its boxes, and its count divided by the number of images (images
  // without boxes count). A class without boxes gets zeros and is never sampled.
  static FakeInstancePrior from_annotations(const std::vector<ImageInstances>& images, int64_t num_classes);

  int64_t num_classes() const { return static_cast<int64_t>(classes_.size()); }
  const ClassBoxPrior& operator[](int64_t label) const {
    return classes_.at(static_cast<std::size_t>(label));
  }
  // The probability of drawing each class.
  std::vector<double> class_probabilities() const;

  // One draw of (class, cx, cy, w, h), all clipping applied. Draws, in order: the class (one uniform), w and
  // h (two normals), cx and cy (two uniforms).
  FakeSample sample_normalized(Generator& gen) const;
  // One fake instance for an image of the given (unpadded) size: sample_normalized(), turned into a box,
  // clamped to the image and scaled to pixels.
  FakeInstance sample(ImageSize image, Generator& gen) const;
  std::vector<FakeInstance> sample(int64_t count, ImageSize image, Generator& gen) const;

 private:
  std::vector<ClassBoxPrior> classes_;
  std::vector<double> cumulative_;  // running sum of the class probabilities; the last entry is 1
};

}  // namespace icd

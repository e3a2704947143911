// A threaded data loader for detection (datasets/loader.cpp): reads images of a CocoDataset, applies
// the transforms and delivers padded batches, in order, while worker threads prepare the next ones.
//
//   DetectionLoader loader(dataset, config);
//   for (int64_t epoch = 0; epoch < epochs; ++epoch) {
//     loader.start_epoch(epoch);
//     while (std::optional<DetectionBatch> batch = loader.next()) train_step(*batch);
//   }
//
// Repeatable: an epoch's order is a shuffle seeded by (seed, epoch), and each sample's random
// transforms draw from a Generator seeded by (seed, epoch, image index). So the batches depend only on
// the seed and the epoch, never on the number of workers or on thread timing; start_epoch(epoch, k)
// resumes an epoch at batch k with the same batches as an uninterrupted run.
//
// Bounded: at most prefetch_batches batches are being prepared or waiting; workers sleep otherwise.
// Stopping early is safe: start_epoch() and the destructor stop the workers and join them (a worker
// finishes the batch it is preparing first).
//
// Unreadable images (ImageError: missing, corrupt, truncated, too large, or a size that differs from
// the JSON) throw from next(), in batch order, naming the file, unless skip_unreadable_images is set:
// then each is reported through `warn` and counted in stats(), and its batch is delivered without it
// (a batch left with no image is skipped). next() is for one consumer thread.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "datasets/coco_dataset.h"
#include "datasets/image_io.h"
#include "datasets/transforms.h"

namespace icd {

struct LoaderConfig {
  int batch_size = 2;
  int num_workers = 2;       // 0: every batch is prepared by next() on the calling thread
  int prefetch_batches = 4;  // >= 1
  bool shuffle = true;
  bool drop_last = false;                 // drop the last batch when it would be smaller than batch_size
  bool only_images_with_targets = false;  // detectron2's FILTER_EMPTY_ANNOTATIONS, for training
  bool skip_unreadable_images = false;
  bool pin_memory = false;  // batches in page-locked memory, for a model on a GPU (datasets/transforms.h)
  uint64_t seed = 0;
  TransformConfig transform;
  ImageReadOptions read;
  std::function<void(const std::string&)> warn;  // empty: print "warning: ..." lines to std::cerr

  void validate() const;  // throws std::invalid_argument naming the bad field
};

struct LoaderStats {
  int64_t images_loaded = 0;
  int64_t images_skipped = 0;           // each time, every epoch
  std::vector<int64_t> skipped_images;  // dataset indices of the images skipped so far, ascending, once each
  int64_t batches_delivered = 0;
};

// The seed of one sample's Generator: a hash of (seed, epoch, image index).
uint64_t sample_seed(uint64_t seed, int64_t epoch, int64_t image_index);

class DetectionLoader {
 public:
  // Keeps a reference to `dataset`, which must outlive the loader.
  DetectionLoader(const CocoDataset& dataset, LoaderConfig config);
  ~DetectionLoader();
  DetectionLoader(const DetectionLoader&) = delete;
  DetectionLoader& operator=(const DetectionLoader&) = delete;

  int64_t num_samples() const { return static_cast<int64_t>(samples_.size()); }
  int64_t batches_per_epoch() const;
  // The dataset indices of an epoch, in the order they are batched.
  std::vector<int64_t> epoch_order(int64_t epoch) const;

  // Stops any unfinished epoch and starts preparing `epoch` from batch `first_batch` on.
  void start_epoch(int64_t epoch, int64_t first_batch = 0);
  // The next batch of the current epoch, or nothing once the epoch is over.
  std::optional<DetectionBatch> next();
  // Stops the workers now (also done by start_epoch and the destructor).
  void stop();

  LoaderStats stats() const;
  // One sample as the loader makes it (reads the image, checks its size, draws the transforms).
  TransformedSample load_sample(int64_t image_index, int64_t epoch) const;

 private:
  struct Epoch;
  struct Shared;
  void run_worker(Epoch& epoch);
  // The batch, nothing if every image in it was skipped; throws what loading threw otherwise.
  std::optional<DetectionBatch> prepare_batch(const Epoch& epoch, int64_t batch_index);
  void note_skipped(int64_t image_index, const std::string& message);

  const CocoDataset& dataset_;
  LoaderConfig config_;
  std::vector<int64_t> samples_;  // dataset indices this loader draws from
  std::unique_ptr<Shared> shared_;
  std::unique_ptr<Epoch> epoch_;
};

}  // namespace icd

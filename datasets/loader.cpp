// The threaded detection loader (contract in loader.h).
//
// Workers claim batch numbers in increasing order from a shared counter, but never more than
// prefetch_batches ahead of the consumer; each prepared batch (or the exception that prevented it) is
// filed under its number, and next() takes them out strictly in order. Which worker prepares a batch
// does not matter: its contents depend only on (seed, epoch, batch number).
#include "datasets/loader.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <exception>
#include <iostream>
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>

namespace icd {
namespace {

// splitmix64's finaliser: consecutive inputs give unrelated outputs.
uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

constexpr uint64_t kShuffleStream = 0x53687566666c65ULL;  // "Shuffle": keeps the order's stream apart

}  // namespace

uint64_t sample_seed(uint64_t seed, int64_t epoch, int64_t image_index) {
  return mix(mix(mix(seed) ^ static_cast<uint64_t>(epoch)) ^ static_cast<uint64_t>(image_index));
}

void LoaderConfig::validate() const {
  auto bad = [](const std::string& what) { throw std::invalid_argument("LoaderConfig: " + what); };
  if (batch_size < 1) bad("batch_size must be >= 1, got " + std::to_string(batch_size));
  if (num_workers < 0) bad("num_workers must be >= 0, got " + std::to_string(num_workers));
  if (prefetch_batches < 1) bad("prefetch_batches must be >= 1, got " + std::to_string(prefetch_batches));
  if (read.max_pixels < 1) bad("read.max_pixels must be >= 1");
  transform.validate();
}

// Counters that outlive epochs.
struct DetectionLoader::Shared {
  std::atomic<int64_t> images_loaded{0};
  std::atomic<int64_t> images_skipped{0};
  std::atomic<int64_t> batches_delivered{0};
  std::mutex mutex;  // guards skipped and serialises warnings
  std::set<int64_t> skipped;
};

struct DetectionLoader::Epoch {
  struct Result {
    std::optional<DetectionBatch> batch;  // nothing: every image of the batch was skipped
    std::exception_ptr error;
  };

  int64_t number = 0;
  std::vector<int64_t> order;
  int64_t num_batches = 0;

  std::mutex mutex;
  std::condition_variable work_cv;   // workers: a batch may be claimed, or stop
  std::condition_variable ready_cv;  // consumer: a batch was filed
  int64_t next_claim = 0;
  int64_t next_deliver = 0;
  bool stopping = false;
  std::map<int64_t, Result> ready;
  std::vector<std::thread> workers;
};

DetectionLoader::DetectionLoader(const CocoDataset& dataset, LoaderConfig config)
    : dataset_(dataset), config_(std::move(config)), shared_(std::make_unique<Shared>()) {
  config_.validate();
  if (config_.only_images_with_targets) {
    samples_ = dataset_.images_with_targets();
  } else {
    samples_.resize(dataset_.num_images());
    for (int64_t i = 0; i < dataset_.num_images(); ++i)
      samples_[i] = i;
  }
}

DetectionLoader::~DetectionLoader() {
  stop();
}

int64_t DetectionLoader::batches_per_epoch() const {
  const int64_t n = num_samples();
  return config_.drop_last ? n / config_.batch_size : (n + config_.batch_size - 1) / config_.batch_size;
}

std::vector<int64_t> DetectionLoader::epoch_order(int64_t epoch) const {
  std::vector<int64_t> order = samples_;
  if (config_.shuffle) {
    Generator rng(mix(mix(config_.seed ^ kShuffleStream) ^ static_cast<uint64_t>(epoch)));
    for (size_t i = order.size(); i > 1; --i)
      std::swap(order[i - 1], order[rng.integer(i)]);
  }
  return order;
}

TransformedSample DetectionLoader::load_sample(int64_t image_index, int64_t epoch) const {
  const CocoImage& entry = dataset_.image(image_index);
  const std::string path = dataset_.image_path(image_index);
  const Image image = read_image(path, config_.read);
  if (image.width != entry.width || image.height != entry.height) {
    throw ImageError("image " + path + ": decoded size " + std::to_string(image.width) + " x " +
                     std::to_string(image.height) + " (width x height) differs from " +
                     std::to_string(entry.width) + " x " + std::to_string(entry.height) +
                     " given for image id " + std::to_string(entry.id) + " in " + dataset_.source());
  }
  Generator rng(sample_seed(config_.seed, epoch, image_index));
  TransformedSample sample = apply_transforms(image, dataset_.targets(image_index), config_.transform, rng);
  sample.info.image_index = image_index;
  sample.info.image_id = entry.id;
  return sample;
}

void DetectionLoader::note_skipped(int64_t image_index, const std::string& message) {
  shared_->images_skipped.fetch_add(1);
  std::lock_guard<std::mutex> lock(shared_->mutex);
  shared_->skipped.insert(image_index);
  const std::string line =
      "skipping unreadable image (dataset index " + std::to_string(image_index) + "): " + message;
  if (config_.warn) {
    config_.warn(line);
  } else {
    std::cerr << "warning: " << line << "\n";
  }
}

std::optional<DetectionBatch> DetectionLoader::prepare_batch(const Epoch& epoch, int64_t batch_index) {
  const int64_t begin = batch_index * config_.batch_size;
  const int64_t end = std::min(begin + config_.batch_size, static_cast<int64_t>(epoch.order.size()));
  std::vector<TransformedSample> samples;
  samples.reserve(end - begin);
  for (int64_t position = begin; position < end; ++position) {
    const int64_t image_index = epoch.order[position];
    try {
      samples.push_back(load_sample(image_index, epoch.number));
      shared_->images_loaded.fetch_add(1);
    } catch (const ImageError& e) {
      if (!config_.skip_unreadable_images) throw;
      note_skipped(image_index, e.what());
    }
  }
  if (samples.empty()) return std::nullopt;
  DetectionBatch batch = collate(std::move(samples), config_.transform.size_divisibility, config_.pin_memory);
  batch.index = batch_index;
  return batch;
}

void DetectionLoader::run_worker(Epoch& epoch) {
  std::unique_lock<std::mutex> lock(epoch.mutex);
  while (true) {
    epoch.work_cv.wait(lock, [&] {
      return epoch.stopping || epoch.next_claim >= epoch.num_batches ||
             epoch.next_claim < epoch.next_deliver + config_.prefetch_batches;
    });
    if (epoch.stopping || epoch.next_claim >= epoch.num_batches) return;
    const int64_t batch_index = epoch.next_claim++;
    lock.unlock();
    Epoch::Result result;
    try {
      result.batch = prepare_batch(epoch, batch_index);
    } catch (...) {
      result.error = std::current_exception();
    }
    lock.lock();
    epoch.ready[batch_index] = std::move(result);
    epoch.ready_cv.notify_all();
  }
}

void DetectionLoader::start_epoch(int64_t epoch, int64_t first_batch) {
  stop();
  if (first_batch < 0 || first_batch > batches_per_epoch()) {
    throw std::invalid_argument("DetectionLoader::start_epoch: first_batch " + std::to_string(first_batch) +
                                " is outside [0, " + std::to_string(batches_per_epoch()) + "]");
  }
  epoch_ = std::make_unique<Epoch>();
  epoch_->number = epoch;
  epoch_->order = epoch_order(epoch);
  epoch_->num_batches = batches_per_epoch();
  epoch_->next_claim = first_batch;
  epoch_->next_deliver = first_batch;
  for (int w = 0; w < config_.num_workers; ++w) {
    epoch_->workers.emplace_back([this, current = epoch_.get()] { run_worker(*current); });
  }
}

std::optional<DetectionBatch> DetectionLoader::next() {
  if (!epoch_) throw std::logic_error("DetectionLoader::next: call start_epoch first");
  Epoch& epoch = *epoch_;
  while (true) {
    Epoch::Result result;
    if (epoch.workers.empty()) {
      if (epoch.next_deliver >= epoch.num_batches) return std::nullopt;
      try {
        result.batch = prepare_batch(epoch, epoch.next_deliver++);
      } catch (...) {
        result.error = std::current_exception();
      }
    } else {
      std::unique_lock<std::mutex> lock(epoch.mutex);
      if (epoch.next_deliver >= epoch.num_batches) return std::nullopt;
      epoch.ready_cv.wait(lock, [&] { return epoch.ready.count(epoch.next_deliver) > 0; });
      auto node = epoch.ready.extract(epoch.next_deliver);
      result = std::move(node.mapped());
      ++epoch.next_deliver;
      lock.unlock();
      epoch.work_cv.notify_all();
    }
    if (result.error) {
      stop();
      std::rethrow_exception(result.error);
    }
    if (result.batch) {
      shared_->batches_delivered.fetch_add(1);
      return std::move(result.batch);
    }
  }
}

void DetectionLoader::stop() {
  if (!epoch_) return;
  Epoch& epoch = *epoch_;
  {
    std::lock_guard<std::mutex> lock(epoch.mutex);
    epoch.stopping = true;
  }
  epoch.work_cv.notify_all();
  for (std::thread& worker : epoch.workers)
    worker.join();
  epoch.workers.clear();
  epoch.ready.clear();
  epoch.next_deliver = epoch.num_batches;  // next() now reports the epoch as over
}

LoaderStats DetectionLoader::stats() const {
  LoaderStats stats;
  stats.images_loaded = shared_->images_loaded.load();
  stats.images_skipped = shared_->images_skipped.load();
  stats.batches_delivered = shared_->batches_delivered.load();
  std::lock_guard<std::mutex> lock(shared_->mutex);
  stats.skipped_images.assign(shared_->skipped.begin(), shared_->skipped.end());
  return stats;
}

}  // namespace icd

// The threaded loader: identical batches for 0/1/2/4 workers (shuffle and random transforms seeded by
// seed, epoch and image), every image once per epoch, in-order delivery, resuming mid-epoch, the bounded
// prefetch, stopping early, unreadable images (thrown in order, or skipped with a warning and a count),
// and a small throughput measurement (printed, not asserted).
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "datasets/loader.h"
#include "temp_dir.h"

using namespace icd;
using doctest::Contains;
using icd::testing::read_bytes;
using icd::testing::TempDir;

namespace {

Image noise_image(int width, int height, uint64_t seed) {
  Generator gen(seed);
  Image image(width, height);
  for (uint8_t& v : image.pixels)
    v = static_cast<uint8_t>(gen.integer(256));
  return image;
}

// `count` images of a few sizes (PNG and JPEG) with 0-3 boxes each; image i has id 100 + i and the
// last one has no annotation.
CocoData write_images(const TempDir& dir, int count, int base_width = 40, int base_height = 30) {
  CocoData data;
  data.categories = {{1, "a", ""}, {2, "b", ""}};
  int64_t annotation_id = 1;
  for (int i = 0; i < count; ++i) {
    const int width = base_width + 6 * (i % 3), height = base_height + 4 * (i % 4);
    const std::string name = "img" + std::to_string(i) + (i % 2 ? ".jpg" : ".png");
    write_image(dir.file(name), noise_image(width, height, i));
    data.images.push_back({100 + i, name, width, height});
    for (int k = 0; k < (i == count - 1 ? 0 : 1 + i % 3); ++k) {
      const double x = 2 + 3 * k, y = 1 + 2 * k;
      data.annotations.push_back(
          {annotation_id++, 100 + i, 1 + (i + k) % 2, {x, y, 10.0 + k, 8.0 + i % 5}, 80, false});
    }
  }
  return data;
}

LoaderConfig small_config(int workers) {
  LoaderConfig config;
  config.batch_size = 3;
  config.num_workers = workers;
  config.prefetch_batches = 2;
  config.seed = 42;
  config.transform.short_edge_sizes = {16, 24, 32};
  config.transform.max_long_edge = 64;
  config.transform.flip_probability = 0.5;
  return config;
}

// Everything a batch holds, as text and numbers, so two runs can be compared exactly.
struct BatchRecord {
  std::vector<float> pixels;
  std::string description;
  bool operator==(const BatchRecord&) const = default;
};

BatchRecord record(const DetectionBatch& batch) {
  std::ostringstream out;
  out.precision(17);
  out << "batch " << batch.index << " " << shape_str(batch.images.shape()) << "\n";
  for (const SampleInfo& s : batch.samples) {
    out << s.image_index << " id " << s.image_id << " " << s.size.height << "x" << s.size.width << " from "
        << s.original_size.height << "x" << s.original_size.width << " flip " << s.flipped << " scale "
        << s.scale_x << "," << s.scale_y << " boxes";
    for (size_t b = 0; b < s.targets.boxes.size(); ++b) {
      const BoxXYXY& box = s.targets.boxes[b];
      out << " [" << box.x1 << " " << box.y1 << " " << box.x2 << " " << box.y2 << " c" << s.targets.classes[b]
          << "]";
    }
    out << "\n";
  }
  return {batch.images.to_vector<float>(), out.str()};
}

std::vector<BatchRecord> run_epoch(DetectionLoader& loader, int64_t epoch, int64_t first_batch = 0) {
  std::vector<BatchRecord> records;
  loader.start_epoch(epoch, first_batch);
  while (std::optional<DetectionBatch> batch = loader.next())
    records.push_back(record(*batch));
  return records;
}

}  // namespace

TEST_CASE("the same batches for 0, 1, 2 and 4 workers, epoch after epoch") {
  TempDir dir("loader");
  const CocoDataset dataset(write_images(dir, 11), "memory", dir.path().string());
  std::vector<std::vector<BatchRecord>> reference;
  {
    DetectionLoader loader(dataset, small_config(0));
    for (int64_t epoch = 0; epoch < 2; ++epoch)
      reference.push_back(run_epoch(loader, epoch));
  }
  REQUIRE(reference[0].size() == 4);    // 11 images in batches of 3
  CHECK(reference[0] != reference[1]);  // another epoch, another order and other draws
  for (int workers : {1, 2, 4}) {
    CAPTURE(workers);
    DetectionLoader loader(dataset, small_config(workers));
    for (int64_t epoch = 0; epoch < 2; ++epoch) {
      const std::vector<BatchRecord> records = run_epoch(loader, epoch);
      REQUIRE(records.size() == reference[epoch].size());
      for (size_t b = 0; b < records.size(); ++b) {
        CHECK(records[b].description == reference[epoch][b].description);
        CHECK(records[b].pixels == reference[epoch][b].pixels);
      }
    }
  }
  LoaderConfig other_seed = small_config(2);
  other_seed.seed = 43;
  DetectionLoader loader(dataset, other_seed);
  CHECK(run_epoch(loader, 0) != reference[0]);
}

TEST_CASE("every image once per epoch, batches in order, each sample as load_sample makes it") {
  TempDir dir("loader");
  const CocoDataset dataset(write_images(dir, 10), "memory", dir.path().string());
  DetectionLoader loader(dataset, small_config(3));
  CHECK(loader.num_samples() == 10);
  CHECK(loader.batches_per_epoch() == 4);
  std::vector<int64_t> order = loader.epoch_order(5);
  CHECK(order != loader.epoch_order(6));
  std::vector<int64_t> seen;
  loader.start_epoch(5);
  int64_t expected_index = 0;
  while (std::optional<DetectionBatch> batch = loader.next()) {
    CHECK(batch->index == expected_index++);
    CHECK(batch->images.dim() == 4);
    CHECK(batch->images.size(2) % 32 == 0);
    CHECK(batch->images.size(3) % 32 == 0);
    for (int64_t i = 0; i < batch->size(); ++i) {
      const SampleInfo& info = batch->samples[i];
      seen.push_back(info.image_index);
      CHECK(info.image_id == 100 + info.image_index);
      const TransformedSample alone = loader.load_sample(info.image_index, 5);
      CHECK(alone.info.flipped == info.flipped);
      CHECK(alone.info.size.height == info.size.height);
      CHECK(alone.info.targets.boxes.size() == info.targets.boxes.size());
      // The sample's pixels sit at the top-left of its slot in the batch.
      const Tensor slot =
          batch->images.select(0, i).narrow(1, 0, info.size.height).narrow(2, 0, info.size.width);
      CHECK(slot.contiguous().to_vector<float>() == alone.image.to_vector<float>());
    }
  }
  CHECK(seen == order);
  CHECK(!loader.next().has_value());  // stays over
  std::sort(seen.begin(), seen.end());
  CHECK(seen == std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
  CHECK(loader.stats().batches_delivered == 4);
  CHECK(loader.stats().images_loaded == 10);

  LoaderConfig unshuffled = small_config(2);
  unshuffled.shuffle = false;
  unshuffled.drop_last = true;
  unshuffled.only_images_with_targets = true;  // image 9 has no annotation
  DetectionLoader plain(dataset, unshuffled);
  CHECK(plain.num_samples() == 9);
  CHECK(plain.batches_per_epoch() == 3);
  CHECK(plain.epoch_order(3) == std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8});
}

TEST_CASE("resuming an epoch at batch k gives the batches of an uninterrupted run") {
  TempDir dir("loader");
  const CocoDataset dataset(write_images(dir, 12), "memory", dir.path().string());
  DetectionLoader loader(dataset, small_config(2));
  const std::vector<BatchRecord> full = run_epoch(loader, 3);
  const std::vector<BatchRecord> resumed = run_epoch(loader, 3, 2);
  REQUIRE(resumed.size() == 2);
  CHECK(resumed[0] == full[2]);
  CHECK(resumed[1] == full[3]);
  CHECK(run_epoch(loader, 3, 4).empty());
  CHECK_THROWS_AS(loader.start_epoch(3, 5), std::invalid_argument);
}

TEST_CASE("prefetching is bounded and stopping early joins the workers") {
  TempDir dir("loader");
  const CocoDataset dataset(write_images(dir, 30), "memory", dir.path().string());
  LoaderConfig config = small_config(4);
  config.batch_size = 2;
  config.prefetch_batches = 2;
  {
    DetectionLoader loader(dataset, config);
    CHECK_THROWS_AS(loader.next(), std::logic_error);  // no epoch started
    loader.start_epoch(0);
    REQUIRE(loader.next().has_value());
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    // One batch taken: at most prefetch_batches more are prepared, however many workers wait.
    CHECK(loader.stats().images_loaded <= (1 + config.prefetch_batches) * config.batch_size);
    // Abandon the epoch for another: the old workers are joined, the new epoch starts from batch 0.
    loader.start_epoch(1);
    const std::optional<DetectionBatch> first = loader.next();
    REQUIRE(first.has_value());
    CHECK(first->index == 0);
    loader.stop();
    CHECK(!loader.next().has_value());
    loader.start_epoch(2);
    REQUIRE(loader.next().has_value());
  }  // the destructor stops workers that are waiting for the consumer
  CHECK(true);
}

TEST_CASE("unreadable images throw in batch order, naming the file") {
  TempDir dir("loader");
  CocoData data = write_images(dir, 9);
  const auto bytes = read_bytes(dir.file("img3.jpg"));
  dir.write_bytes("img3.jpg", std::vector<unsigned char>(bytes.begin(), bytes.begin() + bytes.size() / 2));
  const CocoDataset dataset(data, "memory", dir.path().string());
  for (int workers : {0, 3}) {
    CAPTURE(workers);
    LoaderConfig config = small_config(workers);
    config.shuffle = false;  // image 3 sits in batch 1
    DetectionLoader loader(dataset, config);
    loader.start_epoch(0);
    REQUIRE(loader.next().has_value());
    CHECK_THROWS_WITH_AS(loader.next(), Contains("img3.jpg: truncated JPEG"), ImageError);
    CHECK(!loader.next().has_value());  // the epoch was stopped
    CHECK(loader.stats().images_skipped == 0);
  }

  // The JSON gives a size that the file does not have.
  CocoData wrong_size = write_images(dir, 2);
  std::swap(wrong_size.images[1].width, wrong_size.images[1].height);
  const CocoDataset mismatched(wrong_size, "sizes.json", dir.path().string());
  DetectionLoader loader(mismatched, small_config(1));
  CHECK_THROWS_WITH_AS(loader.load_sample(1, 0), Contains("img1.jpg: decoded size 46 x 34"), ImageError);
  CHECK_THROWS_WITH_AS(loader.load_sample(1, 0), Contains("given for image id 101 in sizes.json"),
                       ImageError);
}

TEST_CASE("skip_unreadable_images: warned, counted, and the rest delivered identically") {
  TempDir dir("loader");
  CocoData data = write_images(dir, 10);
  const auto bytes = read_bytes(dir.file("img4.png"));
  dir.write_bytes("img4.png", std::vector<unsigned char>(bytes.begin(), bytes.begin() + 40));
  std::remove(dir.file("img7.jpg").c_str());
  const CocoDataset dataset(data, "memory", dir.path().string());

  std::vector<BatchRecord> reference;
  for (int workers : {0, 2, 4}) {
    CAPTURE(workers);
    std::vector<std::string> warnings;
    LoaderConfig config = small_config(workers);
    config.skip_unreadable_images = true;
    config.warn = [&](const std::string& line) { warnings.push_back(line); };  // called one at a time
    DetectionLoader loader(dataset, config);
    int64_t delivered_images = 0;
    std::vector<BatchRecord> records;
    for (int64_t epoch = 0; epoch < 2; ++epoch) {
      loader.start_epoch(epoch);
      while (std::optional<DetectionBatch> batch = loader.next()) {
        delivered_images += batch->size();
        for (const SampleInfo& s : batch->samples)
          CHECK((s.image_index != 4 && s.image_index != 7));
        if (epoch == 0) records.push_back(record(*batch));
      }
    }
    CHECK(delivered_images == 2 * 8);
    const LoaderStats stats = loader.stats();
    CHECK(stats.images_skipped == 4);
    CHECK(stats.skipped_images == std::vector<int64_t>{4, 7});
    CHECK(stats.images_loaded == 16);
    REQUIRE(warnings.size() == 4);
    std::sort(warnings.begin(), warnings.end());
    CHECK(warnings[0].find("img4.png: ") != std::string::npos);
    CHECK(warnings[3].find("img7.jpg: cannot open") != std::string::npos);
    if (reference.empty()) reference = records;
    CHECK(records == reference);
  }

  // A batch whose only image is unreadable is skipped: the epoch goes on with the next one.
  LoaderConfig single = small_config(2);
  single.batch_size = 1;
  single.shuffle = false;
  single.skip_unreadable_images = true;
  single.warn = [](const std::string&) {};
  DetectionLoader loader(dataset, single);
  loader.start_epoch(0);
  std::vector<int64_t> indices;
  while (std::optional<DetectionBatch> batch = loader.next())
    indices.push_back(batch->index);
  CHECK(indices == std::vector<int64_t>{0, 1, 2, 3, 5, 6, 8, 9});
}

TEST_CASE("bad loader configurations name the field") {
  TempDir dir("loader");
  const CocoDataset dataset(write_images(dir, 2), "memory", dir.path().string());
  LoaderConfig config = small_config(1);
  config.batch_size = 0;
  CHECK_THROWS_WITH_AS(DetectionLoader(dataset, config), Contains("batch_size"), std::invalid_argument);
  config = small_config(-1);
  CHECK_THROWS_WITH_AS(DetectionLoader(dataset, config), Contains("num_workers"), std::invalid_argument);
  config = small_config(1);
  config.prefetch_batches = 0;
  CHECK_THROWS_WITH_AS(DetectionLoader(dataset, config), Contains("prefetch_batches"), std::invalid_argument);
  config = small_config(1);
  config.transform.short_edge_sizes.clear();
  CHECK_THROWS_WITH_AS(DetectionLoader(dataset, config), Contains("short_edge_sizes"), std::invalid_argument);
  CHECK(sample_seed(1, 0, 0) != sample_seed(1, 0, 1));
  CHECK(sample_seed(1, 0, 1) != sample_seed(1, 1, 0));
  CHECK(sample_seed(1, 2, 3) != sample_seed(2, 2, 3));
}

TEST_CASE("throughput (printed, not asserted)") {
  TempDir dir("loader");
  // 24 JPEGs of 256 x 192, resized to a short edge of 192-256: the size class of the built-in dataset.
  const CocoDataset dataset(write_images(dir, 24, 256, 192), "memory", dir.path().string());
  for (int workers : {0, 1, 2}) {
    LoaderConfig config = small_config(workers);
    config.batch_size = 4;
    config.prefetch_batches = 4;
    config.transform.short_edge_sizes = {192, 224, 256};
    config.transform.max_long_edge = 400;
    DetectionLoader loader(dataset, config);
    const auto start = std::chrono::steady_clock::now();
    int64_t batches = 0;
    for (int64_t epoch = 0; epoch < 2; ++epoch) {
      loader.start_epoch(epoch);
      while (loader.next())
        ++batches;
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    CHECK(batches == 12);
    MESSAGE("loader: " << workers << " workers, " << batches << " batches of 4 in " << seconds << " s: "
                       << batches / seconds << " batches/s, " << 4 * batches / seconds << " images/s");
  }
}

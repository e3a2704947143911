#include "apps/common/detector_usage.h"

#include <nlohmann/json.hpp>
#include <stdexcept>

namespace icd::app {
namespace {

constexpr const char* kClassNames = "class_names";
constexpr const char* kTestTransform = "test_transform";

nlohmann::json transform_to_json(const TransformConfig& t) {
  return {{"short_edge_sizes", t.short_edge_sizes},
          {"max_long_edge", t.max_long_edge},
          {"flip_probability", t.flip_probability},
          {"size_divisibility", t.size_divisibility},
          {"channel_order", t.normalize.order == ChannelOrder::bgr ? "bgr" : "rgb"},
          {"mean", t.normalize.mean},
          {"std", t.normalize.std}};
}

TransformConfig transform_from_json(const nlohmann::json& j) {
  TransformConfig t;
  t.short_edge_sizes = j.at("short_edge_sizes").get<std::vector<int>>();
  t.max_long_edge = j.at("max_long_edge").get<int>();
  t.flip_probability = j.at("flip_probability").get<double>();
  t.size_divisibility = j.at("size_divisibility").get<int>();
  const std::string order = j.at("channel_order").get<std::string>();
  if (order != "bgr" && order != "rgb")
    throw std::invalid_argument("channel_order is \"" + order + "\" (bgr or rgb)");
  t.normalize.order = order == "bgr" ? ChannelOrder::bgr : ChannelOrder::rgb;
  t.normalize.mean = j.at("mean").get<std::array<float, 3>>();
  t.normalize.std = j.at("std").get<std::array<float, 3>>();
  t.validate();
  return t;
}

}  // namespace

std::map<std::string, std::string> usage_metadata(const DetectorUsage& usage) {
  return {{kClassNames, nlohmann::json(usage.class_names).dump()},
          {kTestTransform, transform_to_json(usage.test_transform).dump()}};
}

std::optional<DetectorUsage> read_usage(const std::map<std::string, std::string>& metadata,
                                        const std::string& source) {
  auto names = metadata.find(kClassNames);
  auto transform = metadata.find(kTestTransform);
  if (names == metadata.end() && transform == metadata.end()) return std::nullopt;
  if (names == metadata.end() || transform == metadata.end())
    throw std::runtime_error("checkpoint " + source + " has only one of the metadata entries " + kClassNames +
                             " and " + kTestTransform);
  DetectorUsage usage;
  auto parse = [&](const char* field, const std::string& text, auto&& read) {
    try {
      read(nlohmann::json::parse(text));
    } catch (const std::exception& e) {
      throw std::runtime_error("checkpoint " + source + ": bad metadata " + field + ": " + e.what());
    }
  };
  parse(kClassNames, names->second,
        [&](const nlohmann::json& j) { usage.class_names = j.get<std::vector<std::string>>(); });
  parse(kTestTransform, transform->second,
        [&](const nlohmann::json& j) { usage.test_transform = transform_from_json(j); });
  return usage;
}

}  // namespace icd::app

// Reads the JSON parity fixtures written by tools/*.py (layout in tools/fixture_io.py).
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "engine/tensor.h"

namespace icd::testing {

class FixtureCase {
 public:
  FixtureCase(std::string name, nlohmann::json json) : name_(std::move(name)), json_(std::move(json)) {}
  const std::string& name() const { return name_; }
  // The named tensor, converted to `dtype`; throws naming the case and tensor if absent.
  Tensor tensor(const std::string& key, DType dtype = DType::f64) const;
  bool has_tensor(const std::string& key) const;
  const nlohmann::json& params() const { return json_.at("params"); }

 private:
  std::string name_;
  nlohmann::json json_;
};

class Fixture {
 public:
  // `relative_path` is under tests/fixtures/.
  explicit Fixture(const std::string& relative_path);
  FixtureCase operator[](const std::string& case_name) const;
  std::vector<std::string> case_names() const;

 private:
  std::string path_;
  nlohmann::json json_;
};

// Largest |x| over all elements: the scale of a tensor for comparisons relative to its largest value.
double max_abs(const Tensor& t);

// Largest |a - b| / (atol_scale + |b|) over all elements, after checking shapes match (a: ours, b: expected).
double max_relative_error(const Tensor& actual, const Tensor& expected, double atol_scale = 1e-6);

}  // namespace icd::testing

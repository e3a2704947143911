#include "fixture.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <stdexcept>

#include "engine/factory.h"

namespace icd::testing {

Fixture::Fixture(const std::string& relative_path)
    : path_(std::string(ICD_FIXTURE_DIR) + "/" + relative_path) {
  std::ifstream in(path_);
  if (!in) throw std::runtime_error("fixture " + path_ + " not found (regenerate it with the tools/ script)");
  json_ = nlohmann::json::parse(in);
}

FixtureCase Fixture::operator[](const std::string& case_name) const {
  const auto& cases = json_.at("cases");
  if (!cases.contains(case_name))
    throw std::runtime_error("fixture " + path_ + " has no case '" + case_name + "'");
  return FixtureCase(case_name, cases.at(case_name));
}

std::vector<std::string> Fixture::case_names() const {
  std::vector<std::string> names;
  for (const auto& [name, value] : json_.at("cases").items())
    names.push_back(name);
  return names;
}

bool FixtureCase::has_tensor(const std::string& key) const {
  return json_.at("tensors").contains(key);
}

Tensor FixtureCase::tensor(const std::string& key, DType dtype) const {
  if (!has_tensor(key)) throw std::runtime_error("fixture case '" + name_ + "' has no tensor '" + key + "'");
  const auto& entry = json_.at("tensors").at(key);
  Shape shape = entry.at("shape").get<Shape>();
  std::vector<double> data = entry.at("data").get<std::vector<double>>();
  return from_vector(data, shape, {dtype});
}

double max_abs(const Tensor& t) {
  double m = 0;
  for (double v : t.to_vector<double>()) m = std::max(m, std::abs(v));
  return m;
}

double max_relative_error(const Tensor& actual, const Tensor& expected, double atol_scale) {
  if (actual.shape() != expected.shape())
    throw std::runtime_error("shape mismatch: " + shape_str(actual.shape()) + " vs expected " +
                             shape_str(expected.shape()));
  std::vector<double> a = actual.to_vector<double>(), b = expected.to_vector<double>();
  double worst = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    double err = std::abs(a[i] - b[i]) / (atol_scale + std::abs(b[i]));
    if (!(err <= worst)) worst = std::isnan(err) ? INFINITY : err;  // NaN counts as the worst error
  }
  return worst;
}

}  // namespace icd::testing

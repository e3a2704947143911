// Line plots of a run's metrics (metrics.jsonl) as PNG pictures: the training losses against the step,
// so a person can see at a glance whether a run learned, diverged or stalled.
#pragma once
#include <string>
#include <vector>

#include "apps/common/run_folder.h"

namespace icd::app {

// Plots every numeric field of `records` whose name is in `series` against "step" (a moving average of
// `smooth` points, 1 = raw) and writes the picture to `png_path`. Missing fields are skipped; throws if no
// record has any of them.
void plot_metrics(const std::vector<nlohmann::json>& records, const std::vector<std::string>& series,
                  const std::string& title, const std::string& png_path, int smooth = 10);

}  // namespace icd::app

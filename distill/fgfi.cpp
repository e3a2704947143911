// The mask is built from engine ops (IoU, max, compare), so it runs wherever the anchors live; the loss
// is a masked squared error per level, summed, and divided by N_p without reading N_p back to the host.
#include "distill/fgfi.h"

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "engine/autograd.h"
#include "engine/factory.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/reduce.h"
#include "engine/ops/shape.h"
#include "engine/transfer.h"
#include "models/box_coder.h"

namespace icd {
namespace {

void check_psi(const char* op, double psi) {
  // psi = 1 would ask for IoU > M, which no anchor has.
  if (!(psi >= 0.0 && psi < 1.0))
    throw std::invalid_argument(std::string(op) + ": psi must be in [0, 1), got " + std::to_string(psi));
}

// Cells per level of `anchors`, after checking that they tile A anchors per cell and add up to its boxes.
std::vector<int64_t> cells_per_level(const char* op, const Anchors& anchors, int64_t anchors_per_cell) {
  const std::string prefix = std::string(op) + ": ";
  if (anchors_per_cell <= 0)
    throw std::invalid_argument(prefix + "anchors_per_cell must be positive, got " +
                                std::to_string(anchors_per_cell));
  if (!anchors.boxes.defined() || anchors.boxes.dim() != 2 || anchors.boxes.size(1) != 4)
    throw std::invalid_argument(
        prefix + "anchors.boxes must be [R, 4], got " +
        (anchors.boxes.defined() ? shape_str(anchors.boxes.shape()) : "an undefined tensor"));
  std::vector<int64_t> cells;
  int64_t total = 0;
  for (std::size_t l = 0; l < anchors.num_per_level.size(); ++l) {
    const int64_t n = anchors.num_per_level[l];
    if (n <= 0 || n % anchors_per_cell != 0)
      throw std::invalid_argument(prefix + "level " + std::to_string(l) + " has " + std::to_string(n) +
                                  " anchors, not a positive multiple of " + std::to_string(anchors_per_cell) +
                                  " per cell");
    cells.push_back(n / anchors_per_cell);
    total += n;
  }
  if (total != anchors.boxes.size(0))
    throw std::invalid_argument(prefix + "anchors.num_per_level adds up to " + std::to_string(total) +
                                " but anchors.boxes has " + std::to_string(anchors.boxes.size(0)) + " rows");
  return cells;
}

}  // namespace

Tensor fgfi_imitation_mask(const Anchors& anchors, int64_t anchors_per_cell,
                           const std::vector<Tensor>& gt_boxes, double psi) {
  const char* op = "fgfi_imitation_mask";
  check_psi(op, psi);
  const std::vector<int64_t> cells = cells_per_level(op, anchors, anchors_per_cell);
  int64_t num_cells = 0;
  for (int64_t c : cells)
    num_cells += c;
  const Tensor boxes = anchors.boxes.detach();
  for (std::size_t b = 0; b < gt_boxes.size(); ++b) {
    const Tensor& g = gt_boxes[b];
    if (!g.defined() || g.dim() != 2 || g.size(1) != 4 || g.dtype() != boxes.dtype())
      throw std::invalid_argument(
          std::string(op) + ": image " + std::to_string(b) + ": ground-truth boxes must be [G, 4] of dtype " +
          dtype_name(boxes.dtype()) + " (the anchors'), got " +
          (g.defined() ? std::string(dtype_name(g.dtype())) + " " + shape_str(g.shape())
                       : "an undefined tensor"));
  }

  NoGradGuard no_grad;
  std::vector<Tensor> masks;
  for (const Tensor& image_boxes : gt_boxes) {
    const int64_t num_boxes = image_boxes.size(0);
    if (num_boxes == 0) {
      masks.push_back(zeros({num_cells}, boxes.options()));
      continue;
    }
    const Tensor iou = pairwise_iou(to_device(image_boxes.detach(), boxes.device()), boxes);  // [G, R]
    const Tensor threshold = mul(amax(iou, {1}, true), psi);                                  // [G, 1]
    const Tensor selected = gt(iou, threshold);
    // Union over the boxes and over the A anchors of each cell; anchors are (level, y, x, a)-ordered, so
    // the cells of all levels follow one another in rows of A.
    masks.push_back(amax(selected.view({num_boxes, num_cells, anchors_per_cell}), {0, 2}));
  }
  if (masks.empty()) return zeros({0, num_cells}, boxes.options());
  return stack(masks, 0);
}

FgfiDistiller::FgfiDistiller(const FgfiConfig& config, Generator& gen) : config_(config) {
  if (config.num_levels <= 0 || config.student_channels <= 0 || config.teacher_channels <= 0 ||
      config.anchors_per_cell <= 0)
    throw std::invalid_argument(
        "FgfiDistiller: num_levels, anchors_per_cell and channel counts must be positive");
  if (config.adapter_kernel <= 0 || config.adapter_kernel % 2 == 0)
    throw std::invalid_argument("FgfiDistiller: adapter_kernel must be odd and positive, got " +
                                std::to_string(config.adapter_kernel));
  check_psi("FgfiDistiller", config.psi);
  if (!std::isfinite(config.weight))
    throw std::invalid_argument("FgfiDistiller: weight must be finite, got " + std::to_string(config.weight));
  auto dict = register_module("adapters", std::make_shared<ModuleDict>());
  for (int64_t l = 0; l < config.num_levels; ++l)
    adapters_.push_back(
        dict->add(std::to_string(l),
                  std::make_shared<Conv2d>(config.student_channels, config.teacher_channels,
                                           config.adapter_kernel, gen, 1, config.adapter_kernel / 2)));
}

Tensor FgfiDistiller::forward(const std::vector<Tensor>& student, const std::vector<Tensor>& teacher,
                              const Anchors& anchors, const std::vector<Tensor>& gt_boxes) {
  const std::string op = "FgfiDistiller: ";
  const std::size_t n = adapters_.size();
  if (student.size() != n || teacher.size() != n)
    throw std::invalid_argument(op + "expected " + std::to_string(n) + " levels, got " +
                                std::to_string(student.size()) + " student and " +
                                std::to_string(teacher.size()) + " teacher maps");
  if (anchors.num_per_level.size() != n)
    throw std::invalid_argument(op + "expected anchors for " + std::to_string(n) + " levels, got " +
                                std::to_string(anchors.num_per_level.size()));
  int64_t batch = 0;
  for (std::size_t l = 0; l < n; ++l) {
    const std::string level = "level " + std::to_string(l) + ": ";
    const Tensor& s = student[l];
    if (!s.defined() || s.dim() != 4 || s.size(1) != config_.student_channels ||
        (l > 0 && (s.size(0) != batch || s.dtype() != student[0].dtype())))
      throw std::invalid_argument(
          op + level + "the student map must be [B, " + std::to_string(config_.student_channels) + ", H, W]" +
          (l > 0 ? " of dtype " + std::string(dtype_name(student[0].dtype())) +
                       " with B = " + std::to_string(batch) + " as on level 0"
                 : "") +
          ", got " +
          (s.defined() ? std::string(dtype_name(s.dtype())) + " " + shape_str(s.shape())
                       : "an undefined tensor"));
    batch = s.size(0);
    const Shape expected{batch, config_.teacher_channels, s.size(2), s.size(3)};
    const Tensor& t = teacher[l];
    if (!t.defined() || t.shape() != expected || t.dtype() != s.dtype())
      throw std::invalid_argument(op + level + "the teacher map must be " + dtype_name(s.dtype()) + " " +
                                  shape_str(expected) + " to match the student's, got " +
                                  (t.defined()
                                       ? std::string(dtype_name(t.dtype())) + " " + shape_str(t.shape())
                                       : "an undefined tensor"));
    const int64_t needed = s.size(2) * s.size(3) * config_.anchors_per_cell;
    if (anchors.num_per_level[l] != needed)
      throw std::invalid_argument(
          op + level + "got " + std::to_string(anchors.num_per_level[l]) + " anchors, but a " +
          std::to_string(s.size(2)) + "x" + std::to_string(s.size(3)) + " map with " +
          std::to_string(config_.anchors_per_cell) + " anchors per cell has " + std::to_string(needed));
  }
  if (static_cast<int64_t>(gt_boxes.size()) != batch)
    throw std::invalid_argument(op + "got ground-truth boxes for " + std::to_string(gt_boxes.size()) +
                                " images, feature maps for " + std::to_string(batch));
  if (!anchors.boxes.defined() || anchors.boxes.dtype() != student[0].dtype())
    throw std::invalid_argument(
        op + "anchors.boxes must have the maps' dtype " + dtype_name(student[0].dtype()) +
        (anchors.boxes.defined() ? ", got " + std::string(dtype_name(anchors.boxes.dtype()))
                                 : ", got an undefined tensor"));

  // The mask is built where the maps live, as the loss that uses it.
  const Anchors placed{to_device(anchors.boxes.detach(), student[0].device()), anchors.num_per_level};
  const Tensor mask = fgfi_imitation_mask(placed, config_.anchors_per_cell, gt_boxes, config_.psi);
  std::vector<int64_t> cells;
  for (const Tensor& s : student)
    cells.push_back(s.size(2) * s.size(3));
  const std::vector<Tensor> level_masks = split(mask, cells, 1);

  Tensor total;
  for (std::size_t l = 0; l < n; ++l) {
    const Tensor diff = sub(adapters_[l]->forward(student[l]), teacher[l].detach());
    const Tensor cell_mask = level_masks[l].reshape({batch, 1, student[l].size(2), student[l].size(3)});
    const Tensor level = sum(mul(mul(diff, diff), cell_mask));
    total = total.defined() ? add(total, level) : level;
  }
  // Dividing by max(N_p, 1) leaves the N_p = 0 case at its masked sum, 0, and keeps N_p on the device
  // (reading it back would stall a GPU every iteration).
  const Tensor n_p = clamp(sum(mask), 1.0, std::numeric_limits<double>::infinity());
  return mul(div(total, n_p), config_.weight / 2.0);
}

}  // namespace icd

// Pictures of what ICD asks the teacher: for a few validation images and their ground-truth instances,
// where the teacher's attention goes (spec/icd.md section 2: the decoder's softmax over every position of
// P3..P7, averaged over the heads).
//
// One panel per instance: the image dimmed, the attention blended over it in red-yellow, the instance's
// box and class name drawn. A level-l cell covers stride_l^2 pixels, so its probability is spread evenly
// over them (probability / stride_l^2 per pixel) and the levels are summed: the map is a density over the
// image whose integral is 1, comparable between levels. Each panel is scaled to its own maximum. The
// caption under each panel gives that instance's attention specificity (distill/attention_specificity.h),
// the line above the rows the mean over the drawn instances, own box against the other boxes.
#pragma once
#include <string>

#include "datasets/coco_dataset.h"
#include "datasets/transforms.h"
#include "distill/objectives.h"
#include "models/retinanet.h"

namespace icd::app {

// Draws up to `max_instances` instances from each of the first `num_images` images of `dataset` that have
// at least two boxes (one row per image) and writes the PNG to `png_path`.
void draw_attention_pictures(InstanceConditionalDistiller& distiller, RetinaNet& teacher,
                             const CocoDataset& dataset, const TransformConfig& transform,
                             const std::string& png_path, int num_images = 3, int max_instances = 4);

// The attention specificity of every ground-truth instance of the first `num_images` images of `dataset`
// with at least one box (each image alone, the test transform without flip, the exact box centres as
// reference points: the queries the pictures show).
AttentionSpecificity validation_specificity(InstanceConditionalDistiller& distiller, RetinaNet& teacher,
                                            const CocoDataset& dataset, const TransformConfig& transform,
                                            int num_images = 50);

}  // namespace icd::app

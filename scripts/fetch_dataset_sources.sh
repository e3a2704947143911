#!/usr/bin/env bash
# Caches what apps/make_dataset composes the built-in dataset from, outside git. Idempotent: returns at
# once when everything is already there. Called by scripts/setup.sh; safe to run by hand.
#
#   ${ICD_CACHE:-~/.cache/icd}/dataset-sources/fashion-mnist/   the four Fashion-MNIST IDX files, unzipped,
#       from Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist/; 60k train, 10k test)
#   ${ICD_CACHE:-~/.cache/icd}/dataset-sources/backgrounds/     real colour photos, named <package>-<file>,
#       from the .debs of opencv-doc, python3-skimage, darknet and python3-sklearn. The .debs are fetched
#       with `apt-get download` and unpacked with `dpkg -x` into a temporary folder: nothing is installed.
#
# The photos are chosen by hand (list below): colour photographs and paintings whose short side is at
# least 300 pixels. Left out: grey calibration and stereo shots (left01..right14, basketball, box, ...),
# synthetic drawings and logos (pic1-6, ml, HappyFish, opencv-logo, color, detect_blob), text (sudoku,
# text_*, imageText*, page), tiny test files (block, palette_*, foo3x5x4indexed), the second image of every
# stereo or before/after pair (aero3, aloeR, ela_modified, graf3, leuvenB, right, rubberwhale2,
# motorcycle_right), so that no scene can fall into both the train and the val split.
# A `.complete` marker, written last, tells the builder (and this script) that the folder is whole.
set -euo pipefail

cache=${ICD_CACHE:-$HOME/.cache/icd}
sources=$cache/dataset-sources
fashion_dir=$sources/fashion-mnist
backgrounds_dir=$sources/backgrounds
fashion_system_dir=/usr/share/datasets/fashion-mnist
fashion_files=(train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte)

# package, folder inside the package, photos
opencv_dir=usr/share/doc/opencv-doc/examples/data
opencv_photos=(aero1.jpg aloeL.jpg apple.jpg baboon.jpg board.jpg building.jpg butterfly.jpg chicky_512.png
               ela_original.jpg fruits.jpg graf1.png home.jpg left.jpg leuvenA.jpg licenseplate_motion.jpg
               messi5.jpg orange.jpg rubberwhale1.png squirrel_cls.jpg starry_night.jpg stuff.jpg)
skimage_dir=usr/lib/python3/dist-packages/skimage/data
skimage_photos=(astronaut.png chelsea.png coffee.png hubble_deep_field.jpg ihc.png motorcycle_left.png
                retina.jpg rocket.jpg)
darknet_dir=usr/share/darknet/data
darknet_photos=(dog.jpg eagle.jpg giraffe.jpg horses.jpg kite.jpg person.jpg scream.jpg)
sklearn_dir=usr/lib/python3/dist-packages/sklearn/datasets/images
sklearn_photos=(china.jpg flower.jpg)

photo_count=$((${#opencv_photos[@]} + ${#skimage_photos[@]} + ${#darknet_photos[@]} + ${#sklearn_photos[@]}))

fashion_complete() {
  [[ -f $fashion_dir/.complete ]] || return 1
  for file in "${fashion_files[@]}"; do
    [[ -s $fashion_dir/$file ]] || return 1
  done
}

backgrounds_complete() {
  [[ -f $backgrounds_dir/.complete ]] || return 1
  [[ $(find "$backgrounds_dir" -maxdepth 1 -type f ! -name '.*' | wc -l) -eq $photo_count ]]
}

if fashion_complete && backgrounds_complete; then
  echo "fetch_dataset_sources: cached in $sources"
  exit 0
fi

as_root=()
if [[ $(id -u) -ne 0 ]]; then as_root=(sudo); fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
lists_updated=0

apt_update_once() {
  if ((lists_updated == 0)); then
    "${as_root[@]}" apt-get update -qq
    lists_updated=1
  fi
}

# Downloads one .deb into $work and unpacks it into $work/root.
download_and_unpack() {
  local package=$1
  echo "fetch_dataset_sources: apt-get download $package"
  if ! (cd "$work" && apt-get download -qq "$package" >"$work/apt.log" 2>&1); then
    # A fresh machine may have no package lists yet.
    apt_update_once
    if ! (cd "$work" && apt-get download -qq "$package" >"$work/apt.log" 2>&1); then
      cat "$work/apt.log" >&2
      echo "fetch_dataset_sources: apt-get download $package failed" >&2
      exit 1
    fi
  fi
  dpkg -x "$work/${package}"_*.deb "$work/root"
  rm -f "$work/${package}"_*.deb
}

fetch_fashion() {
  local from=$fashion_system_dir
  if [[ ! -f $from/train-images-idx3-ubyte.gz ]]; then
    download_and_unpack dataset-fashion-mnist
    from=$work/root$fashion_system_dir
  fi
  rm -rf "$fashion_dir"
  mkdir -p "$fashion_dir"
  for file in "${fashion_files[@]}"; do
    gunzip -c "$from/$file.gz" >"$fashion_dir/$file.tmp"
    mv "$fashion_dir/$file.tmp" "$fashion_dir/$file"
  done
  touch "$fashion_dir/.complete"
  echo "fetch_dataset_sources: Fashion-MNIST in $fashion_dir"
}

# copy_photos PACKAGE-LABEL FOLDER PHOTO...
copy_photos() {
  local label=$1 folder=$2
  shift 2
  for photo in "$@"; do
    if [[ ! -s $work/root/$folder/$photo ]]; then
      echo "fetch_dataset_sources: $photo is missing from $label's .deb ($folder)" >&2
      exit 1
    fi
    cp "$work/root/$folder/$photo" "$backgrounds_dir/$label-$photo"
  done
}

fetch_backgrounds() {
  local package
  for package in opencv-doc python3-skimage darknet python3-sklearn; do
    download_and_unpack "$package"
  done
  rm -rf "$backgrounds_dir"
  mkdir -p "$backgrounds_dir"
  copy_photos opencv "$opencv_dir" "${opencv_photos[@]}"
  copy_photos skimage "$skimage_dir" "${skimage_photos[@]}"
  copy_photos darknet "$darknet_dir" "${darknet_photos[@]}"
  copy_photos sklearn "$sklearn_dir" "${sklearn_photos[@]}"
  touch "$backgrounds_dir/.complete"
  echo "fetch_dataset_sources: $photo_count photos in $backgrounds_dir"
}

fashion_complete || fetch_fashion
backgrounds_complete || fetch_backgrounds

// kd/image_folder.h: torchvision's ImageFolder layout as a kdtrain dataset.
//
//   <dir>/train/<class>/**/*.png|jpg|jpeg|bmp   (extensions case-insensitive)
//   <dir>/test/<class>/**/*                     (test may lack a class, not add one)
//
// As torchvision: classes are the sub-folders of train/ sorted byte-wise
// (label = index in that order); a class's files are found recursively and
// ordered by (folder path, file name); other files are skipped. Decoded with
// stb_image: grey (and grey + alpha) images give 1 channel, RGB and RGBA give 3
// (alpha dropped); a set holding both becomes 3-channel, grey repeated.
// All images must be one size unless image_h x image_w is given, which
// resizes every image with stb_image_resize (Catmull-Rom up, Mitchell down).
//
// The decoded set is cached beside the data as .npy files in
// <dir>/.kdtrain-cache-<checksum>/ (the load_npy_dir layout), keyed by a
// checksum of the listing (paths, sizes, modification times) and the image
// size; any change to the files picks a new cache, and an unreadable cache is
// rebuilt. One cache is kept per folder: writing one removes the others
// (another listing's, or another image size's).
#pragma once

#include <string>
#include <vector>

#include "kd/data.h"

namespace kd {

struct ImageFolder {
  TrainTest data;          // class_names set; the *_images / *_labels names are <dir>/train, <dir>/test;
                           // data.note says why the cache could not be written, if it could not
  std::string cache_dir;   // <dir>/.kdtrain-cache-<checksum>
  bool cache_hit = false;  // data was read from cache_dir, nothing decoded
};

// Reads <dir> as above with options.image_h / image_w / threads. Throws
// kd::Error naming the file or folder for: no train/ or test/ folder, no
// class folders, a class folder without images, a test class missing from
// train/, more than 256 classes, an unreadable or undecodable image, images
// of different sizes without an image size.
ImageFolder load_image_folder(const std::string& dir, const DataOptions& options);

}  // namespace kd

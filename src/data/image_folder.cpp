// ImageFolder reading: listing, parallel stb_image decoding, the .npy cache
// (see kd/image_folder.h).
#include "kd/image_folder.h"

#include <stb/stb_image.h>
#include <stb/stb_image_resize.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <climits>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <thread>

#include "kd/error.h"
#include "kd/npy.h"

namespace fs = std::filesystem;

namespace kd {
namespace {

// Bump when decoding changes what a listing turns into, so old caches are not reused.
constexpr char kCacheVersion[] = "kdtrain-image-folder-v1";
constexpr char kCachePrefix[] = ".kdtrain-cache-";

// One image file of the listing; its class is its label.
struct ImageFile {
  fs::path path;
  uint8_t label = 0;
  uintmax_t size = 0;
  int64_t mtime = 0;  // file-clock ticks: only ever compared with itself
};

// A decoded image: (h, w, c) interleaved as stb gives it, c = 1 or 3.
struct Decoded {
  int h = 0, w = 0, c = 0;
  std::vector<uint8_t> hwc;
};

bool is_image_name(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char ch) { return char(std::tolower(ch)); });
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".bmp";
}

// Sub-folder names of `dir`, sorted byte-wise as Python's sorted() sorts them.
std::vector<std::string> class_folders(const fs::path& dir) {
  std::vector<std::string> names;
  for (const fs::directory_entry& e : fs::directory_iterator(dir))
    if (e.is_directory()) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

// The images of one class folder in torchvision's order: sorted os.walk
// (folders by path), then each folder's files by name.
std::vector<ImageFile> class_images(const fs::path& class_dir, uint8_t label) {
  std::vector<ImageFile> files;
  for (const fs::directory_entry& e :
       fs::recursive_directory_iterator(class_dir, fs::directory_options::follow_directory_symlink)) {
    if (!e.is_regular_file() || !is_image_name(e.path())) continue;
    ImageFile f;
    f.path = e.path();
    f.label = label;
    f.size = e.file_size();
    f.mtime = int64_t(e.last_write_time().time_since_epoch().count());
    files.push_back(std::move(f));
  }
  std::sort(files.begin(), files.end(), [](const ImageFile& a, const ImageFile& b) {
    const std::string da = a.path.parent_path().string(), db = b.path.parent_path().string();
    return da != db ? da < db : a.path.filename().string() < b.path.filename().string();
  });
  if (files.empty())
    fail(class_dir.string() +
         ": class folder holds no images (.png, .jpg, .jpeg, .bmp); add some or remove the folder");
  return files;
}

// Listing of <dir>/train and <dir>/test with the training classes.
struct Listing {
  std::vector<std::string> classes;
  std::vector<ImageFile> train, test;
};

Listing list_folder(const fs::path& root) {
  const fs::path train_dir = root / "train", test_dir = root / "test";
  std::error_code ec;
  if (!fs::is_directory(train_dir, ec))
    fail(train_dir.string() +
         ": missing folder: an image folder dataset needs train/<class>/*.png|jpg|bmp and "
         "test/<class>/*");
  if (!fs::is_directory(test_dir, ec))
    fail(test_dir.string() + ": missing folder: an image folder dataset needs test/<class>/* beside train/");
  Listing l;
  try {
    l.classes = class_folders(train_dir);
    if (l.classes.empty())
      fail(train_dir.string() + ": no class folders: expected train/<class>/*.png|jpg|bmp, one folder per class");
    if (l.classes.size() > 256)
      fail(train_dir.string() + ": " + std::to_string(l.classes.size()) +
           " class folders; kdtrain holds labels as u8, so at most 256 classes");
    std::map<std::string, uint8_t> label_of;
    for (size_t i = 0; i < l.classes.size(); ++i) {
      label_of[l.classes[i]] = uint8_t(i);
      const std::vector<ImageFile> files = class_images(train_dir / l.classes[i], uint8_t(i));
      l.train.insert(l.train.end(), files.begin(), files.end());
    }
    for (const std::string& name : class_folders(test_dir)) {
      const auto it = label_of.find(name);
      if (it == label_of.end())
        fail((test_dir / name).string() + ": test class '" + name + "' has no folder in " + train_dir.string() +
             "; the model can only learn the training classes");
      const std::vector<ImageFile> files = class_images(test_dir / name, it->second);
      l.test.insert(l.test.end(), files.begin(), files.end());
    }
  } catch (const fs::filesystem_error& e) {
    fail(e.path1().string() + ": cannot list the image folder: " + e.code().message());
  }
  if (l.test.empty()) fail(test_dir.string() + ": no class folders: expected test/<class>/*.png|jpg|bmp");
  return l;
}

// FNV-1a over everything that decides the decoded bytes.
uint64_t listing_checksum(const Listing& l, const fs::path& root, const DataOptions& options) {
  uint64_t h = 0xcbf29ce484222325ull;
  auto mix = [&](const void* p, size_t n) {
    for (size_t i = 0; i < n; ++i) h = (h ^ static_cast<const uint8_t*>(p)[i]) * 0x100000001b3ull;
  };
  auto mix_int = [&](int64_t v) { mix(&v, sizeof v); };
  mix(kCacheVersion, sizeof kCacheVersion);
  mix_int(options.image_h);
  mix_int(options.image_w);
  for (const std::vector<ImageFile>* split : {&l.train, &l.test}) {
    mix_int(int64_t(split->size()));
    for (const ImageFile& f : *split) {
      const std::string rel = f.path.lexically_relative(root).generic_string();
      mix(rel.c_str(), rel.size() + 1);
      mix_int(f.label);
      mix_int(int64_t(f.size));
      mix_int(f.mtime);
    }
  }
  return h;
}

Decoded decode(const ImageFile& f, const DataOptions& options) {
  const std::vector<uint8_t> bytes = read_file_maybe_gzip(f.path.string());
  if (bytes.size() > size_t(INT_MAX)) fail(f.path.string() + ": image file too large to decode (over 2 GiB)");
  const int len = int(bytes.size());
  int w = 0, h = 0, file_channels = 0;
  if (!stbi_info_from_memory(bytes.data(), len, &w, &h, &file_channels))
    fail(f.path.string() + ": cannot decode image (" + stbi_failure_reason() + "): not a PNG, JPEG or BMP?");
  // Grey and grey + alpha give 1 channel, RGB and RGBA 3: stb drops the alpha.
  const int c = file_channels <= 2 ? 1 : 3;
  const std::unique_ptr<stbi_uc, void (*)(void*)> pixels(
      stbi_load_from_memory(bytes.data(), len, &w, &h, &file_channels, c), stbi_image_free);
  if (!pixels) fail(f.path.string() + ": cannot decode image (" + stbi_failure_reason() + "): truncated or corrupt?");
  Decoded d{h, w, c, {}};
  const bool resize = options.image_h > 0 && (h != options.image_h || w != options.image_w);
  if (!resize) {
    d.hwc.assign(pixels.get(), pixels.get() + size_t(h) * w * c);
    return d;
  }
  d.h = options.image_h;
  d.w = options.image_w;
  d.hwc.resize(size_t(d.h) * d.w * c);
  if (!stbir_resize_uint8(pixels.get(), w, h, 0, d.hwc.data(), d.w, d.h, 0, c))
    fail(f.path.string() + ": cannot resize the " + std::to_string(w) + "x" + std::to_string(h) + " image to " +
         std::to_string(d.w) + "x" + std::to_string(d.h) + " (out of memory?)");
  return d;
}

// Decodes every file on `threads` threads. Files are claimed in order, so
// when several fail, every file before the first failure was decoded and the
// error reported is always that of the first failing file.
std::vector<Decoded> decode_all(const std::vector<const ImageFile*>& files, const DataOptions& options) {
  std::vector<Decoded> out(files.size());
  std::vector<std::string> errors(files.size());
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  auto work = [&] {
    while (!failed) {
      const size_t i = next++;
      if (i >= files.size()) return;
      try {
        out[i] = decode(*files[i], options);
      } catch (const Error& e) {
        errors[i] = e.what();
        failed = true;
      } catch (const std::bad_alloc&) {
        errors[i] = files[i]->path.string() + ": out of memory while decoding";
        failed = true;
      }
    }
  };
  const unsigned hardware = std::max(1u, std::thread::hardware_concurrency());
  const size_t count = std::min(files.size(), size_t(options.threads > 0 ? unsigned(options.threads) : hardware));
  std::vector<std::thread> pool;
  for (size_t t = 1; t < count; ++t) pool.emplace_back(work);
  work();
  for (std::thread& t : pool) t.join();
  for (const std::string& e : errors)
    if (!e.empty()) fail(e);
  return out;
}

// Decodes the listing into (n, c, h, w) datasets: one size for every image
// (checked), 3 channels when any image has colour.
TrainTest decode_listing(const Listing& l, const DataOptions& options) {
  std::vector<const ImageFile*> files;
  for (const std::vector<ImageFile>* split : {&l.train, &l.test})
    for (const ImageFile& f : *split) files.push_back(&f);
  std::vector<Decoded> images = decode_all(files, options);

  int c = 1;
  for (size_t i = 0; i < images.size(); ++i) {
    c = std::max(c, images[i].c);
    if (images[i].h != images[0].h || images[i].w != images[0].w)
      fail(files[i]->path.string() + ": image is " + std::to_string(images[i].h) + "x" + std::to_string(images[i].w) +
           " (HxW) but " + files[0]->path.string() + " is " + std::to_string(images[0].h) + "x" +
           std::to_string(images[0].w) + "; all images must be one size, or give an image size to resize them to");
  }
  TrainTest t;
  size_t next = 0;
  for (Dataset* d : {&t.train, &t.test}) {
    const std::vector<ImageFile>& split = d == &t.train ? l.train : l.test;
    d->n = int64_t(split.size());
    d->c = c;
    d->h = images[0].h;
    d->w = images[0].w;
    d->num_classes = int(l.classes.size());
    const int64_t plane = d->pixels();
    d->images.resize(size_t(d->n * d->values_per_image()));
    for (int64_t i = 0; i < d->n; ++i, ++next) {
      Decoded& img = images[next];
      // (h, w, img.c) -> (c, h, w); a grey image in a colour set repeats its one channel.
      uint8_t* dst = d->images.data() + i * d->values_per_image();
      for (int k = 0; k < c; ++k)
        for (int64_t p = 0; p < plane; ++p) dst[k * plane + p] = img.hwc[size_t(p * img.c + (img.c == 1 ? 0 : k))];
      std::vector<uint8_t>().swap(img.hwc);  // so the decoded and the final copy are not both held whole
      d->labels.push_back(split[size_t(i)].label);
    }
  }
  return t;
}

// The cached decode, or nothing when the cache is missing, unreadable or does
// not match the listing (then it is rebuilt).
bool read_cache(const fs::path& cache, const Listing& l, TrainTest& t) {
  std::error_code ec;
  if (!fs::is_directory(cache, ec)) return false;
  try {
    t = load_npy_dir(cache.string(), false);
  } catch (const Error&) {
    return false;
  }
  auto labels_match = [](const Dataset& d, const std::vector<ImageFile>& files) {
    return d.labels.size() == files.size() && std::equal(files.begin(), files.end(), d.labels.begin(),
                                                         [](const ImageFile& f, uint8_t y) { return f.label == y; });
  };
  return labels_match(t.train, l.train) && labels_match(t.test, l.test) && t.test.c == t.train.c &&
         t.test.h == t.train.h && t.test.w == t.train.w;
}

// Writes the cache into a temporary folder and renames it into place, so a
// reader sees the whole cache or none; then removes caches of older listings.
// Returns why it could not, or "".
std::string write_cache(const fs::path& cache, const TrainTest& t) {
  const fs::path tmp = cache.string() + ".tmp." + std::to_string(::getpid());
  std::error_code ec;
  try {
    fs::remove_all(tmp, ec);
    fs::create_directory(tmp);
    save_npy_dir(tmp.string(), t);
    fs::rename(tmp, cache);
  } catch (const std::exception& e) {
    fs::remove_all(tmp, ec);
    // Another process may have renamed the same cache into place first.
    return fs::is_directory(cache, ec) ? ""
                                       : cache.string() + ": image cache not written (" + e.what() +
                                             "); the images will be decoded again on the next run";
  }
  try {  // best effort: a cache left behind costs only disk space
    for (const fs::directory_entry& e : fs::directory_iterator(cache.parent_path())) {
      const std::string name = e.path().filename().string();
      const bool old_cache =
          name.rfind(kCachePrefix, 0) == 0 && name.size() == sizeof kCachePrefix - 1 + 16 && e.path() != cache;
      if (old_cache) fs::remove_all(e.path(), ec);
    }
  } catch (const fs::filesystem_error&) {
  }
  return "";
}

}  // namespace

ImageFolder load_image_folder(const std::string& dir, const DataOptions& options) {
  if ((options.image_h > 0) != (options.image_w > 0) || options.image_h < 0 || options.image_w < 0)
    fail("image size " + std::to_string(options.image_h) + "x" + std::to_string(options.image_w) +
         " (HxW): give both sides > 0, or neither");
  const fs::path root(dir);
  const Listing listing = list_folder(root);

  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(listing_checksum(listing, root, options)));
  ImageFolder out;
  out.cache_dir = (root / (std::string(kCachePrefix) + hex)).string();
  out.cache_hit = read_cache(out.cache_dir, listing, out.data);
  if (!out.cache_hit) {
    // A cache folder that could not be read is removed now, before the
    // decode, so that the rename below cannot remove one another process
    // writes meanwhile.
    std::error_code ec;
    fs::remove_all(out.cache_dir, ec);
    out.data = decode_listing(listing, options);
    out.data.note = write_cache(out.cache_dir, out.data);
  }
  // The cache's names would mislead in errors, and its class count depends on
  // the labels seen; the listing decides both.
  out.data.train_images = out.data.train_labels = (root / "train").string();
  out.data.test_images = out.data.test_labels = (root / "test").string();
  out.data.train.num_classes = out.data.test.num_classes = int(listing.classes.size());
  out.data.class_names = listing.classes;
  return out;
}

}  // namespace kd

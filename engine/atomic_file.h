// Writing a file so that a crash, a full disk or a concurrent reader never sees half of it: the bytes
// go to a temporary file in the same folder, which is flushed to disk (fsync) and then renamed over the
// target (rename is atomic within a file system), and the folder is synced so the rename itself
// survives a power cut. On any failure the temporary file is removed and the old target is untouched.
// Checkpoints, images, JSON results and run metadata are all written this way.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>

namespace icd {

class AtomicFileWriter {
 public:
  // Creates the temporary file; throws std::runtime_error "PATH: cannot create TEMP (...)" if it cannot.
  explicit AtomicFileWriter(std::string path);
  ~AtomicFileWriter();  // removes the temporary file unless commit() succeeded
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  void write(const void* data, std::size_t size);
  void commit();  // fsync, rename over the target, fsync the folder

 private:
  std::string path_, temp_;
  int fd_ = -1;
  bool committed_ = false;
};

void write_file_atomically(const std::string& path, std::string_view bytes);

}  // namespace icd

// Atomic file writes: complete files or none, the system's reason when a write fails, and the cleanup a
// signal handler runs before ending the process.
#include "util/atomic_file.h"

#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <string>

#include "test_util.h"

namespace canvas {
namespace {

namespace fs = std::filesystem;

std::string read_text(const fs::path& path) {
  std::ifstream stream(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(stream), std::istreambuf_iterator<char>()};
}

size_t entries(const fs::path& folder) {
  return static_cast<size_t>(std::distance(fs::directory_iterator(folder), fs::directory_iterator()));
}

TEST(AtomicFile, ReplacesTheFileAndLeavesNoTemporary) {
  const fs::path dir = test::scratch_dir("atomic-replace");
  write_file_atomically(dir / "a.json", "first");
  write_file_atomically(dir / "a.json", std::string(200'000, 'x'));  // past the write buffer
  EXPECT_EQ(read_text(dir / "a.json"), std::string(200'000, 'x'));
  EXPECT_EQ(entries(dir), 1u);
}

TEST(AtomicFile, AFailedWriteGivesTheSystemsReasonAndKeepsTheOldFile) {
  const fs::path dir = test::scratch_dir("atomic-full");
  write_file_atomically(dir / "a.json", "old");
  std::string message;
  {
    test::FileSizeLimit full_disk(4096);
    message = test::error_of([&] { write_file_atomically(dir / "a.json", std::string(100'000, 'x')); });
  }
  EXPECT_EQ(message, "cannot write " + (dir / "a.json").string() + ": File too large");
  EXPECT_EQ(read_text(dir / "a.json"), "old");
  EXPECT_EQ(entries(dir), 1u);

  const std::string missing = test::error_of([&] { write_file_atomically(dir / "no" / "a.json", "x"); });
  EXPECT_NE(missing.find("No such file or directory"), std::string::npos) << missing;
}

TEST(AtomicFile, SignalCleanupRemovesTheFilesBeingWritten) {
  const fs::path dir = test::scratch_dir("atomic-signal");
  AtomicFile first(dir / "a.png");
  AtomicFile second(dir / "b.json");
  first.append("abc", 3);
  EXPECT_EQ(entries(dir), 2u);
  remove_partial_files_in_progress();
  EXPECT_EQ(entries(dir), 0u);
  // Once a file is in place, the cleanup leaves it.
  {
    AtomicFile third(dir / "c.json");
    third.commit();
  }
  remove_partial_files_in_progress();
  EXPECT_TRUE(fs::is_regular_file(dir / "c.json"));
}

}  // namespace
}  // namespace canvas

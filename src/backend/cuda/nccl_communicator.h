// NCCL exchanges between distinct CUDA devices of this process, driven by one host thread. NCCL is opened
// at run time (dlopen), so building and single-GPU runs never need it installed.
#pragma once

#include <nccl.h>

#include <memory>
#include <string>
#include <vector>

#include "backend/communicator.h"

namespace canvas {

// The NCCL entry points the communicator uses, resolved from one opened library. The library is never
// closed: NCCL's proxy threads and exit handlers may outlive any communicator.
struct NcclLibrary {
  std::string path;  // as given to dlopen
  decltype(&ncclGetVersion) get_version = nullptr;
  decltype(&ncclGetErrorString) get_error_string = nullptr;
  decltype(&ncclCommInitAll) comm_init_all = nullptr;
  decltype(&ncclCommDestroy) comm_destroy = nullptr;
  decltype(&ncclGroupStart) group_start = nullptr;
  decltype(&ncclGroupEnd) group_end = nullptr;
  decltype(&ncclSend) send = nullptr;
  decltype(&ncclRecv) recv = nullptr;

  // "2.28.9"
  std::string version() const;
};

// Opens the first of `candidates` (dlopen names or paths) that loads and has every entry point above.
// Throws canvas::Error listing each candidate with why it failed, and how to provide NCCL.
NcclLibrary load_nccl(const std::vector<std::string>& candidates);

// The process's NCCL, opened on first use from $CANVAS_NCCL_LIBRARY when set, then libnccl.so.2, then
// libnccl.so. Throws as load_nccl does (and tries again on the next call).
const NcclLibrary& nccl_library();

// A communicator over distinct CUDA devices (one rank each) through NCCL; also accepts a single device.
// Throws canvas::Error when NCCL cannot be loaded or its communicators cannot be created.
std::unique_ptr<Communicator> nccl_communicator(const std::vector<Device>& devices);

}  // namespace canvas

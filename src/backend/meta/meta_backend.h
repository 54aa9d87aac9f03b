// The meta device: tensors with a shape, a dtype and an owner but no data. Ops on meta tensors run the
// same validation and allocations as on a real device while their kernels do nothing, so a dry run of a
// job through the meta allocator measures its memory (planning/dry_run.h) at no compute and no RAM.
#pragma once

namespace canvas {

// Registers the meta allocator and backend. Safe to call any number of times, from any thread.
void register_meta_backend();

}  // namespace canvas

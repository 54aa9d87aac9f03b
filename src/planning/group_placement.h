// Putting weight groups on a device as a whole: a phase's shared weights and resident blocks. One upload
// queue carries every copy, so a checkpoint's bytes reach the device at the copy engine's speed instead
// of a pageable copy's.
#pragma once

#include <vector>

#include "planning/weight_group.h"

namespace canvas {

// Places the `groups` not placed yet on `device`: device memory for each tensor, charged to its group's
// owner, then every copy through one upload queue. Pages of the mapped checkpoint are locked in place for
// the copies, up to `page_lock_budget` bytes, in the background just ahead of them, and unlocked once the
// copies are done; what is locked goes straight to the copy engine, the rest is staged by several host
// threads. On the CPU the copies go into memory the allocator accounts for. Throws OutOfMemoryError (or
// canvas::Error) with none of the groups placed.
void place_groups(std::vector<PlacedGroup>& groups, Device device, int64_t page_lock_budget);

}  // namespace canvas

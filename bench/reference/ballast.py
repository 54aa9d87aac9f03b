"""Holds one device allocation that leaves exactly BUDGET GiB of the GPU free, then sleeps until killed:
the VRAM ballast under which the memory benchmarks run. Prints READY once the memory is held."""
import sys
import time

import torch

budget = float(sys.argv[1])
free, _total = torch.cuda.mem_get_info()
take = free - int(budget * (1 << 30))
ballast = torch.empty(max(take, 0), dtype=torch.uint8, device="cuda")
print(f"READY ballast {take / (1 << 30):.2f} GiB, free {torch.cuda.mem_get_info()[0] / (1 << 30):.2f} GiB", flush=True)
time.sleep(3600)

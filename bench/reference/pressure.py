"""Another process taking VRAM from a running job: waits until the device's free memory has dropped by
TRIGGER GiB from what it was when this started (the job is placing its first component), then takes all
but LEAVE GiB of what is free and holds it until killed. Prints READY once watching, then what it took."""
import sys
import time

import torch

trigger, leave = (float(arg) * (1 << 30) for arg in sys.argv[1:3])
baseline, _total = torch.cuda.mem_get_info()
print(f"READY watching, free {baseline / (1 << 30):.2f} GiB", flush=True)
start = time.time()
while True:
    free, _total = torch.cuda.mem_get_info()
    if baseline - free >= trigger:
        break
    time.sleep(0.002)
take = max(int(free - leave), 0)
held = torch.empty(take, dtype=torch.uint8, device="cuda")
print(f"TOOK {take / (1 << 30):.2f} GiB at +{time.time() - start:.2f} s, free now "
      f"{torch.cuda.mem_get_info()[0] / (1 << 30):.2f} GiB", flush=True)
time.sleep(3600)

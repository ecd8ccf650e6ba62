"""What vLLM's Ray executor does on the head before it serves, run by the fake vLLM with the
REAL Ray of the test's Ray venv (so it imports nothing from the tests).

As vLLM (vllm/v1/executor/ray_utils.py, initialize_ray_cluster): connect to the running
cluster (`ray.init(address=...)`: RAY_ADDRESS, and RAY_AUTH_MODE / RAY_AUTH_TOKEN from the
environment), refuse when the cluster has fewer GPUs than tensor x pipeline parallel, then
reserve them with a placement group of that many one-GPU bundles and wait until it is
placed: a node that is missing blocks it. Prints READY once placed, then holds the group;
when a node of it dies the group is no longer CREATED and this exits 1, as vLLM's engine
dies with a node.

argv: the number of GPUs (tensor parallel x pipeline parallel).
"""

import os
import sys
import time

import ray
from ray.util.placement_group import placement_group, placement_group_table

need = int(sys.argv[1])
ray.init(address=os.environ["RAY_ADDRESS"], logging_level="ERROR", log_to_driver=False)
gpus = ray.cluster_resources().get("GPU", 0)
if gpus < need:
    print(
        "ValueError: The number of required GPUs exceeds the total number of available GPUs "
        f"in the placement group (needs {need}, the cluster has {gpus:g}).",
        file=sys.stderr,
    )
    sys.exit(1)
group = placement_group([{"GPU": 1}] * need, strategy="PACK")
ray.get(group.ready(), timeout=600)
print("READY", flush=True)
while True:
    time.sleep(0.5)
    state = placement_group_table(group).get("state")
    if state != "CREATED":
        print(f"a node of the placement group is gone (state {state})", file=sys.stderr)
        sys.exit(1)

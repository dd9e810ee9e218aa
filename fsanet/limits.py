"""Upper bounds on what a command or the Python API accepts, checked before any work starts.

A count, a batch or a file that claims more than these is bad input (exit 2, the message names
the bound), not an allocation that fails minutes later (exit 3) or fills the machine's memory.
The bounds sit well above every real use: 300W-LP, the largest set of the paper, holds 122,450
faces; the largest batch a Jetson runs FSA-Net at is in the hundreds.
"""

from __future__ import annotations

from fsanet.errors import DataError

MAX_FACES = 1_000_000  # faces in one set: synthetic:N, `synth -n`, calibration, golden sets, .npz files
MAX_GOLDEN_FACES = 10_000  # a device kit's golden set (`bundle --count`, golden.npz): 123 MB of crops
MAX_BATCH = 4096  # faces in one inference call (--batch, PoseEstimator batches)
MAX_PIXELS = 100_000_000  # declared width x height of one image, read from its header before decoding
MAX_ARRAY_BYTES = 8 << 30  # one array of an .npz file, as its header declares it
MAX_JSON_BYTES = 16 << 20  # a JSON or TOML file the toolkit reads (bundle.json, budgets, manifests)
MAX_NESTING = 64  # depth of arrays/tables in such a file


def check_count(value: int, bound: int, what: str) -> int:
    """`value` if 1 <= value <= bound, else a DataError naming `what` and the bound."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= bound:
        raise DataError(f"{what}: must be an integer from 1 to {bound:,} (the documented upper bound), got {value!r}")
    return value

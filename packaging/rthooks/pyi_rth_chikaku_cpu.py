"""Runtime hook of the CPU-only bundle.

The CUDA libraries that torch only loads for GPU work were left out of this bundle, so torch must
never see a GPU, even on a machine with an NVIDIA driver: the model then runs on the CPU.
"""

import os

os.environ["CUDA_VISIBLE_DEVICES"] = ""

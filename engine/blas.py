"""NumPy's own BLAS on one thread: the products the engine makes with NumPy are small.

A query's matrices are small (a few tokens through the text tower, one vector against the
calibration's reference photos), and on a busy computer (another program, or indexing in this
process) a second BLAS thread that the system has put aside costs a whole time slice on every
product: 16 ms instead of 0.05 ms for one 384x384 product, measured on 2 busy cores. So the
first query sets NumPy's BLAS to one thread for the rest of the process. Only NumPy's library
is touched: FAISS brings its own BLAS and OpenMP (index builds keep every core), and PyTorch
its own. Without threadpoolctl nothing changes.
"""

from __future__ import annotations

import threading
from pathlib import Path

_lock = threading.Lock()
_done = False


def numpy_on_one_thread() -> None:
    """Set NumPy's BLAS to one thread (once; later calls cost a flag check)."""
    global _done
    if _done:
        return
    with _lock:
        if _done:
            return
        _done = True
        try:
            import numpy
            from threadpoolctl import ThreadpoolController

            home = Path(numpy.__file__).resolve().parent.parent  # site-packages
            for lib in ThreadpoolController().select(user_api="blas").lib_controllers:
                path = Path(lib.filepath).resolve()
                if path.parent.name in ("numpy.libs", "numpy") or (
                        path.is_relative_to(home / "numpy")):
                    lib.set_num_threads(1)
        except Exception:  # noqa: BLE001 (threadpoolctl missing, or a library it cannot read)
            pass

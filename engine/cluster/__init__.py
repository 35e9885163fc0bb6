"""Indexing on a Ray cluster the user brings (``chikaku index --cluster URL``).

The machine running Chikaku stays the only writer of its catalog: it scans and compares the
folders with the catalog as a local pass does, writes the photos still to embed into a job folder
(a manifest), submits a Ray job through the Jobs API that decodes and embeds them into Parquet
shards in that folder, then ingests the shards and finishes the pass locally.

Only this package imports Ray (an import-linter contract), and only inside the functions that
talk to a cluster and in the job that runs on it: the desktop install never needs Ray, and the
command line without it says which extra to install.
"""

from __future__ import annotations

from ..errors import EngineError

INSTALL_HINT = ("cluster indexing needs Ray: install chikaku[cluster] "
                "(pip install 'chikaku[cluster]')")


class ClusterError(EngineError):
    """A cluster job could not be planned, run or ingested. The message says why."""


def require_ray():
    """The ``ray`` module, or a ClusterError saying which extra installs it."""
    try:
        import ray
    except ImportError as e:
        raise ClusterError(INSTALL_HINT) from e
    return ray

"""The run store of one output folder and the file rules every writer follows.

- :mod:`leakaudit.runs.files`: private file modes (0600 files, 0700 folders) unless sharing was
  asked for (``leakaudit --share``).
- :mod:`leakaudit.runs.staged`: a staged output that merges only its own files into the output
  folder and refuses to replace anything leakaudit did not write (unless ``--overwrite``);
  :func:`~leakaudit.runs.staged.owned_output` gives the same to a writer that writes in place,
  :func:`~leakaudit.runs.staged.owned_file` to a single named output file.
- :mod:`leakaudit.runs.lock`: one run at a time per output folder (``OUT/.leakaudit/lock``, an
  ``fcntl`` lock naming its holder; a crashed run's lock is taken over with a log line).
- :mod:`leakaudit.runs.store`: stages keyed by a hash of their inputs and config, recorded as
  finished only when complete, so a rerun after a crash or ``kill -9`` reuses what finished.
"""

from leakaudit.runs.files import private_umask, set_share, sharing
from leakaudit.runs.staged import check_output_location, staged_output
from leakaudit.runs.store import RunStore, stage_key

__all__ = ["RunStore", "check_output_location", "private_umask", "set_share", "sharing",
           "stage_key", "staged_output"]

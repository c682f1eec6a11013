"""``python -m pipelines.monitor``.

Evidently drift reports: reference data against clean and shifted batches.
"""

from pipelines._entry import entry_point

main = entry_point("monitor")

if __name__ == "__main__":
    main()

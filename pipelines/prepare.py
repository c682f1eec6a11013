"""``python -m pipelines.prepare``.

Write the built-in (or configured) data to fixed split files.
"""

from pipelines._entry import entry_point

main = entry_point("prepare")

if __name__ == "__main__":
    main()

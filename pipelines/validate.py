"""``python -m pipelines.validate``.

Run the Great Expectations suite on the prepared splits; exit 1 if any check fails.
"""

from pipelines._entry import entry_point

main = entry_point("validate")

if __name__ == "__main__":
    main()

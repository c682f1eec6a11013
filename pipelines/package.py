"""``python -m pipelines.package``.

Build a Bento around the champion in the BentoML store.
"""

from pipelines._entry import entry_point

main = entry_point("package")

if __name__ == "__main__":
    main()

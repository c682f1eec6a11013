"""``python -m pipelines.compress``.

Prune and quantize the champion; report accuracy, size and latency of each variant.
"""

from pipelines._entry import entry_point

main = entry_point("compress")

if __name__ == "__main__":
    main()

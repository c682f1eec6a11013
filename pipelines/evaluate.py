"""``python -m pipelines.evaluate``.

Score the trained model on the test split; write metrics.json and the confusion matrix.
"""

from pipelines._entry import entry_point

main = entry_point("evaluate")

if __name__ == "__main__":
    main()

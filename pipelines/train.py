"""``python -m pipelines.train``.

Train the network with Lightning and track the run in MLflow.
"""

from pipelines._entry import entry_point

main = entry_point("train")

if __name__ == "__main__":
    main()

"""``python -m pipelines.register``.

Register the trained model as challenger; promote it to champion if it passes the gate.
"""

from pipelines._entry import entry_point

main = entry_point("register")

if __name__ == "__main__":
    main()

"""``python -m mockmetrics``: same as the ``mockmetrics`` console script."""

from mockmetrics.app import main

if __name__ == "__main__":
    main()

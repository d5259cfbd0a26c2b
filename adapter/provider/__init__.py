"""The provider interface (base.py) and the providers: static values, and Prometheus (prometheus/)."""

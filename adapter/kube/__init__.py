"""Cluster access: the Kubernetes API client, its discovery-backed resource mapper and the object cache."""

"""Cluster access: the Kubernetes API client (with kubeconfig exec credentials), its discovery-backed
resource mapper and the object cache."""

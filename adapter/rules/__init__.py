"""prometheus-adapter's rules: the config file, its Go templates, metric naming, resources and PromQL."""

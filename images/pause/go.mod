module hpa-kit.local/pause

go 1.22

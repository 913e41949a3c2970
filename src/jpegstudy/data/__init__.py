"""Datasets in their native on-disk layouts, referenced through manifests."""

"""Task networks: model zoos, their transforms, their metrics."""

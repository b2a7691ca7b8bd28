"""Data: the competition layout, labels, splits, decoding/caching, transforms and the demo dataset."""

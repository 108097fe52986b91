"""Data: table readers, file loaders with safety limits, processors, dataset and collate."""

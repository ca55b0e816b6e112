"""Weight-space transfer (task arithmetic): the out-of-core merge (merge); adapter: model_adapters/weight_transfer."""

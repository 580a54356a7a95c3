"""Models (03, 05): the network, its ensemble and the baselines, one family that fits and predicts."""

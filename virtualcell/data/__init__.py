"""The AnnData edge: checks, gene alignment, vocabularies, preprocessing, gene networks, spatial graphs, simulators and public data sets."""

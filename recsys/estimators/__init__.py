"""Estimator facades (scikit-learn / gensim style) over the library's models."""

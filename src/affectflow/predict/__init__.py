"""Prediction on any videos: listing them, applying a trained ensemble, outputs per video, bundles."""
